"""Every setting that depends on the deployment, read from the environment here and nowhere else.

``read_settings()`` validates each variable and fails in one line naming it. Secrets (the
CoinGecko API key, the alert webhook URL) are never read into a value here: the resources that
use them get a ``dg.EnvVar``, so Dagster resolves them at run time and the UI shows the variable's
name, never its value (``crypto_assets/resources.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

DEPLOYMENT_ENV = "DAGSTER_DEPLOYMENT"
DEPLOYMENTS = ("local", "prod")
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

DEFAULT_SOURCE = {"local": "synthetic", "prod": "coingecko"}
DEFAULT_DUCKDB_PATH = ".local/crypto_assets.duckdb"
DEFAULT_CSV_PATHS = ("../shared/data/market",)
DEFAULT_PARTITIONS_START = "2026-01-01"
# Written by the quickstart: its first day, so the partition bar begins where its data begins.
PARTITIONS_START_FILE = Path(".local/partitions_start")
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
    )
