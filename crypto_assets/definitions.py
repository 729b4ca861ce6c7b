"""The code location: every asset, check, job, schedule, sensor and resource."""

import warnings

import dagster as dg

# Single-run backfills and partition mappings into the future are marked beta; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

from crypto_assets.assets import drift, features, ingestion, models, promotion, serving, splits  # noqa: E402
from crypto_assets.jobs import jobs, schedules  # noqa: E402
from crypto_assets.resources import build_resources  # noqa: E402
from crypto_assets.sensors import sensors  # noqa: E402

_modules = [ingestion, features, splits, drift, models, promotion, serving]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(_modules),
    asset_checks=dg.load_asset_checks_from_modules(_modules),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources=build_resources(),
)
