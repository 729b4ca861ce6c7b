"""Jobs and schedules: what runs, and when."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from crypto_assets.assets.features import FEATURES_KEY, LABELS_KEY
from crypto_assets.assets.promotion import CHAMPION_KEY
from crypto_assets.assets.serving import OUTCOMES_KEY, score_key
from crypto_assets.feature_spec import LABEL_HORIZON_HOURS
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.partitions import DAY_FMT

hourly_ingest_and_score_job = dg.define_asset_job(
    "hourly_ingest_and_score_job",
    selection=dg.AssetSelection.groups("ingestion")
    | dg.AssetSelection.assets(FEATURES_KEY, *[score_key(f) for f in MODEL_FAMILIES]),
    description=(
        "Ingest the day's market snapshots so far, compute their features and score them with the current champions."
    ),
    # The hourly deadline first: the run queue dequeues it before queued backfill runs, and on the
    # cluster its steps go ahead of other steps waiting for a Celery worker.
    tags={"dagster/priority": "10", "dagster-celery/run_priority": "5"},
)

hourly_labels_job = dg.define_asset_job(
    "hourly_labels_job",
    selection=dg.AssetSelection.assets(LABELS_KEY, OUTCOMES_KEY),
    description=(
        "Label the day's hours whose 6-hour horizon has been observed, and join the forecasts made for them "
        "with the outcome."
    ),
)

daily_training_job = dg.define_asset_job(
    "daily_training_job",
    selection=dg.AssetSelection.groups("training", "evaluation") - dg.AssetSelection.assets(CHAMPION_KEY),
    description="Build the day's split, train candidates, evaluate them against champion and baseline, report drift.",
)


def _champion_config(action: str, version: str) -> dict:
    """Launchpad defaults of a manual decision: the first model, and an empty reason the person must fill in."""
    config = {"model_name": MODEL_FAMILIES[0].name, "action": action, "version": version, "reason": ""}
    return {"ops": {CHAMPION_KEY.path[-1]: {"config": config}}}


champion_gate_job = dg.define_asset_job(
    "champion_gate_job",
    selection=[CHAMPION_KEY],
    description="Apply an evaluation's gate results to the champion (launched by the promotion sensor).",
)
promote_model_job = dg.define_asset_job(
    "promote_model_job",
    selection=[CHAMPION_KEY],
    config=_champion_config("promote", "latest"),
    description="Make a model version champion by hand: set model_name, version and reason in the Launchpad.",
)
rollback_model_job = dg.define_asset_job(
    "rollback_model_job",
    selection=[CHAMPION_KEY],
    config=_champion_config("rollback", "previous"),
    description="Roll a model's champion back to the previous one (or a named version): set model_name and reason.",
)


def day_of(hour: datetime) -> str:
    """The daily partition key holding ``hour`` (UTC)."""
    return hour.astimezone(UTC).strftime(DAY_FMT)


def _hour_run(context: dg.ScheduleEvaluationContext, hours_back: int) -> dg.RunRequest:
    """A run of the day partition holding the hour that started ``hours_back`` hours before this tick's hour.

    The run key is the tick's hour, so each hour launches exactly one run even though the partition
    (the day) is the same for 24 ticks.
    """
    tick_hour = context.scheduled_execution_time.replace(minute=0, second=0, microsecond=0)
    return dg.RunRequest(
        run_key=f"{tick_hour:%Y-%m-%dT%H:%M}", partition_key=day_of(tick_hour - timedelta(hours=hours_back))
    )


@dg.schedule(job=hourly_ingest_and_score_job, cron_schedule="5 * * * *", execution_timezone="UTC")
def hourly_ingest_and_score_schedule(context: dg.ScheduleEvaluationContext):
    """Every hour: re-materialize the day holding the hour that just ended, so that hour lands within minutes."""
    return _hour_run(context, hours_back=1)


@dg.schedule(job=hourly_labels_job, cron_schedule="15 * * * *", execution_timezone="UTC")
def hourly_labels_schedule(context: dg.ScheduleEvaluationContext):
    """Every hour: re-label the day holding the hour whose 6-hour horizon has just been ingested."""
    return _hour_run(context, hours_back=LABEL_HORIZON_HOURS + 1)


# 08:00 UTC: the previous day's last hours have had their 6-hour horizon labeled by then.
daily_training_schedule = dg.build_schedule_from_partitioned_job(daily_training_job, hour_of_day=8)

jobs = [
    hourly_ingest_and_score_job,
    hourly_labels_job,
    daily_training_job,
    champion_gate_job,
    promote_model_job,
    rollback_model_job,
]
schedules = [hourly_ingest_and_score_schedule, hourly_labels_schedule, daily_training_schedule]
