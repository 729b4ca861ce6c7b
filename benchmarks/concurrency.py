"""Runs at once, launched the way a deployment launches them: a year's backfill, the hourly job and a
training run, through the instance's run queue and ``dagster-daemon``.

    python -m benchmarks.concurrency --warehouse lake --executor celery --json
    python -m benchmarks.concurrency --warehouse file --executor in_process --json

``lake``/``celery`` is the cluster deployment (Postgres instance, DuckLake warehouse, steps on two
Celery workers started here with dagster-celery's CLI, backfills cut into runs of
``--days-per-run`` days). ``file``/``in_process`` is the embedded default (SQLite instance, one DuckDB
file, the ``duckdb_writer`` pool of one: runs take turns). Both on fresh throwaway storage.

First, not timed: ``--seed-days`` days of data before the training day, written by one run. Then at
once: a backfill of ``--days`` days of market_snapshots (+ quarantine, ground truth), coin_features
and coin_labels, and ``daily_training_job`` for the training day; once they are running, the
``hourly_ingest_and_score_job`` for today. Afterwards it counts every coin-hour in
raw.market_snapshots, features.coin_features and features.coin_labels against what the synthetic
source must have produced (lost: missing keys; duplicate: rows beyond one per key).

The last line with ``--json``: workers, concurrent_runs (the most runs with a step running at once),
lost_rows, duplicate_rows, hourly_run_wait_s (queue wait plus any wait of its steps for a Celery
worker), wall_s, and more.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

START = date(2025, 1, 1)
SEED_FIRST, TRAINING_DAY = "2026-02-22", "2026-03-14"  # as crypto_assets_tests/conftest.py prepares
DATA_ASSETS = "market_snapshots,market_quarantine,anomaly_ground_truth,coin_features,coin_labels"
TIMEOUT_S = 3 * 3600


def _step_intervals(instance, run_id: str) -> tuple[list[tuple[float, float]], list[float], set[str]]:
    """Steps' (start, end) times, the Celery queue waits of its steps, and the workers that ran them."""
    import dagster as dg

    starts, intervals, submitted, waits, workers = {}, [], {}, [], set()
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind, step = event.event_type_value, event.step_key
        if kind == "STEP_START":
            starts[step] = entry.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step in starts:
            intervals.append((starts.pop(step), entry.timestamp))
        elif event.event_type == dg.DagsterEventType.ENGINE_EVENT and step is not None:
            if entry.message.startswith("Submitting celery task"):
                submitted[step] = entry.timestamp
            data = event.engine_event_data
            worker = data.metadata.get("Celery worker") if data and data.metadata else None
            if worker is not None:
                workers.add(worker.value)
                if step in submitted:
                    waits.append(entry.timestamp - submitted.pop(step))
    return intervals, waits, workers


def _run_marks(instance, run_id: str) -> dict[str, float]:
    """When the run was enqueued, dequeued (launched) and started, from its own events."""
    names = {"PIPELINE_ENQUEUED": "RUN_ENQUEUED", "PIPELINE_DEQUEUED": "RUN_DEQUEUED", "PIPELINE_START": "RUN_START"}
    marks = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value in names:
            marks.setdefault(names[event.event_type_value], entry.timestamp)
    return marks


