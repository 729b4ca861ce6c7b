import json
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from crypto_assets import registry
from crypto_assets.assets import drift
from crypto_assets.feature_spec import FEATURE_NAMES, MODEL_FEATURES
from crypto_assets.partitions import daily_partitions
from crypto_assets.sensors import (
    DRIFT_COOLDOWN_ENV,
    DRIFT_THRESHOLD_ENV,
    TRIGGER_TAG,
    drift_cooldown_hours,
    drift_retraining_sensor,
    drift_share_threshold,
)
from crypto_assets.warehouse import Warehouse, transaction

SPLIT = "2026-03-10"
CHAMPION_SPLIT = "2026-03-05"
COINS = [f"coin{i:02d}" for i in range(10)]
TRAIN_HOURS, HOLDOUT_HOURS, EMBARGO_HOURS = 60, 24, 6


@pytest.fixture(autouse=True)
def reports(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "reports"
    monkeypatch.setenv(drift.REPORTS_DIR_ENV, str(folder))
    return folder


def holdout_window(split_id: str) -> tuple[datetime, datetime]:
    start = datetime.strptime(split_id, "%Y-%m-%d")
    return start, start + timedelta(hours=HOLDOUT_HOURS)


def write_split(warehouse: Warehouse, split_id: str, seed: int = 0, train_shift: dict[str, float] | None = None) -> None:
    """Standard-normal features for a split written straight into the tables training_splits reads and writes."""
    rng = np.random.default_rng(seed)
    holdout_start, holdout_end = holdout_window(split_id)
    train_end = holdout_start - timedelta(hours=EMBARGO_HOURS)
    parts = {
        "train": [train_end - timedelta(hours=h) for h in range(TRAIN_HOURS, 0, -1)],
        "holdout": [holdout_start + timedelta(hours=h) for h in range(HOLDOUT_HOURS)],
    }
    features, splits = [], []
    for part, hours in parts.items():
        keys = pd.DataFrame([(c, h) for h in hours for c in COINS], columns=["coin_id", "partition_hour"])
        values = pd.DataFrame(rng.normal(size=(len(keys), len(FEATURE_NAMES))), columns=FEATURE_NAMES)
        if part == "train":
            for name, shift in (train_shift or {}).items():
                values[name] += shift
        features.append(pd.concat([keys, values], axis=1).assign(symbol=lambda f: f["coin_id"].str.upper(), feature_spec_version="test"))
        splits.append(keys.assign(split_id=split_id, part=part))
    with warehouse.connect() as conn, transaction(conn):
        for table, frame in (("features.coin_features", pd.concat(features)), ("ml.training_splits", pd.concat(splits))):
            conn.register("_rows", frame)
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
            conn.unregister("_rows")


def shift_holdout(warehouse: Warehouse, split_id: str, columns: list[str], by: float = 5.0) -> None:
    """Add ``by`` (standard deviations: the features are standard normal) to columns of the split's holdout hours."""
    start, end = holdout_window(split_id)
    assignments = ", ".join(f"{c} = {c} + ?" for c in columns)  # column names come from FEATURE_NAMES
    with warehouse.connect() as conn:
        conn.execute(
            f"UPDATE features.coin_features SET {assignments} WHERE partition_hour >= ? AND partition_hour < ?",
            [by] * len(columns) + [start, end],
        )


def materialize_drift(warehouse, instance, split_id=SPLIT, tags=None, **config):
    return dg.materialize(
        [drift.feature_drift],
        instance=instance,
        partition_key=split_id,
        resources={"warehouse": warehouse},
        run_config=dg.RunConfig(ops={"feature_drift": drift.DriftConfig(**config)}),
        tags=tags,
        raise_on_error=False,
    )


def materialization_metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def drift_rows(warehouse, split_id=SPLIT) -> pd.DataFrame:
    return warehouse.query("SELECT * FROM ml.feature_drift WHERE split_id = ? ORDER BY comparison, feature", [split_id])


def make_champion(warehouse: Warehouse, model_name: str, split_id: str) -> None:
    with warehouse.connect() as conn:
        version = registry.register_version(
            conn, model_name=model_name, model={"kind": "stub"}, split_id=split_id, run_id=None, params={},
            features=FEATURE_NAMES, feature_spec_version="test", train_start=None, train_end=None,
            train_rows=0, holdout_rows=0, metrics={},
        )
        registry.record_decision(
            conn, model_name=model_name, to_version=version.version_id, expected_from=None, outcome="promoted",
            trigger="manual", reason="test champion", gate_results=None, run_id=None,
        )


def write_stale_drift_rows(warehouse: Warehouse, split_id: str) -> None:
    """Rows as an earlier materialization (with a champion that is gone since) would have left them."""
    with warehouse.connect() as conn:
        for comparison in (drift.HOLDOUT_VS_TRAIN, "latest_vs_champion:retired_model"):
            conn.execute(
                "INSERT INTO ml.feature_drift VALUES (?, ?, 'ret_1h', 0.5, 'K-S p_value', 0.05, false)", [split_id, comparison]
            )
            conn.execute(
                "INSERT INTO ml.drift_summaries (split_id, comparison, drift_share) VALUES (?, ?, 0.9)", [split_id, comparison]
            )


def test_a_shifted_feature_drifts_and_the_split_rows_are_replaced(warehouse, instance, reports):
    write_split(warehouse, SPLIT)
    # one feature of the holdout moves by 5 standard deviations
    shift_holdout(warehouse, SPLIT, ["ret_1h"])
    write_stale_drift_rows(warehouse, SPLIT)
    write_stale_drift_rows(warehouse, "2026-03-09")  # another split: left alone

    result = materialize_drift(warehouse, instance, drift_share_threshold=0.02)
    assert result.success  # the check only warns
    rows = drift_rows(warehouse)
    assert len(rows) == len(MODEL_FEATURES)  # stale rows replaced, not appended to
    assert set(rows["comparison"]) == {drift.HOLDOUT_VS_TRAIN}  # no champion, so no champion comparison
    rows = rows.set_index("feature")
    assert bool(rows.loc["ret_1h", "drifted"])
    assert rows.drop(index="ret_1h")["drifted"].sum() <= 3  # unshifted: at most a few false alarms at p < 0.05
    assert rows.loc["ret_1h", "stattest"] == "K-S p_value" and rows.loc["ret_1h", "drift_score"] < 1e-6
    assert len(drift_rows(warehouse, "2026-03-09")) == 2
    summaries = warehouse.query("SELECT * FROM ml.drift_summaries WHERE split_id = ?", [SPLIT])
    assert summaries["comparison"].tolist() == [drift.HOLDOUT_VS_TRAIN]

    metadata = materialization_metadata(result)
    assert metadata["drifted_features"].value == int(rows["drifted"].sum())
    assert summaries["drift_share"].iloc[0] == pytest.approx(metadata["drift_share"].value)
    assert metadata["drift_share"].value == pytest.approx(rows["drifted"].sum() / len(MODEL_FEATURES))
    assert metadata["top_drifted_features"].value.splitlines()[2].startswith("| ret_1h")  # ranked first
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == drift.DRIFT_SHARE_CHECK
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["threshold"].value == 0.02

    # the report is on disk, named after split and comparison, and linked from the metadata
    report = reports / f"feature_drift_{SPLIT}_holdout_vs_train.html"
    assert report.is_file() and report.stat().st_size > 10_000
    assert metadata["report"].value == str(report.resolve())
    assert metadata["report_url"].value == report.resolve().as_uri()
    assert summaries["report_path"].iloc[0] == str(report.resolve())


def test_champion_comparison_uses_the_champions_training_data(warehouse, instance, reports):
    write_split(warehouse, SPLIT, seed=1)
    # the champion learned on data where rsi_14 sat 5 sd lower than it does now
    write_split(warehouse, CHAMPION_SPLIT, seed=2, train_shift={"rsi_14": -5.0})
    make_champion(warehouse, "volatility_spike", CHAMPION_SPLIT)

    result = materialize_drift(warehouse, instance, max_reference_rows=300)
    assert result.success
    rows = drift_rows(warehouse)
    champion = f"{drift.CHAMPION_COMPARISON_PREFIX}volatility_spike"
    assert set(rows["comparison"]) == {drift.HOLDOUT_VS_TRAIN, champion}
    by = rows.set_index(["comparison", "feature"])["drifted"]
    assert bool(by[(champion, "rsi_14")]) and not bool(by[(drift.HOLDOUT_VS_TRAIN, "rsi_14")])

    summaries = warehouse.query("SELECT * FROM ml.drift_summaries WHERE split_id = ? ORDER BY comparison", [SPLIT])
    assert summaries["comparison"].tolist() == [drift.HOLDOUT_VS_TRAIN, champion]
    assert summaries["reference_rows"].tolist() == [300, 300]  # sampled down from 600
    assert summaries["current_rows"].tolist() == [240, 240]
    metadata = materialization_metadata(result)
    champion_report = reports / f"feature_drift_{SPLIT}_latest_vs_champion_volatility_spike.html"
    assert champion_report.is_file()
    assert metadata[f"report/{champion}"].value == str(champion_report.resolve())
    assert metadata["champion_drift_share"].value == pytest.approx(summaries["drift_share"].iloc[1])
    # the holdout itself did not move: low drift share, and the check passes at the default threshold
    assert metadata["drift_share"].value < 0.15
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["threshold"].value == 0.3


def test_a_split_without_rows_fails_with_a_clear_message(warehouse, instance):
    result = materialize_drift(warehouse, instance)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.user_failure_data.description)
    assert SPLIT in message and "materialize training_splits" in message


