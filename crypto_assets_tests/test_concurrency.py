"""Several runs at once, and runs killed midway, against one DuckDB file and a Dagster instance on
SQLite (the local default) and on PostgreSQL (the production instance), as a deployment has them.

Runs started from the command line skip the run queue, so nothing in Dagster serializes them:
they take turns on DuckDB's file lock (bounded by warehouse.lock_timeout_s), and no pool slot left
behind by a dead run can block them.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from crypto_assets.run_tags import partition_range_tags
from crypto_assets.warehouse import Warehouse, WarehouseBusyError

from .conftest import PREPARED_SPLITS

ROOT = Path(__file__).resolve().parents[1]
TRAINING_DAY = PREPARED_SPLITS[-1]
DAY = "2026-03-20"
BACKFILL = ("2026-03-16", "2026-03-18")
TIMEOUT_S = 600


def _dagster(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    dagster = str(Path(sys.executable).parent / "dagster")
    return subprocess.Popen(
        [dagster, *args, "-m", "crypto_assets.definitions"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def _wait_all(processes: dict[str, subprocess.Popen], logs: dict[str, Path]) -> None:
    for process in processes.values():
        process.wait(timeout=TIMEOUT_S)
    failures = {name: logs[name].read_text()[-3000:] for name, p in processes.items() if p.returncode != 0}
    assert not failures, failures


def _env(home: Path, database: Path) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(home), "CRYPTO_ASSETS_DUCKDB_PATH": str(database)}


def _overlapped(records) -> bool:
    """Whether at least two of the runs were in progress at the same time."""
    spans = sorted((r.start_time, r.end_time) for r in records)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


def test_concurrent_runs_take_turns_on_the_warehouse_and_lose_nothing(prepared_database, instance_home, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    shutil.copy(prepared_database, database)
    env = _env(instance_home, database)
    runs = {
        "ingest and score one day": [
            "job",
            "execute",
            "-j",
            "hourly_ingest_and_score_job",
            "--tags",
            f'{{"dagster/partition": "{DAY}"}}',
        ],
        "3-day single-run backfill": [
            "asset",
            "materialize",
            "--select",
            "group:ingestion,coin_features",
            "--partition-range",
            f"{BACKFILL[0]}...{BACKFILL[1]}",
        ],
        "training": [
            "asset",
            "materialize",
            "--select",
            "training_splits,anomaly_detector_candidate,volatility_model_candidate",
            "--partition",
            TRAINING_DAY,
        ],
    }
    logs = {name: tmp_path / f"{i}.log" for i, name in enumerate(runs)}
    started = time.monotonic()
    processes = {name: _dagster(args, env, logs[name]) for name, args in runs.items()}
    _wait_all(processes, logs)

    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        records = instance.get_run_records()
    assert len(records) == 3 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
    assert _overlapped(records), "the runs did not overlap: this test exercised nothing"

    warehouse = Warehouse(database=str(database))
    counts = warehouse.query(
        """
        SELECT 'snapshots' AS t, count(*) AS n, count(DISTINCT (coin_id, partition_hour)) AS keys
        FROM raw.market_snapshots WHERE partition_hour >= '2026-03-16'
        UNION ALL SELECT 'features', count(*), count(DISTINCT (coin_id, partition_hour))
        FROM features.coin_features WHERE partition_hour >= '2026-03-16'
        """
    ).set_index("t")
    expected = 4 * 24 * 20  # the backfill's three days and the single day, 20 coins each
    assert counts.loc["snapshots", "n"] == counts.loc["snapshots", "keys"] == expected
    assert counts.loc["features", "n"] == counts.loc["features", "keys"] == expected
    versions = warehouse.query(
        "SELECT model_name, count(*) AS n FROM registry.model_versions WHERE split_id = ? GROUP BY 1 ORDER BY 1",
        [TRAINING_DAY],
    )
    assert versions.values.tolist() == [["anomaly_detector", 1], ["volatility_model", 1]]
    print(
        f"\nconcurrency ({instance_home.name}): 3 runs overlapped, all succeeded, {expected} rows each exactly once, "
        f"{time.monotonic() - started:.0f}s"
    )


def test_a_pool_slot_left_by_a_dead_run_does_not_block_command_line_backfills(instance_home, tmp_path):
    """Three overlapping CLI backfills on a new instance, one writer slot already held by a run that died."""
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        instance.event_log_storage.set_concurrency_slots("duckdb_writer", 1)
        claim = instance.event_log_storage.claim_concurrency_slot(
            "duckdb_writer", "a-run-that-died", "market_snapshots"
        )
        assert claim.is_claimed
    env = _env(instance_home, tmp_path / "warehouse.duckdb")
    ranges = [("2026-03-01", "2026-03-03"), ("2026-03-02", "2026-03-04"), ("2026-03-03", "2026-03-05")]
    logs = {f"{a}...{b}": tmp_path / f"{i}.log" for i, (a, b) in enumerate(ranges)}
    processes = {
        name: _dagster(
            ["asset", "materialize", "--select", "group:ingestion", "--partition-range", name], env, logs[name]
        )
        for name in logs
    }
    _wait_all(processes, logs)
    rows = (
        Warehouse(database=str(tmp_path / "warehouse.duckdb"))
        .query("SELECT count(*) AS n, count(DISTINCT (coin_id, partition_hour)) AS keys FROM raw.market_snapshots")
        .iloc[0]
    )
    assert rows["n"] == rows["keys"] == 5 * 24 * 20


def test_a_warehouse_held_too_long_is_a_clear_error_not_a_hang(tmp_path):
    database = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from crypto_assets.warehouse import Warehouse
            with Warehouse(database={str(database)!r}).connect():
                print("HOLDING", flush=True)
                time.sleep(60)
        """),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "HOLDING"
        started = time.monotonic()
        with pytest.raises(WarehouseBusyError, match=r"warehouse.lock_timeout_s"):
            with Warehouse(database=str(database), lock_timeout_s=2).connect():
                pass
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()


