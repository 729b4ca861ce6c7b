"""The quickstart's runs, twice on one instance: every run succeeds with its job's origin, and the second
changes nothing (same rows in every table, no new version, no second promotion)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from crypto_assets.instance import DAGSTER_ENV_DEFAULTS, prepare_home

REPO_ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-20T10:05:00"
# Columns that say when a row was written, not what it holds: a re-run may rewrite them.
WRITTEN_AT = {"ingested_at", "evaluated_at", "touched_at"}
REWRITTEN_SUMMARIES = {"ml.split_summaries", "ml.drift_summaries"}  # their created_at is the run's time


def tables(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        names = conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema IN ('raw', 'features', 'ml', 'registry', 'serving') ORDER BY 1"
        ).fetchall()
        out = {}
        for (name,) in names:
            columns = [
                c
                for (c,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema || '.' || table_name = ? ORDER BY ordinal_position",
                    [name],
                ).fetchall()
                if c not in WRITTEN_AT and not (name in REWRITTEN_SUMMARIES and c == "created_at")
            ]
            if not columns:
                continue  # only when-written columns (registry.write_guard)
            quoted = ", ".join(f'"{c}"' for c in columns)
            # the scoring latency an evaluation measures is a stopwatch reading, not a result
            where = " WHERE metric <> 'latency_ms_per_1000_rows'" if name == "ml.model_evaluations" else ""
            out[name] = conn.execute(f"SELECT {quoted} FROM {name}{where} ORDER BY ALL").fetchall()
    return out


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COINGECKO_", "CRYPTO_ASSETS_", "DAGSTER_"))}
    env.update(
        **DAGSTER_ENV_DEFAULTS,
        DAGSTER_HOME=str(root / "dagster_home"),
        CRYPTO_ASSETS_DUCKDB_PATH=str(root / "warehouse.duckdb"),
        CRYPTO_ASSETS_REPORTS_DIR=str(root / "reports"),
        CRYPTO_ASSETS_PARTITIONS_START="2026-11-01",
    )
    prepare_home(root / "dagster_home", "local")
    snapshots = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-m", "crypto_assets.quickstart", "--days", "10", "--as-of", AS_OF],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        snapshots.append(tables(root / "warehouse.duckdb"))
    return root, snapshots


def test_a_second_quickstart_changes_nothing(twice):
    _, (first, second) = twice
    assert first.keys() == second.keys()
    changed = [name for name in first if first[name] != second[name]]
    assert not changed, {name: (len(first[name]), len(second[name])) for name in changed}
    assert len(first["registry.model_versions"]) >= 2 and first["serving.model_scores"]
    # Every model has a champion (a model, or a baseline while no model passed its gates), and serves.
    with duckdb.connect(str(twice[0] / "warehouse.duckdb"), read_only=True) as conn:
        champions = dict(conn.execute("SELECT model_name, version_id FROM registry.aliases").fetchall())
        served = conn.execute("SELECT DISTINCT model_name FROM serving.model_scores WHERE role = 'champion'").fetchall()
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT model_name, role, coin_id, partition_hour FROM serving.model_scores "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        outcomes = conn.execute(
            "SELECT count(*) FROM serving.prediction_outcomes WHERE role = 'champion' AND evidence <> 'in_sample'"
        ).fetchone()[0]
    assert set(champions) == {"anomaly_detector", "volatility_model"} and len(served) == 2
    assert duplicates == 0 and outcomes > 0


def test_every_run_succeeded_with_its_jobs_origin(twice):
    root, _ = twice
    with dg.DagsterInstance.from_config(str(root / "dagster_home")) as instance:
        runs = instance.get_runs()
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [
            (r.job_name, r.status) for r in runs
        ]
        assert all(r.remote_job_origin is not None for r in runs)
        # the tag the UI's job pages and Overview filter runs by
        labelled = instance.get_runs(
            dg.RunsFilter(tags={".dagster/repository": "__repository__@crypto_assets.definitions"})
        )
        assert len(labelled) == len(runs)
        gate_runs = [r for r in runs if r.job_name == "champion_gate_job"]
        # two models decided once each: the second quickstart's evaluations repeat the first's decisions
        assert gate_runs and all(r.tags.get("dagster/sensor_name") == "champion_promotion_sensor" for r in gate_runs)
        training = [r for r in runs if r.job_name == "daily_training_job"]
        assert len(training) == 2
