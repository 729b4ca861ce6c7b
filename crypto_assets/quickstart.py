"""Materialize a recent window of partitions through every asset, as runs the Dagster UI shows.

``python -m crypto_assets.quickstart [--days N]`` runs against the instance in ``DAGSTER_HOME``;
each job runs once over its whole range (a single-run backfill).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from crypto_assets.partitions import hourly_partitions

HOUR_FMT = "%Y-%m-%d-%H:%M"


def recent_hours(days: int, now: datetime | None = None) -> tuple[str, str]:
    """First and last hourly partition keys of the ``days`` days up to the last complete hour."""
    if days < 1:
        raise ValueError(f"--days must be at least 1, got {days}")
    now = now or datetime.now(timezone.utc)
    last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    first = max(last - timedelta(hours=24 * days - 1), hourly_partitions.start)
    return first.strftime(HOUR_FMT), last.strftime(HOUR_FMT)


def run_range(defs: dg.Definitions, job_name: str, first: str, last: str, instance: dg.DagsterInstance) -> None:
    started = time.monotonic()
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        raise_on_error=False,
    )
    status = "succeeded" if result.success else "FAILED"
    print(f"{job_name} {first}...{last}: {status} in {time.monotonic() - started:.1f}s (run {result.run_id})")
    if not result.success:
        raise SystemExit(f"{job_name} failed; open the run {result.run_id} in the Dagster UI for details")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=16, help="how many recent days to materialize (default 16)")
    args = parser.parse_args(argv)

    from crypto_assets.definitions import defs

    instance = dg.DagsterInstance.get()
    first_hour, last_hour = recent_hours(args.days)
    started = time.monotonic()
    run_range(defs, "hourly_ingest_job", first_hour, last_hour, instance)
    print(f"quickstart materializations done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
