"""Every setting that depends on the deployment, read from the environment here and nowhere else.

``read_settings()`` validates each variable and fails in one line naming it. Secrets (the
CoinGecko API key, the alert webhook URL) are never read into a value here: the resources that
use them get a ``dg.EnvVar``, so Dagster resolves them at run time and the UI shows the variable's
name, never its value (``crypto_assets/resources.py``). The prediction service's bearer token is
read by ``read_api_token()``, once, by the service at start (``crypto_assets/serve.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

DEPLOYMENT_ENV = "DAGSTER_DEPLOYMENT"
DEPLOYMENTS = ("local", "prod", "cluster")
SOURCE_ENV = "CRYPTO_ASSETS_SOURCE"
DUCKDB_PATH_ENV = "CRYPTO_ASSETS_DUCKDB_PATH"
CSV_PATHS_ENV = "CRYPTO_ASSETS_CSV_PATHS"
PARTITIONS_START_ENV = "CRYPTO_ASSETS_PARTITIONS_START"
REPORTS_DIR_ENV = "CRYPTO_ASSETS_REPORTS_DIR"
REPORTS_URL_ENV = "CRYPTO_ASSETS_REPORTS_URL"
ALERT_WEBHOOK_ENV = "CRYPTO_ASSETS_ALERT_WEBHOOK_URL"
DRIFT_COOLDOWN_ENV = "CRYPTO_ASSETS_DRIFT_COOLDOWN_HOURS"
COINGECKO_API_KEY_ENV = "COINGECKO_API_KEY"
COINGECKO_API_PLAN_ENV = "COINGECKO_API_PLAN"
COINGECKO_BASE_URL_ENV = "COINGECKO_BASE_URL"
# The prediction service (python -m crypto_assets.serve) and the snapshot the pipeline writes for it.
SERVING_SNAPSHOT_ENV = "CRYPTO_ASSETS_SERVING_SNAPSHOT_PATH"
SERVING_HISTORY_HOURS_ENV = "CRYPTO_ASSETS_SERVING_HISTORY_HOURS"
API_STALE_AFTER_ENV = "CRYPTO_ASSETS_API_STALE_AFTER_S"
API_URL_ENV = "CRYPTO_ASSETS_API_URL"
API_TOKEN_ENV = "CRYPTO_ASSETS_API_TOKEN"
UNIVERSE_SIZE_ENV = "CRYPTO_ASSETS_UNIVERSE_SIZE"
# The warehouse: one DuckDB file, or a DuckLake (catalog in PostgreSQL, Parquet files under a data path).
WAREHOUSE_ENV = "CRYPTO_ASSETS_WAREHOUSE"
LAKE_CATALOG_ENV = "CRYPTO_ASSETS_LAKE_CATALOG"
LAKE_DATA_PATH_ENV = "CRYPTO_ASSETS_LAKE_DATA_PATH"
BACKFILL_DAYS_PER_RUN_ENV = "CRYPTO_ASSETS_BACKFILL_DAYS_PER_RUN"

DEFAULT_SOURCE = {"local": "synthetic", "prod": "coingecko", "cluster": "synthetic"}
DEFAULT_WAREHOUSE = {"local": "file", "prod": "file", "cluster": "lake"}
WAREHOUSES = ("file", "lake")
DEFAULT_LAKE_CATALOG = "postgresql://postgres@127.0.0.1:5432/crypto_assets_lake"
DEFAULT_LAKE_DATA_PATH = ".local/lake/"
MAX_UNIVERSE_SIZE = 1000  # what the synthetic market simulates at most
# Days per run of a backfill on the cluster: a year becomes ~13 runs that workers take in parallel
# (benchmarks/concurrency.py measured the choice; see the README, "Cluster deployment").
DEFAULT_CLUSTER_BACKFILL_DAYS = 30
DEFAULT_DUCKDB_PATH = ".local/crypto_assets.duckdb"
DEFAULT_CSV_PATHS = ("../shared/data/market",)
DEFAULT_PARTITIONS_START = "2026-01-01"
# Written by the quickstart: its first day, so the partition bar begins where its data begins.
PARTITIONS_START_FILE = Path(".local/partitions_start")
DEFAULT_REPORTS_DIR = ".local/reports"
DEFAULT_DRIFT_COOLDOWN_HOURS = 6.0
DAY_FMT = "%Y-%m-%d"
DEFAULT_SERVING_HISTORY_HOURS = 168  # the scored hours the snapshot carries: the bound of ?hours=N
MAX_SERVING_HISTORY_HOURS = 24 * 31
DEFAULT_API_STALE_AFTER_S = 2 * 3600.0  # the hourly run scores an hour ~5 minutes after it ends
MIN_API_TOKEN_LENGTH = 16


class SettingsError(ValueError):
    """An environment variable holds a value the project cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    deployment: str
    source: str  # which market source (crypto_assets.market.sources.SOURCES)
    duckdb_path: str
    csv_paths: tuple[str, ...]
    partitions_start: str  # YYYY-MM-DD
    reports_dir: Path  # absolute
    reports_url: str | None  # http(s) address serving reports_dir, when a report server runs
    alert_webhook_set: bool
    drift_cooldown_hours: float
    coingecko_base_url: str | None  # None: the client's default
    coingecko_api_plan: str
    coingecko_api_key_set: bool
    serving_snapshot_path: Path | None  # absolute; None: beside the warehouse file (snapshot_path_for)
    serving_history_hours: int
    api_stale_after_s: float  # the service says it is degraded when its newest scored hour ended longer ago
    api_url: str | None  # http(s) address of the prediction service, for links in the UI
    api_token_set: bool  # the token itself: read_api_token(), only by the service at start

    universe_size: int | None = None  # synthetic market coins; None: the source's default
    warehouse: str = "file"  # "file" (one DuckDB file) or "lake" (DuckLake)
    # libpq conninfo or postgres URL, without a password (refused: libpq reads PGPASSWORD or ~/.pgpass).
    lake_catalog: str = field(default=DEFAULT_LAKE_CATALOG, repr=False)
    lake_data_path: str = DEFAULT_LAKE_DATA_PATH
    backfill_days_per_run: int | None = None  # None: one run per backfill (single_run)

    def snapshot_path_for(self, database: str) -> Path:
        """The serving snapshot of the warehouse file ``database``: the setting, or else beside that file."""
        return self.serving_snapshot_path or default_serving_snapshot_path(database)


