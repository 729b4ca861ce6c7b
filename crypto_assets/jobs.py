"""Jobs, schedules and sensors: what runs when."""

from __future__ import annotations

import dagster as dg

from crypto_assets.partitions import hourly_partitions

ingestion_selection = dg.AssetSelection.groups("ingestion")

hourly_ingest_job = dg.define_asset_job(
    "hourly_ingest_job",
    selection=ingestion_selection,
    partitions_def=hourly_partitions,
    description="Ingest one hour of market snapshots.",
)

hourly_ingest_schedule = dg.build_schedule_from_partitioned_job(hourly_ingest_job, minute_of_hour=5)

jobs = [hourly_ingest_job]
schedules = [hourly_ingest_schedule]
sensors: list = []
