"""The deployment, the Dagster instance it uses, and preparing DAGSTER_HOME before the first run.

``DAGSTER_DEPLOYMENT`` is the one switch:

- ``local`` (default): ``dagster.yaml``, SQLite files in DAGSTER_HOME, nothing to run beside it;
  offline synthetic market.
- ``prod``: ``dagster.prod.yaml``, PostgreSQL at ``DAGSTER_PG_URL`` (default
  ``postgresql+psycopg2://postgres@127.0.0.1:5432/crypto_assets_dagster``); live CoinGecko.
- ``cluster``: ``dagster.cluster.yaml``, PostgreSQL like prod, steps on Celery workers, the
  warehouse on DuckLake (``crypto_assets/cluster.py``, ``crypto_assets/lake.py``).

``python -m crypto_assets.instance [--home DIR]`` copies the deployment's file into DAGSTER_HOME,
for prod checks the URL and creates the database if it is missing, then opens the instance once
so its storage exists before any run: runs started together on an instance nobody opened yet
race to create its tables (alembic: "more than one head"). The scripts run it for you.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import dagster as dg

from crypto_assets.settings import DEPLOYMENT_ENV, DEPLOYMENTS, read_settings

INSTANCE_CONFIGS = {"local": "dagster.yaml", "prod": "dagster.prod.yaml", "cluster": "dagster.cluster.yaml"}
ON_POSTGRES = ("prod", "cluster")  # deployments whose instance storage is PostgreSQL at DAGSTER_PG_URL
PG_URL_ENV = "DAGSTER_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/crypto_assets_dagster"
PG_DRIVER = "postgresql+psycopg2"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Dagster's bookkeeping of single-run backfills, read from the environment of the process that
# creates a run (the command line, the webserver and daemon of `dagster dev`) or runs its steps.
# crypto_assets.definitions sets them where unset; scripts/quickstart.sh exports them for
# `dagster dev` (`python -m crypto_assets.instance --print-env`). See the README, "Partitions".
DAGSTER_ENV_DEFAULTS = {
    # One planned event per asset and run instead of one per partition: half a backfill's events.
    # Trade-off: partitions of a failed run show as missing, not failed (the run shows the failure).
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    # Per-partition materializations stored in batches: one statement per 1000 on Postgres
    # (SQLite stores them one by one either way).
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply_dagster_env_defaults() -> None:
    """Set each of ``DAGSTER_ENV_DEFAULTS`` the environment does not set already."""
    for name, value in DAGSTER_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)


class InstanceSetupError(RuntimeError):
    """The Dagster instance cannot be prepared; the message says what to change."""


def current_deployment() -> str:
    return read_settings().deployment


def postgres_url(url: str | None = None) -> str:
    """``DAGSTER_PG_URL`` (or ``url``), checked: it must parse and name the psycopg2 driver."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = url or os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise InstanceSetupError(
            f"{PG_URL_ENV} is not a database URL (expected {PG_DRIVER}://user@host:5432/db)"
        ) from None
    if parsed.drivername != PG_DRIVER:
        raise InstanceSetupError(
            f"{PG_URL_ENV} must name the psycopg2 driver ({PG_DRIVER}://...), got a {parsed.drivername!r} URL: "
            "SQLAlchemy 2.1 maps postgresql:// to psycopg 3, whose placeholders dagster-postgres's SQL does not accept"
        )
    if not parsed.database:
        raise InstanceSetupError(f"{PG_URL_ENV} names no database: {redacted(raw)}")
    return raw


def redacted(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def ensure_database(url: str, timeout_s: int = 5) -> None:
    """Create the URL's database if it does not exist; a clear error when the server cannot be reached."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    try:
        conn = psycopg2.connect(
            dbname="postgres",
            user=parsed.username,
            password=parsed.password,
            host=parsed.host,
            port=parsed.port,
            connect_timeout=timeout_s,
        )
    except psycopg2.OperationalError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InstanceSetupError(
            f"PostgreSQL at {where} is unreachable ({first_line}). Start it "
            "(pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) "
            f"or point {PG_URL_ENV} at a running server."
        ) from None
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [parsed.database])
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database)))
    finally:
        conn.close()


def drop_database(url: str) -> None:
    """Drop the URL's database (throwaway databases of tests and benchmarks), closing its sessions."""
    import psycopg2
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = psycopg2.connect(
        dbname="postgres", user=parsed.username, password=parsed.password, host=parsed.host, port=parsed.port
    )
    try:
        conn.autocommit = True  # DROP DATABASE cannot run inside a transaction
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(parsed.database)))
    finally:
        conn.close()


def prepare_home(home: Path, deployment: str | None = None) -> Path:
    """Write the deployment's dagster.yaml into ``home`` and create the instance's storage once."""
    deployment = deployment or current_deployment()
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"deployment must be one of {', '.join(DEPLOYMENTS)}; got {deployment!r}")
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if deployment in ON_POSTGRES:
        url = postgres_url()
        ensure_database(url)
        os.environ[PG_URL_ENV] = url  # dagster.prod.yaml reads it
    shutil.copyfile(PROJECT_ROOT / INSTANCE_CONFIGS[deployment], home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_run_records(limit=1)  # creates (or migrates) every storage table, once
    return home


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--home", default=os.environ.get("DAGSTER_HOME") or str(PROJECT_ROOT / ".local" / "dagster_home")
    )
    parser.add_argument("--deployment", choices=DEPLOYMENTS, default=None, help=f"default: ${DEPLOYMENT_ENV} or local")
    parser.add_argument(
        "--print-env",
        action="store_true",
        help="print `export` lines for the Dagster settings the environment lacks, and stop",
    )
    args = parser.parse_args(argv)
    if args.print_env:
        for name, value in DAGSTER_ENV_DEFAULTS.items():
            print(f"export {name}={os.environ.get(name, value)}")
        return
    try:
        home = prepare_home(Path(args.home), args.deployment)
    except InstanceSetupError as exc:
        raise SystemExit(f"crypto_assets.instance: {exc}") from None
    storage = (
        redacted(os.environ[PG_URL_ENV])
        if (args.deployment or current_deployment()) in ON_POSTGRES
        else "SQLite files in DAGSTER_HOME"
    )
    print(f"Dagster instance ready in {home} ({storage})")


if __name__ == "__main__":
    main()
