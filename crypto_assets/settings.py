"""Every setting that depends on the deployment, read from the environment here and nowhere else.

``read_settings()`` validates each variable and fails in one line naming it. Secrets (the
CoinGecko API key, the alert webhook URL) are never read into a value here: the resources that
use them get a ``dg.EnvVar``, so Dagster resolves them at run time and the UI shows the variable's
name, never its value (``crypto_assets/resources.py``).
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
DEFAULT_REPORTS_DIR = ".local/reports"
DEFAULT_DRIFT_COOLDOWN_HOURS = 6.0
DAY_FMT = "%Y-%m-%d"


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
    universe_size: int | None = None  # synthetic market coins; None: the source's default
    warehouse: str = "file"  # "file" (one DuckDB file) or "lake" (DuckLake)
    # libpq conninfo or postgres URL, without a password (refused: libpq reads PGPASSWORD or ~/.pgpass).
    lake_catalog: str = field(default=DEFAULT_LAKE_CATALOG, repr=False)
    lake_data_path: str = DEFAULT_LAKE_DATA_PATH
    backfill_days_per_run: int | None = None  # None: one run per backfill (single_run)


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of this process's environment, each checked."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    deployment = get(DEPLOYMENT_ENV) or "local"
    if deployment not in DEPLOYMENTS:
        raise SettingsError(f"{DEPLOYMENT_ENV} must be one of {', '.join(DEPLOYMENTS)}; got {deployment!r}")
    start = get(PARTITIONS_START_ENV) or DEFAULT_PARTITIONS_START
    try:
        datetime.strptime(start, DAY_FMT)
    except ValueError:
        raise SettingsError(f"{PARTITIONS_START_ENV} must be a date YYYY-MM-DD, got {start!r}") from None
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