def _most_at_once(intervals_by_run: dict[str, list[tuple[float, float]]]) -> int:
    """The most runs that had a step running at the same moment."""
    edges = sorted(
        (t, delta, run) for run, spans in intervals_by_run.items() for a, b in spans for t, delta in ((a, 1), (b, -1))
    )
    running: dict[str, int] = {}
    most = 0
    for _, delta, run in edges:
        running[run] = running.get(run, 0) + delta
        most = max(most, sum(1 for n in running.values() if n > 0))
    return most


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", choices=["file", "lake"], default="lake")
    parser.add_argument("--executor", choices=["in_process", "celery"], default="celery")
    parser.add_argument("--days", type=int, default=365, help="days of the backfill, from 2025-01-01")
    parser.add_argument("--coins", type=int, default=20)
    parser.add_argument("--days-per-run", type=int, default=30, help="cluster: days per backfill run")
    parser.add_argument("--workers", type=int, default=2, help="cluster: Celery workers")
    parser.add_argument("--concurrency", type=int, default=2, help="cluster: processes per worker")
    parser.add_argument("--hourly-after-s", type=float, default=20.0, help="launch the hourly run this long after")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and databases")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args(argv)
    pairs = {("lake", "celery"): "cluster", ("file", "in_process"): "local"}
    deployment = pairs.get((args.warehouse, args.executor))
    if deployment is None:
        parser.error(
            "--warehouse/--executor: lake with celery (the cluster deployment) or file with in_process "
            "(the embedded default); a DuckDB file takes one process at a time, so steps on workers cannot share it"
        )
    if not 1 <= args.days <= 366 or not 1 <= args.coins <= 1000:
        parser.error("--days must be 1..366 and --coins 1..1000")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from crypto_assets_tests.cluster_support import LocalCluster

    folder = Path(tempfile.mkdtemp(prefix="concurrency-"))
    load_before = os.getloadavg()
    cluster = LocalCluster(
        folder,
        start=START.isoformat(),
        days_per_run=args.days_per_run,
        coins=args.coins,
        concurrency=args.concurrency,
        deployment=deployment,
    )
    dagster = str(Path(sys.executable).parent / "dagster")
    try:
        cluster.start(workers=args.workers if deployment == "cluster" else 0)
        print(f"seeding {SEED_FIRST}..{TRAINING_DAY} (not timed) ...", flush=True)
        seed = cluster.run(
            sys.executable, "-m", "crypto_assets.cluster", "backfill", "--select", DATA_ASSETS,
            "--from", SEED_FIRST, "--to", TRAINING_DAY, "--title", "seed",
        ).strip()  # fmt: skip
        _wait_for_backfill(cluster, seed)
        last = START + timedelta(days=args.days - 1)
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        began = time.time()
        backfill_id = cluster.run(
            sys.executable, "-m", "crypto_assets.cluster", "backfill", "--select", DATA_ASSETS,
            "--from", START.isoformat(), "--to", last.isoformat(), "--title", "year backfill",
        ).strip()  # fmt: skip
        launch = [dagster, "job", "launch", "-w", "workspace.yaml"]
        cluster.run(*launch, "-j", "daily_training_job", "--tags", json.dumps({"dagster/partition": TRAINING_DAY}))
        time.sleep(args.hourly_after_s)  # the backfill and the training run are going by now
        cluster.run(*launch, "-j", "hourly_ingest_and_score_job", "--tags", json.dumps({"dagster/partition": today}))
        print(f"launched: backfill {backfill_id}, training {TRAINING_DAY}, hourly {today}", flush=True)
        result = _wait_and_measure(cluster, backfill_id, began, args)
    finally:
        cluster.stop()
        if not args.keep:
            cluster.drop()
    result.update(
        warehouse=args.warehouse,
        executor=args.executor,
        days=args.days,
        coins=args.coins,
        days_per_run=args.days_per_run if deployment == "cluster" else None,
        load_before=[round(x, 2) for x in load_before],
        load_after=[round(x, 2) for x in os.getloadavg()],
        folder=str(folder) if args.keep else None,
    )
    print(
        f"\n{args.warehouse}/{args.executor}: {result['runs']} runs, {result['concurrent_runs']} writing at once on "
        f"{result['workers']} worker(s); lost {result['lost_rows']}, duplicated {result['duplicate_rows']}; "
        f"hourly run waited {result['hourly_run_wait_s']}s; backfill {result['backfill_s']}s; wall {result['wall_s']}s"
    )
    if args.json:
        print(json.dumps(result))
    return 0 if result["lost_rows"] == result["duplicate_rows"] == 0 and result["all_succeeded"] else 1


def _wait_for_backfill(cluster, backfill_id: str) -> None:
    from dagster._core.execution.backfill import BulkActionStatus

    with cluster.instance() as instance:
        deadline = time.monotonic() + TIMEOUT_S
        while instance.get_backfill(backfill_id).status == BulkActionStatus.REQUESTED:
            if time.monotonic() > deadline:
                raise SystemExit(f"concurrency: backfill {backfill_id} not done within {TIMEOUT_S}s")
            time.sleep(2)
        status = instance.get_backfill(backfill_id).status
    if status != BulkActionStatus.COMPLETED_SUCCESS:
        raise SystemExit(f"concurrency: backfill {backfill_id} ended {status.value}; logs in {cluster.folder}")


