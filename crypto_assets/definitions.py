"""The code location: every asset, check, job, schedule, sensor and resource."""

import warnings

import dagster as dg

from crypto_assets.instance import apply_dagster_env_defaults, check_home

# Single-run backfills and partition mappings into the future are marked beta; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

# Settings Dagster reads from the environment when it creates and runs a backfill (see there).
apply_dagster_env_defaults()
# A DAGSTER_HOME never set up, or SQLite under DAGSTER_DEPLOYMENT=prod: one line naming the fix.
check_home()

from crypto_assets.assets import asset_modules  # noqa: E402
from crypto_assets.jobs import jobs, schedules  # noqa: E402
from crypto_assets.resources import build_resources  # noqa: E402
from crypto_assets.sensors import sensors  # noqa: E402
from crypto_assets.settings import read_settings  # noqa: E402

_settings = read_settings()
_modules = asset_modules(lake=_settings.warehouse == "lake")
if _settings.warehouse == "lake":
    from crypto_assets.assets import lake_maintenance


def _executor() -> dg.ExecutorDefinition:
    if _settings.deployment == "cluster":
        from crypto_assets.cluster import celery_executor  # Celery is imported by this deployment only

        return celery_executor()
    # Every step reads or writes the one DuckDB file, which takes one writer at a time: steps run
    # one after another in the run's own process (no process per step to start and load).
    return dg.in_process_executor


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(_modules),
    asset_checks=dg.load_asset_checks_from_modules(_modules),
    jobs=jobs,
    schedules=schedules + (lake_maintenance.schedules if _settings.warehouse == "lake" else []),
    sensors=sensors,
    resources=build_resources(_settings),
    executor=_executor(),
)