def _hold_file(database: Path, seconds: float) -> subprocess.Popen:
    """Another process that opens ``database`` read-write (DuckDB's file lock) for ``seconds``."""
    code = (
        f"import duckdb, time; c = duckdb.connect({str(database)!r}); print('HOLDING', flush=True); "
        f"time.sleep({seconds})"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "HOLDING"
    return holder


def test_a_corrupt_file_fails_at_once_even_when_its_path_says_lock(tmp_path):
    # The path holds "lock" twice: only DuckDB's lock-conflict wording may make an open wait.
    folder = tmp_path / "lock" / "blockchain"
    folder.mkdir(parents=True)
    database = folder / "warehouse.duckdb"
    database.write_bytes(b"not a duckdb file, and never was " * 200)
    started = time.monotonic()
    with pytest.raises(ValueError) as raised:
        with Warehouse(database=str(database)).connect():  # the default lock_timeout_s: 900 s
            pass
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "\n" not in message and str(database) in message and "not a valid DuckDB database file" in message
    assert not isinstance(raised.value, WarehouseBusyError)


def test_the_serving_snapshot_does_not_wait_on_a_corrupt_file_either(tmp_path):
    import duckdb

    from crypto_assets.serving_snapshot import open_read_only

    database = tmp_path / "blocklock" / "warehouse.duckdb"
    database.parent.mkdir()
    database.write_bytes(b"\x00garbage" * 500)
    started = time.monotonic()
    with pytest.raises(duckdb.IOException, match="not a valid DuckDB database file"):
        open_read_only(str(database), wait_s=120)
    assert time.monotonic() - started < 10


def test_only_duckdb_wording_makes_an_error_a_lock_or_a_write_conflict():
    import duckdb

    from crypto_assets.duckdb_errors import is_write_conflict, lock_holder

    held = 'IO Error: Could not set lock on file "/x/w.duckdb": Conflicting lock is held in /usr/bin/python3 (PID 42). '
    assert lock_holder(duckdb.IOException(held + "See also https://duckdb.org/docs/stable/connect/concurrency")) == (
        "/usr/bin/python3 (PID 42)"
    )
    denied = 'IO Error: Cannot open file "/data/lock/w.duckdb": Permission denied'
    assert lock_holder(duckdb.IOException(denied)) is None
    assert lock_holder(RuntimeError(held)) is None  # DuckDB's type, not only its words
    assert is_write_conflict(
        duckdb.TransactionException("Failed to commit DuckLake transaction. Transaction conflict - attempting to ...")
    )
    # DuckLake failing to read its catalog while checking for conflicts is not a conflict to retry.
    assert not is_write_conflict(
        duckdb.TransactionException(
            "Failed to commit DuckLake transaction - failed to get files with deletions for conflict resolution: "
            "IO Error: connection to server lost"
        )
    )
    assert not is_write_conflict(duckdb.IOException("Transaction conflict - /data/conflicts/x.parquet"))


def test_a_lock_held_by_another_process_is_waited_for_and_logged_with_its_pid(tmp_path, monkeypatch, caplog):
    import logging

    from crypto_assets import warehouse as warehouse_module

    monkeypatch.setattr(warehouse_module, "LOCK_LOG_EVERY_S", 0.5)
    database = tmp_path / "lock" / "warehouse.duckdb"
    database.parent.mkdir()
    holder = _hold_file(database, 3)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.INFO):
            with Warehouse(database=str(database), lock_timeout_s=60).connect() as conn:
                assert conn.execute("SELECT 1").fetchone()[0] == 1
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert 1 < waited < 30
    waits = [r.getMessage() for r in caplog.records if "is held by" in r.getMessage()]
    assert len(waits) >= 2, caplog.text  # the first conflict, then again while it lasts
    assert all(f"(PID {holder.pid})" in w and "warehouse.lock_timeout_s" in w for w in waits), waits