def default_serving_snapshot_path(duckdb_path: str) -> Path:
    """Beside the warehouse file: ``.local/crypto_assets.duckdb`` -> ``.local/crypto_assets.serving-snapshot.zip``."""
    database = Path(duckdb_path).expanduser()
    return (database.parent / f"{database.stem}.serving-snapshot.zip").resolve()


def read_api_token(environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token the prediction service requires (``CRYPTO_ASSETS_API_TOKEN``), or None when unset.

    Read by the service once at start and kept only there; never part of :class:`Settings` (whose
    values are printed and logged), and the error never shows the value.
    """
    env = os.environ if environ is None else environ
    token = env.get(API_TOKEN_ENV, "").strip()
    if not token:
        return None
    if len(token) < MIN_API_TOKEN_LENGTH or any(c.isspace() or not c.isprintable() or not c.isascii() for c in token):
        raise SettingsError(
            f"{API_TOKEN_ENV} must be at least {MIN_API_TOKEN_LENGTH} printable ASCII characters without spaces "
            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'); the value is not shown"
        )
    return token


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of this process's environment, each checked."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    deployment = get(DEPLOYMENT_ENV) or "local"
    if deployment not in DEPLOYMENTS:
        raise SettingsError(f"{DEPLOYMENT_ENV} must be one of {', '.join(DEPLOYMENTS)}; got {deployment!r}")
    remembered = PARTITIONS_START_FILE.read_text().strip() if PARTITIONS_START_FILE.is_file() else None
    start = get(PARTITIONS_START_ENV) or remembered or DEFAULT_PARTITIONS_START
    try:
        datetime.strptime(start, DAY_FMT)
    except ValueError:
        where = (
            PARTITIONS_START_ENV
            if get(PARTITIONS_START_ENV)
            else f"{PARTITIONS_START_FILE} (written by the quickstart)"
        )
        raise SettingsError(f"{where} must hold a date YYYY-MM-DD, got {start!r}") from None
    reports_url = get(REPORTS_URL_ENV)
    if reports_url and not reports_url.startswith(("http://", "https://")):
        raise SettingsError(f"{REPORTS_URL_ENV} must be an http(s) URL, got {reports_url!r}")
    cooldown_raw = get(DRIFT_COOLDOWN_ENV)
    try:
        cooldown = DEFAULT_DRIFT_COOLDOWN_HOURS if cooldown_raw is None else float(cooldown_raw)
    except ValueError:
        raise SettingsError(f"{DRIFT_COOLDOWN_ENV} must be a number of hours >= 0, got {cooldown_raw!r}") from None
    if not cooldown >= 0:  # also refuses nan
        raise SettingsError(f"{DRIFT_COOLDOWN_ENV} must be >= 0, got {cooldown}")
    plan = get(COINGECKO_API_PLAN_ENV) or "demo"
    if plan not in ("demo", "pro"):
        raise SettingsError(f"{COINGECKO_API_PLAN_ENV} must be demo or pro, got {plan!r}")
    csv_paths = get(CSV_PATHS_ENV)
    history_raw = get(SERVING_HISTORY_HOURS_ENV)
    try:
        history_hours = DEFAULT_SERVING_HISTORY_HOURS if history_raw is None else int(history_raw)
    except ValueError:
        raise SettingsError(
            f"{SERVING_HISTORY_HOURS_ENV} must be a whole number of hours, got {history_raw!r}"
        ) from None
    if not 1 <= history_hours <= MAX_SERVING_HISTORY_HOURS:
        raise SettingsError(f"{SERVING_HISTORY_HOURS_ENV} must be 1..{MAX_SERVING_HISTORY_HOURS}, got {history_hours}")
    stale_raw = get(API_STALE_AFTER_ENV)
    try:
        stale_after = DEFAULT_API_STALE_AFTER_S if stale_raw is None else float(stale_raw)
    except ValueError:
        raise SettingsError(f"{API_STALE_AFTER_ENV} must be a number of seconds > 0, got {stale_raw!r}") from None
    if not 0 < stale_after < float("inf"):  # also refuses nan
        raise SettingsError(f"{API_STALE_AFTER_ENV} must be a number of seconds > 0, got {stale_raw!r}")
    api_url = get(API_URL_ENV)
    if api_url and not api_url.startswith(("http://", "https://")):
        raise SettingsError(f"{API_URL_ENV} must be an http(s) URL, got {api_url!r}")
    snapshot_path = get(SERVING_SNAPSHOT_ENV)
    universe_raw = get(UNIVERSE_SIZE_ENV)
    universe_size = _int_in(UNIVERSE_SIZE_ENV, universe_raw, 1, MAX_UNIVERSE_SIZE) if universe_raw else None
    warehouse = get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE[deployment]
    if warehouse not in WAREHOUSES:
        raise SettingsError(f"{WAREHOUSE_ENV} must be one of {', '.join(WAREHOUSES)}; got {warehouse!r}")
    lake_catalog = get(LAKE_CATALOG_ENV) or DEFAULT_LAKE_CATALOG
    if warehouse == "lake":
        _check_conninfo(lake_catalog)
    days_raw = get(BACKFILL_DAYS_PER_RUN_ENV)
    if days_raw:
        backfill_days = _int_in(BACKFILL_DAYS_PER_RUN_ENV, days_raw, 1, 366)
    else:  # the cluster spreads a backfill over runs (and so over workers); one machine runs it as one
        backfill_days = DEFAULT_CLUSTER_BACKFILL_DAYS if deployment == "cluster" else None
    return Settings(
        deployment=deployment,
        source=get(SOURCE_ENV) or DEFAULT_SOURCE[deployment],
        duckdb_path=get(DUCKDB_PATH_ENV) or DEFAULT_DUCKDB_PATH,
        csv_paths=tuple(p for p in csv_paths.split(":") if p) if csv_paths else DEFAULT_CSV_PATHS,
        partitions_start=start,
        reports_dir=Path(get(REPORTS_DIR_ENV) or DEFAULT_REPORTS_DIR).expanduser().resolve(),
        reports_url=reports_url.rstrip("/") if reports_url else None,
        alert_webhook_set=get(ALERT_WEBHOOK_ENV) is not None,
        drift_cooldown_hours=cooldown,
        coingecko_base_url=get(COINGECKO_BASE_URL_ENV),
        coingecko_api_plan=plan,
        coingecko_api_key_set=get(COINGECKO_API_KEY_ENV) is not None,
        serving_snapshot_path=Path(snapshot_path).expanduser().resolve() if snapshot_path else None,
        serving_history_hours=history_hours,
        api_stale_after_s=stale_after,
        api_url=api_url.rstrip("/") if api_url else None,
        api_token_set=get(API_TOKEN_ENV) is not None,
        universe_size=universe_size,
        warehouse=warehouse,
        lake_catalog=lake_catalog,
        lake_data_path=get(LAKE_DATA_PATH_ENV) or DEFAULT_LAKE_DATA_PATH,
        backfill_days_per_run=backfill_days,
    )


def _int_in(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be from {low} to {high}, got {value}")
    return value


def _check_conninfo(conninfo: str) -> None:
    """A libpq connection string or postgres URL that names a database and holds no password; errors never quote it."""
    from psycopg2.extensions import parse_dsn

    try:
        parsed = parse_dsn(conninfo)
    except Exception:  # psycopg2.ProgrammingError; its text quotes the string
        raise SettingsError(
            f"{LAKE_CATALOG_ENV} is not a libpq connection string or postgres URL "
            "(expected e.g. postgresql://user@host:5432/db or 'dbname=db host=... user=...')"
        ) from None
    if not parsed.get("dbname"):
        raise SettingsError(f"{LAKE_CATALOG_ENV} names no database (dbname)")
    if parsed.get("password"):  # it would show in the UI's resource config and in error messages
        raise SettingsError(f"{LAKE_CATALOG_ENV} must not hold a password: libpq reads it from PGPASSWORD or ~/.pgpass")