def test_parse_drift_snapshot_handles_both_test_directions():
    def metric(mid, column, method, threshold, value):
        return {"id": mid, "config": {"type": "evidently:metric_v2:ValueDrift", "column": column, "method": method, "threshold": threshold}, "value": value}

    def test(mid, status):
        return {"metric_config": {"metric_id": mid, "params": {"type": "evidently:metric_v2:ValueDrift"}}, "status": status}

    snapshot = {
        "metrics": [
            {"id": "c", "config": {"type": "evidently:metric_v2:DriftedColumnsCount"}, "value": {"count": 2.0, "share": 0.5}},
            metric("a", "x", "K-S p_value", 0.05, 0.001), metric("b", "y", "Wasserstein distance (normed)", 0.1, 0.5),
            metric("d", "z", "K-S p_value", 0.05, 0.7), metric("e", "w", "Wasserstein distance (normed)", 0.1, 0.01),
        ],
        "tests": [test("a", "FAIL"), test("b", "FAIL"), test("d", "SUCCESS"), test("e", "SUCCESS")],
    }
    rows, share, count = drift.parse_drift_snapshot(snapshot)
    assert (share, count) == (0.5, 2)
    assert rows.set_index("feature")["drifted"].to_dict() == {"x": True, "y": True, "z": False, "w": False}
    severity = rows.set_index("feature").apply(drift._severity, axis=1)
    assert severity["x"] == pytest.approx(50) and severity["y"] == pytest.approx(5)
    assert severity["z"] < 1 and severity["w"] < 1