def _wait_and_measure(cluster, backfill_id: str, began: float, args) -> dict:
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus

    with cluster.instance() as instance:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            backfill = instance.get_backfill(backfill_id)
            active = instance.get_runs(
                dg.RunsFilter(
                    statuses=[
                        dg.DagsterRunStatus.QUEUED,
                        dg.DagsterRunStatus.NOT_STARTED,
                        dg.DagsterRunStatus.STARTING,
                        dg.DagsterRunStatus.STARTED,
                    ]
                )
            )
            if backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING) and not active:
                break
            time.sleep(2)
        else:
            raise SystemExit(f"concurrency: not done within {TIMEOUT_S}s")
        wall = time.time() - began
        records = instance.get_run_records()
        intervals, workers, hourly_wait, backfill_end = {}, set(), None, began
        hourly_detail, failed = {}, []
        for record in records:
            run = record.dagster_run
            spans, celery_waits, ran_on = _step_intervals(instance, run.run_id)
            intervals[run.run_id] = spans
            workers |= ran_on
            if run.job_name == "hourly_ingest_and_score_job":
                marks = _run_marks(instance, run.run_id)
                created = record.create_timestamp.timestamp()
                first_step = min((a for a, _ in spans), default=created)
                # From its creation until its first step began: the queue, a pool slot or DuckDB's
                # file lock, a Celery worker, and launching its process (seconds, on a loaded machine).
                hourly_wait = first_step - created
                hourly_detail = {
                    "queue_wait_s": round(max(marks.get("RUN_DEQUEUED", created) - created, 0), 1),
                    "launch_and_lock_s": round(marks.get("RUN_START", created) - marks.get("RUN_DEQUEUED", created), 1),
                    "worker_wait_s": round(sum(celery_waits), 1),
                    "run_s": round((record.end_time or created) - marks.get("RUN_START", created), 1),
                }
                hourly_started = created
            if run.status != dg.DagsterRunStatus.SUCCESS:
                failed.append(f"{run.job_name} {run.tags.get('dagster/partition', '')}: {run.status.value}")
            if run.tags.get("dagster/backfill") == backfill_id and record.end_time:
                backfill_end = max(backfill_end, record.end_time)
        statuses = [r.dagster_run.status for r in records]
    timed = {run_id: spans for run_id, spans in intervals.items() if spans and spans[0][0] >= began - 1}
    lost, duplicate, per_table = _row_check(cluster, args, datetime.fromtimestamp(hourly_started, UTC))
    return {
        "workers": len(workers) if workers else 1,
        "concurrent_runs": _most_at_once(timed),
        "lost_rows": lost,
        "duplicate_rows": duplicate,
        "hourly_run_wait_s": round(hourly_wait, 1) if hourly_wait is not None else None,
        "wall_s": round(wall, 1),
        "backfill_s": round(backfill_end - began, 1),
        "backfill_status": str(backfill.status.value),
        "runs": len(timed),
        "all_succeeded": all(s == dg.DagsterRunStatus.SUCCESS for s in statuses),
        "failed_runs": failed,
        "hourly": hourly_detail,
        "tables": per_table,
    }


def _row_check(cluster, args, hourly_created: datetime) -> tuple[int, int, dict]:
    """Coin-hours present vs expected in each table: (lost, duplicate, per-table detail)."""
    from crypto_assets.partitions import current_hour

    year_hours = args.days * 24
    seed_hours = (date.fromisoformat(TRAINING_DAY) - date.fromisoformat(SEED_FIRST)).days * 24 + 24
    midnight = hourly_created.replace(hour=0, minute=0, second=0, microsecond=0)
    today_hours = int((current_hour(hourly_created) - midnight).total_seconds() // 3600)
    expected = {
        "raw.market_snapshots": (year_hours + seed_hours + today_hours) * args.coins,
        "features.coin_features": (year_hours + seed_hours + today_hours) * args.coins,
        "features.coin_labels": (year_hours + seed_hours) * args.coins,
    }
    lost = duplicate = 0
    detail = {}
    for table, want in expected.items():
        n, keys = (
            cluster.warehouse()
            .query(f"SELECT count(*) AS n, count(DISTINCT (coin_id, partition_hour)) AS k FROM {table}")
            .iloc[0]
        )
        lost += max(want - int(keys), 0)
        duplicate += int(n) - int(keys)
        detail[table] = {"rows": int(n), "keys": int(keys), "expected": want}
    return lost, duplicate, detail


if __name__ == "__main__":
    sys.exit(main())
