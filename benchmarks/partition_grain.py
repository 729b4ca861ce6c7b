"""What Dagster's bookkeeping of a single-run backfill costs, by partition grain, with no data work.

    python -m benchmarks.partition_grain --grain daily --days 365
    python -m benchmarks.partition_grain --grain hourly --days 7 --instance postgres --json

Five no-op partitioned assets in a chain (as many as the ingestion and feature stages hold:
snapshots, quarantine, ground truth, features, labels) are materialized over ``--days`` days as
one run, on a fresh instance configured by the repo's ``dagster.yaml`` (SQLite) or
``dagster.prod.yaml`` (PostgreSQL). Each row of the table is one setting of the two environment
variables that shape the bookkeeping (``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``,
``DAGSTER_EVENT_BATCH_SIZE``); each runs in its own process, since Dagster reads them from the
environment. Prints wall time, events and milliseconds per event; ``--json``: one final line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SETTINGS = [
    {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "0", "DAGSTER_EVENT_BATCH_SIZE": "0"},
    {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1", "DAGSTER_EVENT_BATCH_SIZE": "0"},
    {"DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1", "DAGSTER_EVENT_BATCH_SIZE": "1000"},
]
ASSETS = 5


def measure(grain: str, days: int, instance_kind: str) -> dict:
    """One backfill in this process, with the environment it was started with."""
    import dagster as dg

    from crypto_assets import instance as instance_setup
    from crypto_assets.run_tags import partition_range_tags

    start = "2025-01-01"
    partitions = {
        "hourly": dg.HourlyPartitionsDefinition(start_date=f"{start}-00:00", timezone="UTC"),
        "daily": dg.DailyPartitionsDefinition(start_date=start, timezone="UTC"),
        "weekly": dg.WeeklyPartitionsDefinition(start_date=start, timezone="UTC"),
    }[grain]
    keys = partitions.get_partition_keys()
    count = {"hourly": 24 * days, "daily": days, "weekly": max(1, days // 7)}[grain]
    keys = keys[:count]

    def make(i: int):
        @dg.asset(
            name=f"stage_{i}",
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=[f"stage_{i - 1}"] if i else [],
        )
        def _stage():
            return dg.MaterializeResult(metadata={"rows": 1})

        return _stage

    folder = Path(tempfile.mkdtemp(prefix="grain-"))
    deployment = "prod" if instance_kind == "postgres" else "local"
    if deployment == "prod":
        os.environ[instance_setup.PG_URL_ENV] = (
            instance_setup.postgres_url().rsplit("/", 1)[0] + f"/grain_{uuid.uuid4().hex[:12]}"
        )
    home = instance_setup.prepare_home(folder / "home", deployment)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        began = time.perf_counter()
        result = dg.materialize(
            [make(i) for i in range(ASSETS)], instance=instance, tags=partition_range_tags(keys[0], keys[-1])
        )
        wall = time.perf_counter() - began
        events = len(instance.all_logs(result.run_id))
    if deployment == "prod":
        from benchmarks.backfill import _drop_database

        _drop_database(os.environ[instance_setup.PG_URL_ENV])
    return {
        "grain": grain,
        "partitions": len(keys),
        "wall_s": round(wall, 2),
        "events": events,
        "ms_per_event": round(1000 * wall / events, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grain", choices=["hourly", "daily", "weekly"], default="daily")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: measure with this environment
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.grain, args.days, args.instance)))
        return 0
    rows = []
    for setting in SETTINGS:
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.partition_grain",
                "--grain",
                args.grain,
                "--days",
                str(args.days),
                "--instance",
                args.instance,
                "--one",
            ],
            env={**os.environ, **setting},
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            sys.exit(f"measurement failed: {child.stderr[-2000:]}")
        rows.append({**json.loads(child.stdout.strip().splitlines()[-1]), **setting})
    print(
        f"\n{args.grain} partitions, {args.days} days, {ASSETS} assets, one run, instance {args.instance}, no data work"
    )
    print(f"{'planned subset':>15}{'batch size':>11}{'partitions':>11}{'wall s':>9}{'events':>8}{'ms/event':>10}")
    for r in rows:
        print(
            f"{r['DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS']:>15}{r['DAGSTER_EVENT_BATCH_SIZE']:>11}"
            f"{r['partitions']:>11}{r['wall_s']:>9.1f}{r['events']:>8}{r['ms_per_event']:>10.1f}"
        )
    if args.json:
        print(json.dumps({"grain": args.grain, "days": args.days, "instance": args.instance, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