def test_drift_config_and_report_names():
    with pytest.raises(Exception):
        drift.DriftConfig(drift_share_threshold=0)
    with pytest.raises(Exception):
        drift.DriftConfig(drift_share_threshold=1.5)
    assert drift.report_file_name("2026-03-10", "latest_vs_champion:m/1") == "feature_drift_2026-03-10_latest_vs_champion_m_1.html"


# --- sensor -----------------------------------------------------------------------------------


def evaluate(instance, cursor):
    result = drift_retraining_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult)
    return result


def report_drift(instance, day: str, share: float) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=drift.FEATURE_DRIFT_KEY, partition=day, metadata={"drift_share": share})
    )


def test_sensor_requests_retraining_on_high_drift_at_most_once_per_cooldown(warehouse, instance, monkeypatch):
    monkeypatch.delenv(DRIFT_THRESHOLD_ENV, raising=False)
    monkeypatch.delenv(DRIFT_COOLDOWN_ENV, raising=False)
    write_split(warehouse, SPLIT, seed=3)
    shift_holdout(warehouse, SPLIT, MODEL_FEATURES)  # every feature moves
    assert materialize_drift(warehouse, instance).success

    first = evaluate(instance, None)
    [request] = first.run_requests
    assert request.job_name == "daily_training_job" and request.partition_key == SPLIT
    assert request.tags[TRIGGER_TAG] == "drift" and request.run_key.startswith(f"drift-{SPLIT}-")
    state = json.loads(first.cursor)
    assert state["last_storage_id"] and state["last_request_ts"]

    # nothing new since
    quiet = evaluate(instance, first.cursor)
    assert not quiet.run_requests and "No new feature_drift" in quiet.skip_reason.skip_message

    # the next day drifts too, within the cooldown: skipped, and the cursor keeps the event for later
    report_drift(instance, "2026-03-11", 0.8)
    cooling = evaluate(instance, first.cursor)
    assert not cooling.run_requests
    assert "cooldown is active until" in cooling.skip_reason.skip_message
    assert json.loads(cooling.cursor) == state

    # once the cooldown is over (last request moved 7 hours back), the pending drift is acted on
    earlier = json.dumps({**state, "last_request_ts": state["last_request_ts"] - 7 * 3600})
    after = evaluate(instance, earlier)
    [request] = after.run_requests
    assert request.partition_key == "2026-03-11"

    # low drift is no reason to retrain
    report_drift(instance, "2026-03-12", 0.05)
    low = evaluate(instance, after.cursor)
    assert not low.run_requests and "No new drift" in low.skip_reason.skip_message


def test_sensor_ignores_materializations_of_runs_it_triggered(instance):
    @dg.asset(key=drift.FEATURE_DRIFT_KEY, partitions_def=daily_partitions)
    def stub_feature_drift():
        return dg.MaterializeResult(metadata={"drift_share": 0.9})

    assert dg.materialize([stub_feature_drift], instance=instance, partition_key=SPLIT, tags={TRIGGER_TAG: "drift"}).success
    result = evaluate(instance, None)
    assert not result.run_requests and "drift-triggered" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["last_storage_id"] is not None


def test_sensor_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(DRIFT_THRESHOLD_ENV, "0.5")
    monkeypatch.setenv(DRIFT_COOLDOWN_ENV, "1.5")
    assert (drift_share_threshold(), drift_cooldown_hours()) == (0.5, 1.5)
    monkeypatch.setenv(DRIFT_THRESHOLD_ENV, "2")
    with pytest.raises(ValueError, match=DRIFT_THRESHOLD_ENV):
        drift_share_threshold()
    monkeypatch.setenv(DRIFT_COOLDOWN_ENV, "soon")
    with pytest.raises(ValueError, match=DRIFT_COOLDOWN_ENV):
        drift_cooldown_hours()


def test_the_code_location_wires_the_drift_asset_and_sensor():
    from crypto_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def("drift_retraining_sensor").job_name == "daily_training_job"
    job = defs.resolve_job_def("daily_training_job")
    assert drift.FEATURE_DRIFT_KEY in job.asset_layer.executable_asset_keys