KILLED_MID_WRITE = """
    import sys, time
    import dagster as dg
    import crypto_assets.definitions  # what a run worker loads
    from crypto_assets.assets import ingestion
    from crypto_assets.market.sources import SyntheticMarket
    from crypto_assets.warehouse import Warehouse

    real_replace = ingestion.replace_window

    def replace_then_stall(conn, table, frame, **bounds):
        # Inside the partition's transaction, after the last of its three tables was replaced.
        deleted = real_replace(conn, table, frame, **bounds)
        if table == "raw.anomaly_ground_truth" and sys.argv[3] == "stall":
            print("WRITTEN", flush=True)
            time.sleep(120)
        return deleted

    ingestion.replace_window = replace_then_stall
    source = SyntheticMarket(seed=int(sys.argv[2]))
    result = dg.materialize([ingestion.market_snapshots], instance=dg.DagsterInstance.get(), partition_key=sys.argv[4],
                            resources={"warehouse": Warehouse(database=sys.argv[1]), "market_source": source})
    print("SUCCESS" if result.success else "FAILED", flush=True)
"""


def _run_partition(env: dict[str, str], database: Path, seed: int, stall: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(KILLED_MID_WRITE),
            str(database),
            str(seed),
            "stall" if stall else "go",
            DAY,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_run_killed_mid_write_keeps_the_old_partition_and_the_rerun_succeeds(instance_home, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    env = _env(instance_home, database)
    warehouse = Warehouse(database=str(database))
    first = _run_partition(env, database, seed=1, stall=False)
    out, err = first.communicate(timeout=TIMEOUT_S)
    assert "SUCCESS" in out, err[-3000:]
    old = warehouse.query("SELECT coin_id, partition_hour, price FROM raw.market_snapshots ORDER BY ALL")

    killed = _run_partition(env, database, seed=2, stall=True)
    assert killed.stdout.readline().strip() == "WRITTEN", killed.stderr.read()[-3000:]
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert warehouse.query("SELECT coin_id, partition_hour, price FROM raw.market_snapshots ORDER BY ALL").equals(old)

    rerun = _run_partition(env, database, seed=2, stall=False)
    out, err = rerun.communicate(timeout=TIMEOUT_S)
    assert "SUCCESS" in out, err[-3000:]
    new = warehouse.query("SELECT coin_id, partition_hour, price FROM raw.market_snapshots ORDER BY ALL")
    assert len(new) == len(old) == 24 * 20 and not new["price"].equals(old["price"])
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        statuses = sorted(r.dagster_run.status.value for r in instance.get_run_records())
        materialized = instance.get_materialized_partitions(dg.AssetKey("market_snapshots"))
    # the killed run never finished; the other two did, and the partition is materialized
    assert statuses == ["STARTED", "SUCCESS", "SUCCESS"] and materialized == {DAY}


def test_range_tags_are_what_dagster_reads():
    """The one tag pair without a public constant (crypto_assets/run_tags.py): an upgrade that renames it fails here."""
    from dagster._core.storage import tags

    from crypto_assets import run_tags

    assert partition_range_tags("a", "b") == {
        tags.ASSET_PARTITION_RANGE_START_TAG: "a",
        tags.ASSET_PARTITION_RANGE_END_TAG: "b",
    }
    assert (run_tags.SENSOR_NAME_TAG, run_tags.RUN_KEY_TAG) == (tags.SENSOR_NAME_TAG, tags.RUN_KEY_TAG)
