"""Jobs and schedules: what runs, and when."""

import dagster as dg

from crypto_assets.partitions import daily_partitions, hourly_partitions

hourly_ingest_job = dg.define_asset_job(
    "hourly_ingest_job",
    selection=dg.AssetSelection.groups("ingestion") | dg.AssetSelection.assets("coin_features"),
    partitions_def=hourly_partitions,
    description="Ingest one hour of market snapshots and compute its features.",
)

hourly_labels_job = dg.define_asset_job(
    "hourly_labels_job",
    selection=dg.AssetSelection.assets("coin_labels"),
    partitions_def=hourly_partitions,
    description="Label an hour once its 6-hour horizon has been observed.",
)

daily_training_job = dg.define_asset_job(
    "daily_training_job",
    selection=dg.AssetSelection.groups("training"),
    partitions_def=daily_partitions,
    description="Build the day's train/holdout split.",
)

hourly_ingest_schedule = dg.build_schedule_from_partitioned_job(hourly_ingest_job, minute_of_hour=5)


@dg.schedule(job=hourly_labels_job, cron_schedule="15 * * * *", execution_timezone="UTC")
def hourly_labels_schedule(context: dg.ScheduleEvaluationContext):
    """Label the hour whose 6-hour horizon has just been ingested (7 hours back)."""
    from datetime import timedelta

    hour = context.scheduled_execution_time.replace(minute=0, second=0, microsecond=0) - timedelta(hours=7)
    key = hour.strftime("%Y-%m-%d-%H:%M")
    return dg.RunRequest(run_key=key, partition_key=key)


daily_training_schedule = dg.build_schedule_from_partitioned_job(daily_training_job, hour_of_day=8)

jobs = [hourly_ingest_job, hourly_labels_job, daily_training_job]
schedules = [hourly_ingest_schedule, hourly_labels_schedule, daily_training_schedule]
