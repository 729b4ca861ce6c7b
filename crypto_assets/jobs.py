"""Jobs and schedules: what runs, and when."""

from datetime import timedelta

import dagster as dg

from crypto_assets.assets.promotion import champion_gate_job, promote_model_job, rollback_model_job
from crypto_assets.feature_spec import LABEL_HORIZON_HOURS

hourly_ingest_and_score_job = dg.define_asset_job(
    "hourly_ingest_and_score_job",
    selection=dg.AssetSelection.groups("ingestion")
    | dg.AssetSelection.assets("coin_features", "anomaly_scores", "volatility_forecasts"),
    description="Ingest an hour of market snapshots, compute its features and score it with the current champions.",
)

hourly_labels_job = dg.define_asset_job(
    "hourly_labels_job",
    selection=dg.AssetSelection.assets("coin_labels", "prediction_outcomes"),
    description="Label an hour once its 6-hour horizon has been observed, and score the forecasts made for it.",
)

daily_training_job = dg.define_asset_job(
    "daily_training_job",
    selection=dg.AssetSelection.groups("training", "evaluation") - dg.AssetSelection.assets("model_champions"),
    description="Build the day's split, train candidates, evaluate them against champion and baseline, report drift.",
)

hourly_ingest_and_score_schedule = dg.build_schedule_from_partitioned_job(hourly_ingest_and_score_job, minute_of_hour=5)


@dg.schedule(job=hourly_labels_job, cron_schedule="15 * * * *", execution_timezone="UTC")
def hourly_labels_schedule(context: dg.ScheduleEvaluationContext):
    """Label the hour whose 6-hour horizon has just been ingested."""
    hour = context.scheduled_execution_time.replace(minute=0, second=0, microsecond=0) - timedelta(hours=LABEL_HORIZON_HOURS + 1)
    key = hour.strftime("%Y-%m-%d-%H:%M")
    return dg.RunRequest(run_key=key, partition_key=key)


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
