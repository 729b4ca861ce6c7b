"""The cluster deployment end to end: a Postgres instance, dagster-daemon, two Celery workers started
with dagster-celery's CLI, and the DuckLake warehouse; a backfill cut into runs that the workers take
side by side, and a worker killed mid-step whose step another worker runs again.

RabbitMQ and PostgreSQL must be up (CI has them): otherwise these tests skip, and under CI=true fail.
"""

from __future__ import annotations

import re
import sys
import time

import dagster as dg
import pytest

from .cluster_support import LocalCluster

START, FIRST, LAST = "2026-03-01", "2026-03-01", "2026-03-04"  # 4 days, 2 per run
COINS = 20
TIMEOUT_S = 600
RECEIVED = re.compile(r"Task execute_plan\[([0-9a-f-]+)\] received")
SUCCEEDED = re.compile(r"Task execute_plan\[([0-9a-f-]+)\] succeeded")
DATA_ASSETS = "market_snapshots,market_quarantine,anomaly_ground_truth,coin_features,coin_labels"


@pytest.fixture
def cluster(tmp_path):
    cluster = LocalCluster(tmp_path, start=START, days_per_run=2, coins=COINS, concurrency=1)
    try:
        yield cluster.start(workers=2)
    finally:
        cluster.stop()
        print("worker logs:", {k: v[-1500:] for k, v in cluster.workers.tail().items()})
        cluster.drop()


def _wait_for_backfill(cluster: LocalCluster, backfill_id: str, on_tick=None) -> list:
    from dagster._core.execution.backfill import BulkActionStatus

    deadline = time.monotonic() + TIMEOUT_S
    with cluster.instance() as instance:
        while time.monotonic() < deadline:
            backfill = instance.get_backfill(backfill_id)
            if backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING):
                break
            if on_tick is not None:
                on_tick(instance)
            time.sleep(1)
        else:
            raise AssertionError(f"backfill {backfill_id} not done in {TIMEOUT_S}s: {cluster.workers.tail()}")
        records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, (backfill.status, _failures(instance, records))
        return records


def _failures(instance, records) -> list[str]:
    """What went wrong in the backfill's runs that did not succeed: their failure events' messages."""
    failing = (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ENGINE_EVENT)
    found = []
    for record in records:
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            continue
        found.append(f"run {record.dagster_run.run_id} {record.dagster_run.status.value}")
        for entry in instance.all_logs(record.dagster_run.run_id):
            event = entry.dagster_event
            if event is not None and event.event_type in failing and (entry.level >= 40 or "fail" in entry.message):
                error = getattr(event.event_specific_data, "error", None)
                found.append(f"  {event.event_type_value} {event.step_key}: {entry.message[:300]} {error or ''}"[:1500])
    return found


def _counts(cluster: LocalCluster) -> dict[str, tuple[int, int]]:
    rows = cluster.warehouse().query(
        """
        SELECT 'snapshots' AS t, count(*) AS n, count(DISTINCT (coin_id, partition_hour)) AS keys
        FROM raw.market_snapshots
        UNION ALL SELECT 'features', count(*), count(DISTINCT (coin_id, partition_hour)) FROM features.coin_features
        UNION ALL SELECT 'labels', count(*), count(DISTINCT (coin_id, partition_hour)) FROM features.coin_labels
        """
    )
    return {r.t: (int(r.n), int(r.keys)) for r in rows.itertuples()}


def _workers_that_ran_steps(instance, records) -> set[str]:
    hosts = set()
    for record in records:
        for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            data = entry.dagster_event.engine_event_data
            worker = data.metadata.get("Celery worker") if data and data.metadata else None
            if worker is not None:
                hosts.add(worker.value.split("@")[0])
    return hosts


def test_a_backfill_spreads_over_two_celery_workers_into_the_lake_exactly_once(cluster):
    backfill_id = cluster.run(
        sys.executable,
        "-m",
        "crypto_assets.cluster",
        "backfill",
        "--select",
        DATA_ASSETS,
        "--from",
        FIRST,
        "--to",
        LAST,
    ).strip()
    records = _wait_for_backfill(cluster, backfill_id)
    expected = 4 * 24 * COINS
    assert _counts(cluster) == {t: (expected, expected) for t in ("snapshots", "features", "labels")}
    with cluster.instance() as instance:
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        assert len(records) >= 2, "the backfill was not cut into runs"
        assert _workers_that_ran_steps(instance, records) == {"worker-1", "worker-2"}
        materialized = instance.get_materialized_partitions(dg.AssetKey("coin_features"))
    assert materialized == {"2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"}


def test_a_worker_killed_mid_step_has_its_step_run_again_elsewhere_and_nothing_is_lost_or_doubled(cluster):
    backfill_id = cluster.run(
        sys.executable,
        "-m",
        "crypto_assets.cluster",
        "backfill",
        "--select",
        DATA_ASSETS,
        "--from",
        FIRST,
        "--to",
        LAST,
    ).strip()
    killed: list[tuple[str, str]] = []  # (worker, the celery task id of the step it was running)

    def kill_a_worker_running_a_step(instance):
        if killed:
            return
        for name in ("worker-1", "worker-2"):
            log = (cluster.folder / "logs" / f"{name}.log").read_text()
            running = set(RECEIVED.findall(log)) - set(SUCCEEDED.findall(log))
            if running:  # it has taken a step and not finished it
                time.sleep(1.0)  # mid-step
                cluster.workers.kill(name)
                killed.append((name, running.pop()))
                return

    records = _wait_for_backfill(cluster, backfill_id, on_tick=kill_a_worker_running_a_step)
    assert killed, "no worker was killed: this test exercised nothing"
    ((victim, task_id),) = killed
    survivor = ({"worker-1", "worker-2"} - {victim}).pop()
    survivor_log = (cluster.folder / "logs" / f"{survivor}.log").read_text()
    # The broker gave the unacknowledged step to the other worker, which ran it to the end.
    assert task_id in RECEIVED.findall(survivor_log) and task_id in SUCCEEDED.findall(survivor_log)
    expected = 4 * 24 * COINS
    assert _counts(cluster) == {t: (expected, expected) for t in ("snapshots", "features", "labels")}
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
