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
import functools
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
    """``DAGSTER_PG_URL`` (or ``url``), checked and normalised to the psycopg2 driver dagster-postgres uses.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg2://``: SQLAlchemy 2.1 maps them to
    psycopg 3, which is not installed (``ModuleNotFoundError: psycopg`` at run time).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = url or os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise InstanceSetupError(
            f"{PG_URL_ENV} is not a database URL with a numeric port (expected {PG_DRIVER}://user@host:5432/db)"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=PG_DRIVER)
    if parsed.drivername != PG_DRIVER:
        raise InstanceSetupError(
            f"{PG_URL_ENV} must name the psycopg2 driver ({PG_DRIVER}://...), got a {parsed.drivername!r} URL: "
            "dagster-postgres uses psycopg2 (installed); psycopg 3 is not"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InstanceSetupError(f"{PG_URL_ENV} names port {parsed.port}, not one of 1..65535")
    if not parsed.database:
        raise InstanceSetupError(f"{PG_URL_ENV} names no database: {parsed.render_as_string(hide_password=True)}")
    return parsed.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def connection_problem(exc: BaseException, url: str, dbname: str) -> str:
    """What is wrong, in one line without the password, from psycopg2's error connecting with ``url``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    where = f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}"
    text = str(exc).strip()
    if parsed.password:
        text = text.replace(parsed.password, "***")
    first = text.splitlines()[0] if text else type(exc).__name__
    if "role" in text and "does not exist" in text:
        return (
            f"{where} has no role {parsed.username!r} (the user in {PG_URL_ENV}): create it "
            f"(createuser {parsed.username}) or name an existing user"
        )
    if "database" in text and "does not exist" in text:
        return (
            f"{where} has no database {dbname!r} ({PG_URL_ENV}): `python -m crypto_assets.instance` creates it, "
            "or name an existing one"
        )
    if "password authentication failed" in text or "no password supplied" in text:
        return f"{where} refused the password of {parsed.username!r}: set PGPASSWORD or ~/.pgpass (never the URL)"
    if "Connection refused" in text:
        return (
            f"nothing listens at {where.removeprefix('PostgreSQL at ')} (connection refused): start PostgreSQL "
            f"(pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or fix host and port in "
            f"{PG_URL_ENV}"
        )
    if "timeout expired" in text:
        return f"{where} did not answer in time: check host and port in {PG_URL_ENV} and the network"
    if "could not translate host name" in text:
        return f"host {parsed.host!r} of {PG_URL_ENV} is unknown: fix the host"
    if "invalid port" in text:
        return f"{PG_URL_ENV} names an invalid port {parsed.port!r}"
    return f"cannot connect to {where} ({PG_URL_ENV}): {first}"


def _connect(url: str, dbname: str, timeout_s: int):
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    try:
        return psycopg2.connect(
            dbname=dbname,
            user=parsed.username,
            password=parsed.password,
            host=parsed.host,
            port=parsed.port,
            connect_timeout=timeout_s,
        )
    except psycopg2.Error as exc:
        raise InstanceSetupError(connection_problem(exc, url, dbname)) from None


def ensure_database(url: str, timeout_s: int = 5) -> None:
    """Create the URL's database if it does not exist; a one-line error saying what is wrong otherwise."""
    from psycopg2 import sql
    from sqlalchemy.engine import make_url

    url = postgres_url(url)
    parsed = make_url(url)
    conn = _connect(url, "postgres", timeout_s)
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [parsed.database])
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database)))
    finally:
        conn.close()


@functools.cache
def checked_run_time_url(url: str, timeout_s: int = 5) -> str:
    """``url`` normalised, after one connection to its database: the same one-line errors as setup.

    Called by the instance's storages (crypto_assets/instance_storage.py) before dagster-postgres
    connects, which would otherwise retry a wrong port or user for minutes.
    """
    from sqlalchemy.engine import make_url

    url = postgres_url(url)
    _connect(url, make_url(url).database, timeout_s).close()
    return url


def check_home(home: str | None = None) -> None:
    """Refuse, in one line, a DAGSTER_HOME this deployment cannot run on; nothing when DAGSTER_HOME is unset.

    A home never set up has no dagster.yaml: Dagster would create its tables in whichever process
    comes first, and runs started together race (alembic "table ... already exists"). A prod or
    cluster deployment must not silently run on a SQLite instance.
    """
    home = home or os.environ.get("DAGSTER_HOME")
    if not home:
        return  # an ephemeral or test instance
    deployment = current_deployment()
    config_file = Path(home).expanduser() / "dagster.yaml"
    if not config_file.is_file():
        raise InstanceSetupError(
            f"DAGSTER_HOME {home} was never set up: run `python -m crypto_assets.instance --home {home}` once "
            f"(deployment {deployment}) before starting runs"
        )
    if deployment in ON_POSTGRES and not uses_postgres(config_file):
        raise InstanceSetupError(
            f"{DEPLOYMENT_ENV}={deployment} needs the Dagster instance on PostgreSQL, but DAGSTER_HOME {home} holds a "
            f"SQLite instance: run `python -m crypto_assets.instance --home NEW_FOLDER --deployment {deployment}` "
            "and point DAGSTER_HOME there"
        )


def uses_postgres(config_file: Path) -> bool:
    """Whether the instance file keeps run storage in PostgreSQL."""
    import yaml

    config = yaml.safe_load(config_file.read_text()) or {}
    storage = config.get("storage") or {}
    run_storage = config.get("run_storage") or {}
    return "postgres" in storage or "postgres" in f"{run_storage.get('module')} {run_storage.get('class')}".lower()


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
    import fcntl

    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if deployment in ON_POSTGRES:
        url = postgres_url()
        ensure_database(url)
        os.environ[PG_URL_ENV] = url  # dagster.prod.yaml reads it (normalised to psycopg2)
    # One setup at a time per home; dagster.yaml appears only once the storage exists, so a run that
    # finds it (check_home) never creates tables itself.
    with open(home / ".crypto_assets-setup.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        partial = ".dagster.yaml.setup"
        shutil.copyfile(PROJECT_ROOT / INSTANCE_CONFIGS[deployment], home / partial)
        with dg.DagsterInstance.from_config(str(home), config_filename=partial) as instance:
            instance.get_run_records(limit=1)  # creates (or migrates) every storage table, once
        os.replace(home / partial, home / "dagster.yaml")
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
