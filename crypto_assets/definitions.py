"""The code location: every asset, check, job, schedule, sensor and resource."""

import dagster as dg

from crypto_assets.assets import ingestion
from crypto_assets.jobs import jobs, schedules, sensors
from crypto_assets.resources import build_resources

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingestion]),
    asset_checks=dg.load_asset_checks_from_modules([ingestion]),
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources=build_resources(),
)
