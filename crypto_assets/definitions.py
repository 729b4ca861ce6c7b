"""The code location: every asset, check, job, schedule, sensor and resource."""

import dagster as dg

from crypto_assets.assets import features, ingestion, splits
from crypto_assets.jobs import jobs, schedules
from crypto_assets.resources import build_resources
from crypto_assets.sensors import sensors

_modules = [ingestion, features, splits]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(_modules),
    asset_checks=dg.load_asset_checks_from_modules(_modules),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources=build_resources(),
)
