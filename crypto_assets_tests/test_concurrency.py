"""Several runs at once against one Dagster instance and one DuckDB file, as a deployment has them."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from crypto_assets.warehouse import Warehouse

from .conftest import PREPARED_SPLITS

ROOT = Path(__file__).resolve().parents[1]
HOURLY = "2026-03-20-05:00"
BACKFILL = ("2026-03-16-00:00", "2026-03-18-23:00")
TRAINING_DAY = PREPARED_SPLITS[-1]


def _launch(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    dagster = str(Path(sys.executable).parent / "dagster")
    return subprocess.Popen([dagster, *args, "-m", "crypto_assets.definitions"], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def test_concurrent_runs_serialize_their_writes_and_lose_nothing(prepared_database, tmp_path):
    database = tmp_path / "warehouse.duckdb"
    shutil.copy(prepared_database, database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRYPTO_ASSETS_DUCKDB_PATH": str(database)}
    # Create the instance's storage once, as `dagster dev` or the daemon does before any run:
    # runs started on an uninitialized instance race to create its SQLite tables.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []

    runs = {
        "hourly ingest and score": ["job", "execute", "-j", "hourly_ingest_and_score_job",
                                    "--tags", json.dumps({"dagster/partition": HOURLY})],
        "3-day single-run backfill": ["job", "execute", "-j", "hourly_ingest_and_score_job", "--tags", json.dumps(
            {"dagster/asset_partition_range_start": BACKFILL[0], "dagster/asset_partition_range_end": BACKFILL[1]})],
        "training": ["asset", "materialize", "--select",
                     "training_splits,anomaly_detector_candidate,volatility_model_candidate", "--partition", TRAINING_DAY],
    }
    started = time.monotonic()
    processes = {name: _launch(args, env, tmp_path / f"{i}.log") for i, (name, args) in enumerate(runs.items())}
    for process in processes.values():
        process.wait(timeout=600)
    elapsed = time.monotonic() - started
    failures = {name: (tmp_path / f"{i}.log").read_text()[-3000:]
                for i, (name, p) in enumerate(processes.items()) if p.returncode != 0}
    assert not failures, failures

    # Every run succeeded, in the instance the UI would show.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records()
        assert len(records) == 3 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        intervals = _writer_step_intervals(instance, [r.dagster_run.run_id for r in records])

    # No two steps that write DuckDB ever ran at the same time, across all three runs.
    intervals.sort()
    overlaps = [(a, b) for a, b in zip(intervals, intervals[1:]) if b[0] < a[1]]
    assert not overlaps, overlaps
    assert len({run for _, _, run, _ in intervals}) == 3

    warehouse = Warehouse(database=str(database))
    counts = warehouse.query(
        """
        SELECT 'snapshots' AS t, count(*) AS n, count(DISTINCT (coin_id, partition_hour)) AS keys
        FROM raw.market_snapshots WHERE partition_hour >= '2026-03-16'
        UNION ALL SELECT 'features', count(*), count(DISTINCT (coin_id, partition_hour))
        FROM features.coin_features WHERE partition_hour >= '2026-03-16'
        """
    ).set_index("t")
    expected = 3 * 24 * 20 + 20  # the backfill's hours and the single hour, 20 coins each
    assert counts.loc["snapshots", "n"] == counts.loc["snapshots", "keys"] == expected
    assert counts.loc["features", "n"] == counts.loc["features", "keys"] == expected
    versions = warehouse.query(
        "SELECT model_name, count(*) AS n FROM registry.model_versions WHERE split_id = ? GROUP BY 1 ORDER BY 1", [TRAINING_DAY]
    )
    assert versions.values.tolist() == [["anomaly_detector", 1], ["volatility_model", 1]]
    print(f"\nconcurrency: 3 runs, {len(intervals)} writer steps, 0 overlaps, rows expected {expected} found "
          f"{counts.loc['snapshots', 'n']} snapshots / {counts.loc['features', 'n']} features, 0 failures, {elapsed:.0f}s")


def _writer_step_intervals(instance: dg.DagsterInstance, run_ids: list[str]) -> list[tuple[float, float, str, str]]:
    """(start, end, run id, step) of every executed step; all of this project's steps write DuckDB."""
    intervals = []
    for run_id in run_ids:
        starts: dict[str, float] = {}
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                starts[event.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
                intervals.append((starts[event.step_key], entry.timestamp, run_id, event.step_key))
    if not intervals:
        pytest.fail("no step events found")
    return intervals
