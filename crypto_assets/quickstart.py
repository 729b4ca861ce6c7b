"""Materialize a recent window of partitions through every asset, as runs the Dagster UI shows.

``python -m crypto_assets.quickstart [--days N]`` runs against the instance in ``DAGSTER_HOME``;
each job runs once over its whole range (a single-run backfill).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from crypto_assets.partitions import DAY_FMT, daily_data_partitions
from crypto_assets.run_tags import partition_range_tags
from crypto_assets.sensors import promotion_run_requests

DEFAULT_DAYS = 70


def last_complete_day(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return (now - timedelta(days=1)).strftime(DAY_FMT)


def recent_days(days: int, now: datetime | None = None) -> tuple[str, str]:
    """First and last daily partition keys: the ``days`` complete days before today, and today so far."""
    if days < 1:
        raise ValueError(f"--days must be at least 1, got {days}")
    now = now or datetime.now(UTC)
    first = max(now - timedelta(days=days), daily_data_partitions.start)
    return first.strftime(DAY_FMT), now.strftime(DAY_FMT)


def run_job(
    defs: dg.Definitions,
    job_name: str,
    instance: dg.DagsterInstance,
    label: str,
    *,
    allow_failure: bool = False,
    **kwargs,
):
    started = time.monotonic()
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    status = "succeeded" if result.success else "FAILED"
    print(f"{job_name} {label}: {status} in {time.monotonic() - started:.1f}s (run {result.run_id})")
    if not result.success and not allow_failure:
        raise SystemExit(f"{job_name} failed; open the run {result.run_id} in the Dagster UI for details")
    return result


def run_range(defs: dg.Definitions, job_name: str, first: str, last: str, instance: dg.DagsterInstance) -> None:
    run_job(defs, job_name, instance, f"{first}...{last}", tags=partition_range_tags(first, last))


def populate(defs: dg.Definitions, instance: dg.DagsterInstance, days: int, now: datetime | None = None) -> None:
    """The quickstart's runs, as of ``now`` (default: the clock): ingest, label, train, promote, score."""
    now = now or datetime.now(UTC)
    first_day, today = recent_days(days, now)
    # 1. snapshots and features for the whole window (nothing to score with yet), then labels.
    run_range(defs, "hourly_ingest_and_score_job", first_day, today, instance)
    run_range(defs, "hourly_labels_job", first_day, today, instance)
    # 2. yesterday's split, candidates, evaluations and drift. A failed gate fails this run on
    #    purpose (blocking checks); promotion then records the refusal.
    day = last_complete_day(now)
    run_job(defs, "daily_training_job", instance, day, partition_key=day, allow_failure=True)
    # 3. what the promotion sensor does on its next tick.
    requests, _ = promotion_run_requests(instance, {})
    for request in requests:
        run_job(
            defs,
            request.job_name,
            instance,
            request.tags["crypto_assets/model"],
            run_config=request.run_config,
            tags=request.tags,
        )
    # 4. score yesterday and today with the champions (and the latest candidates in shadow), and
    #    join the forecasts with their outcomes.
    run_range(defs, "hourly_ingest_and_score_job", day, today, instance)
    run_range(defs, "hourly_labels_job", day, today, instance)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"how many complete days before today to materialize (default {DEFAULT_DAYS}: the volatility model's 60 days of "
        "training history before the first of the 7 evaluated days)",
    )
    parser.add_argument(
        "--as-of",
        type=datetime.fromisoformat,
        default=None,
        help="replay as if it were this UTC time (benchmarks/quickstart_dates.py); default: now",
    )
    args = parser.parse_args(argv)
    as_of = args.as_of and (args.as_of if args.as_of.tzinfo else args.as_of.replace(tzinfo=UTC))

    from crypto_assets.definitions import defs

    started = time.monotonic()
    populate(defs, dg.DagsterInstance.get(), args.days, now=as_of)
    print(f"quickstart materializations done in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
