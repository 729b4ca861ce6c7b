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

from crypto_assets.assets.promotion import promotion_run_requests
from crypto_assets.partitions import hourly_partitions

HOUR_FMT = "%Y-%m-%d-%H:%M"


def last_complete_day(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(days=1)).strftime("%Y-%m-%d")


def recent_hours(days: int, now: datetime | None = None) -> tuple[str, str]:
    """First and last hourly partition keys of the ``days`` days up to the last complete hour."""
    if days < 1:
        raise ValueError(f"--days must be at least 1, got {days}")
    now = now or datetime.now(timezone.utc)
    last = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    first = max(last - timedelta(hours=24 * days - 1), hourly_partitions.start)
    return first.strftime(HOUR_FMT), last.strftime(HOUR_FMT)


def run_job(defs: dg.Definitions, job_name: str, instance: dg.DagsterInstance, label: str, *, allow_failure: bool = False, **kwargs):
    started = time.monotonic()
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    status = "succeeded" if result.success else "FAILED"
    print(f"{job_name} {label}: {status} in {time.monotonic() - started:.1f}s (run {result.run_id})")
    if not result.success and not allow_failure:
        raise SystemExit(f"{job_name} failed; open the run {result.run_id} in the Dagster UI for details")
    return result


def run_range(defs: dg.Definitions, job_name: str, first: str, last: str, instance: dg.DagsterInstance) -> None:
    run_job(defs, job_name, instance, f"{first}...{last}",
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=16, help="how many recent days to materialize (default 16)")
    args = parser.parse_args(argv)

    from crypto_assets.definitions import defs

    instance = dg.DagsterInstance.get()
    first_hour, last_hour = recent_hours(args.days)
    started = time.monotonic()
    # 1. snapshots and features for the whole window (nothing to score with yet), then labels.
    run_range(defs, "hourly_ingest_and_score_job", first_hour, last_hour, instance)
    run_range(defs, "hourly_labels_job", first_hour, last_hour, instance)
    # 2. yesterday's split, candidates, evaluations and drift. A failed gate fails this run on
    #    purpose (blocking checks); promotion then records the refusal.
    day = last_complete_day()
    run_job(defs, "daily_training_job", instance, day, partition_key=day, allow_failure=True)
    # 3. what the promotion sensor does on its next tick.
    requests, _ = promotion_run_requests(instance, {})
    for request in requests:
        run_job(defs, request.job_name, instance, request.tags["crypto_assets/model"],
                run_config=request.run_config, tags=request.tags)
    # 4. score the last day with the champions, and join the forecasts with their outcomes.
    first_scored, _ = recent_hours(1)
    run_range(defs, "hourly_ingest_and_score_job", first_scored, last_hour, instance)
    run_range(defs, "hourly_labels_job", first_scored, last_hour, instance)
    print(f"quickstart materializations done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
