"""Feature drift, and the retraining sensor.

Drift: like with like, thresholds calibrated on the reference, a dataset-level rule.
"""

import json
from datetime import datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pydantic
import pytest

from crypto_assets import registry
from crypto_assets.assets import drift, features, ingestion
from crypto_assets.feature_spec import DRIFT_FEATURES, FEATURE_SPEC_VERSION
from crypto_assets.market.sources import SyntheticMarket
from crypto_assets.partitions import daily_partitions
from crypto_assets.resources import Reports, build_resources
from crypto_assets.sensors import TRIGGER_TAG, drift_retraining_sensor
from crypto_assets.settings import DRIFT_COOLDOWN_ENV, REPORTS_DIR_ENV, REPORTS_URL_ENV, SettingsError, read_settings
from crypto_assets.warehouse import Warehouse

from .conftest import private_copy, range_tags

DAY = "2026-03-17"


@pytest.fixture(autouse=True)
def reports(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "reports"
    monkeypatch.setenv(REPORTS_DIR_ENV, str(folder))
    return folder


@pytest.fixture(scope="module")
def market_database(tmp_path_factory) -> Path:
    """Snapshots and features of the synthetic market, 2026-02-20 .. 2026-03-18, built once."""
    path = tmp_path_factory.mktemp("drift") / "warehouse.duckdb"
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [ingestion.market_snapshots, features.coin_features],
            instance=instance,
            resources={"warehouse": Warehouse(database=str(path)), "market_source": SyntheticMarket()},
            tags=range_tags("2026-02-20", "2026-03-18"),
        ).success
    return path


@pytest.fixture
def market(market_database: Path, tmp_path: Path) -> Warehouse:
    return private_copy(market_database, tmp_path)


def materialize_drift(warehouse, instance, day=DAY, tags=None, **config):
    return dg.materialize(
        [drift.feature_drift],
        instance=instance,
        partition_key=day,
        resources={"warehouse": warehouse, "reports": build_resources()["reports"]},
        run_config=dg.RunConfig(ops={"feature_drift": drift.DriftConfig(**config)}),
        tags=tags,
        raise_on_error=False,
    )


def materialization_metadata(result) -> dict:
    [event] = result.get_asset_materialization_events()
    return event.materialization.metadata


def freeze_the_feed(warehouse: Warehouse, day: str) -> None:
    """From ``day`` on, every coin's feed repeats its last price and volume; features are recomputed.

    As if the source stopped updating.
    """
    with warehouse.connect() as conn:
        conn.execute(
            """
            UPDATE raw.market_snapshots s
               SET price = last.price, open = last.price, high = last.price, low = last.price,
                   volume_quote = last.volume_quote
            FROM (
                SELECT coin_id, price, volume_quote FROM raw.market_snapshots
                WHERE partition_hour = ?::TIMESTAMP - INTERVAL 1 HOUR
            ) last
            WHERE s.coin_id = last.coin_id AND s.partition_hour >= ?::TIMESTAMP
            """,
            [day, day],
        )
    with dg.DagsterInstance.ephemeral() as instance:
        assert dg.materialize(
            [features.coin_features],
            instance=instance,
            resources={"warehouse": warehouse},
            tags=range_tags(day, "2026-03-18"),
        ).success


def test_a_quiet_day_raises_no_alarm_and_records_both_windows(market, instance, reports):
    result = materialize_drift(market, instance)
    assert result.success
    metadata = materialization_metadata(result)
    assert metadata[drift.DRIFT_DETECTED_METADATA_KEY].value is False
    assert metadata["current_window"].value.startswith("2026-03-17 00:00 .. 2026-03-18 00:00 UTC (480 rows")
    assert metadata["reference_window"].value.startswith("2026-03-03 00:00 .. 2026-03-17 00:00 UTC")
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == drift.DRIFT_CHECK and check.passed and check.severity == dg.AssetCheckSeverity.WARN
    summary = market.query("SELECT * FROM ml.drift_summaries WHERE split_id = ?", [DAY]).iloc[0]
    assert (summary["comparison"], str(summary["reference_start"]), str(summary["current_end"])) == (
        drift.RECENT_VS_REFERENCE,
        "2026-03-03 00:00:00",
        "2026-03-18 00:00:00",
    )
    assert summary["drift_detected"] == False and "wasserstein above the largest reference day's" in summary["rule"]  # noqa: E712
    rows = market.query("SELECT * FROM ml.feature_drift WHERE split_id = ?", [DAY])
    assert sorted(rows["feature"]) == sorted(DRIFT_FEATURES) and (rows["stattest"] == "wasserstein").all()
    report = reports / f"feature_drift_{DAY}_recent_vs_reference.html"
    assert report.is_file() and metadata["report"].value == str(report.resolve())
    # every feature with its score and threshold is in a table; "drifted" lists only the features that drifted
    assert sorted(r.data["feature"] for r in metadata["features"].value.records) == sorted(DRIFT_FEATURES)
    drifted = [r.data["feature"] for r in metadata["features"].value.records if r.data["drifted"]]
    assert all(name in metadata["drifted"].value for name in drifted)
    assert metadata["drifted_features"].value == len(drifted)
    assert not any(f"| {name} " in metadata["drifted"].value for name in set(DRIFT_FEATURES) - set(drifted))
    # the report names both windows and the project's rule
    assert "against reference 2026-03-03 00:00 .. 2026-03-17 00:00 UTC" in report.read_text()


def test_a_frozen_feed_is_drift_and_a_rerun_replaces_the_rows(market, instance):
    assert materialize_drift(market, instance).success
    freeze_the_feed(market, DAY)
    result = materialize_drift(market, instance)
    assert result.success  # the check only warns
    metadata = materialization_metadata(result)
    assert metadata[drift.DRIFT_DETECTED_METADATA_KEY].value is True
    rows = market.query(
        "SELECT feature, drift_score / threshold AS past FROM ml.feature_drift WHERE split_id = ? AND drifted", [DAY]
    )
    assert {"unchanged_price_6h", "unchanged_volume_6h"} <= set(rows["feature"])
    # few features, but decisively: the stale-feed counters sit many times past anything the reference showed
    assert rows["past"].max() >= drift.DriftConfig().decisive_factor
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert (
        len(market.query("SELECT * FROM ml.drift_summaries WHERE split_id = ?", [DAY])) == 1
    )  # replaced, not appended


def test_a_champion_is_compared_on_the_rows_it_was_trained_on(market, instance):
    with market.connect() as conn:
        version, _ = registry.register_version(
            conn,
            model_name="volatility_model",
            model={"stub": True},
            features=list(DRIFT_FEATURES),
            params={},
            lineage=registry.Lineage(
                split_id="2026-03-05",
                feature_spec_version=FEATURE_SPEC_VERSION,
                train_start=datetime(2026, 2, 26),
                train_end=datetime(2026, 3, 6),
                train_rows=1,
                evaluation_rows=1,
            ),
            metrics={},
            run_id=None,
        )
        registry.record_decision(
            conn,
            model_name="volatility_model",
            to_version=version.version_id,
            expected_from=None,
            outcome="promoted",
            trigger="manual",
            reason="test",
            gate_results=None,
            run_id=None,
        )
    result = materialize_drift(market, instance)
    assert result.success
    comparison = f"{drift.CHAMPION_COMPARISON_PREFIX}volatility_model"
    summaries = market.query(
        "SELECT * FROM ml.drift_summaries WHERE split_id = ? ORDER BY comparison", [DAY]
    ).set_index("comparison")
    assert sorted(summaries.index) == sorted([drift.RECENT_VS_REFERENCE, comparison])
    assert str(summaries.loc[comparison, "reference_start"]) == "2026-02-26 00:00:00"
    assert str(summaries.loc[comparison, "reference_end"]) == "2026-03-06 00:00:00"
    assert f"drift_share/{comparison}" in materialization_metadata(result)


def test_a_day_without_features_fails_with_a_clear_message(market, instance):
    result = materialize_drift(market, instance, day="2026-03-25")
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.user_failure_data.description)
    assert "2026-03-25" in message and "materialize coin_features" in message


def test_thresholds_are_calibrated_on_how_much_the_reference_days_differ():
    hours = pd.date_range("2026-03-01", periods=14 * 24, freq="h")
    rng = np.random.default_rng(0)
    steady = rng.normal(size=len(hours))
    wandering = steady + np.repeat(rng.normal(scale=3.0, size=14), 24)  # each day sits at its own level
    reference = pd.DataFrame({"partition_hour": hours, "steady": steady, "wandering": wandering})
    thresholds = drift.calibrated_thresholds(
        reference, ["steady", "wandering"], drift.DriftConfig(calibration_margin=1.0)
    )
    assert thresholds["wandering"] > 3 * thresholds["steady"]
    assert thresholds["steady"] >= drift.DriftConfig().feature_threshold


def test_parse_drift_snapshot_handles_both_test_directions():
    def metric(mid, column, method, threshold, value):
        return {
            "id": mid,
            "config": {
                "type": "evidently:metric_v2:ValueDrift",
                "column": column,
                "method": method,
                "threshold": threshold,
            },
            "value": value,
        }

    def test(mid, status):
        return {
            "metric_config": {"metric_id": mid, "params": {"type": "evidently:metric_v2:ValueDrift"}},
            "status": status,
        }

    snapshot = {
        "metrics": [
            {
                "id": "c",
                "config": {"type": "evidently:metric_v2:DriftedColumnsCount"},
                "value": {"count": 2.0, "share": 0.5},
            },
            metric("a", "x", "K-S p_value", 0.05, 0.001),
            metric("b", "y", "Wasserstein distance (normed)", 0.1, 0.5),
            metric("d", "z", "K-S p_value", 0.05, 0.7),
            metric("e", "w", "Wasserstein distance (normed)", 0.1, 0.01),
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
    for bad in (
        {"drift_share_threshold": 0},
        {"drift_share_threshold": 1.5},
        {"per_feature_thresholds": {"no_such_feature": 1.0}},
        {"method": "ks"},
    ):
        with pytest.raises(pydantic.ValidationError):
            drift.DriftConfig(**bad)
    assert (
        Reports(folder="/reports").path("feature_drift", "2026-03-10", "recent_vs_champion_training:m/1").name
        == "feature_drift_2026-03-10_recent_vs_champion_training_m_1.html"
    )


# --- sensor -----------------------------------------------------------------------------------


def evaluate(instance, cursor):
    result = drift_retraining_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult)
    return result


def report_drift(instance, day: str, detected: bool, share: float = 0.5) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=drift.FEATURE_DRIFT_KEY,
            partition=day,
            metadata={drift.DRIFT_DETECTED_METADATA_KEY: detected, drift.DRIFT_SHARE_METADATA_KEY: share},
        )
    )


def test_sensor_requests_retraining_on_detected_drift_at_most_once_per_cooldown(instance, monkeypatch):
    monkeypatch.delenv(DRIFT_COOLDOWN_ENV, raising=False)
    report_drift(instance, "2026-03-10", True)
    first = evaluate(instance, None)
    [request] = first.run_requests
    assert request.job_name == "daily_training_job" and request.partition_key == "2026-03-10"
    assert request.tags[TRIGGER_TAG] == "drift" and request.run_key.startswith("drift-2026-03-10-")
    state = json.loads(first.cursor)
    assert state["last_storage_id"] and state["last_request_ts"]

    quiet = evaluate(instance, first.cursor)
    assert not quiet.run_requests and "No new feature_drift" in quiet.skip_reason.skip_message

    # the next day drifts too, within the cooldown: skipped, and the cursor keeps the event for later
    report_drift(instance, "2026-03-11", True, 0.8)
    cooling = evaluate(instance, first.cursor)
    assert not cooling.run_requests and "cooldown is active until" in cooling.skip_reason.skip_message
    assert json.loads(cooling.cursor) == state

    # once the cooldown is over (last request moved 7 hours back), the pending drift is acted on
    earlier = json.dumps({**state, "last_request_ts": state["last_request_ts"] - 7 * 3600})
    [request] = evaluate(instance, earlier).run_requests
    assert request.partition_key == "2026-03-11"

    # a day without detected drift is no reason to retrain, whatever its share
    report_drift(instance, "2026-03-12", False, 0.2)
    low = evaluate(instance, earlier)
    assert not low.run_requests and "No new drift" in low.skip_reason.skip_message


def test_sensor_ignores_materializations_of_runs_it_triggered(instance):
    @dg.asset(key=drift.FEATURE_DRIFT_KEY, partitions_def=daily_partitions)
    def stub_feature_drift():
        return dg.MaterializeResult(
            metadata={drift.DRIFT_DETECTED_METADATA_KEY: True, drift.DRIFT_SHARE_METADATA_KEY: 0.9}
        )

    assert dg.materialize(
        [stub_feature_drift], instance=instance, partition_key=DAY, tags={TRIGGER_TAG: "drift"}
    ).success
    result = evaluate(instance, None)
    assert not result.run_requests and "drift-triggered" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["last_storage_id"] is not None


def test_sensor_cooldown_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(DRIFT_COOLDOWN_ENV, "1.5")
    assert read_settings().drift_cooldown_hours == 1.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(DRIFT_COOLDOWN_ENV, bad)
        with pytest.raises(SettingsError, match=DRIFT_COOLDOWN_ENV):
            read_settings()


def test_the_code_location_wires_the_drift_asset_and_sensor():
    from crypto_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def("drift_retraining_sensor").job_name == "daily_training_job"
    job = defs.resolve_job_def("daily_training_job")
    assert drift.FEATURE_DRIFT_KEY in job.asset_layer.executable_asset_keys


def test_the_report_opens_from_the_ui_over_http(market, instance, reports, monkeypatch):
    import threading
    import urllib.error
    import urllib.request

    from crypto_assets.report_server import serve

    server = serve(reports, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv(REPORTS_URL_ENV, base)
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        metadata = materialization_metadata(materialize_drift(market, instance))
        url = metadata["report_url"].value
        assert url == f"{base}/feature_drift_{DAY}_recent_vs_reference.html"
        with local.open(url, timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read(2000).lower()
        for outside in ("/", "/../warehouse.duckdb", "/%2e%2e/warehouse.duckdb"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                local.open(base + outside, timeout=10)
            assert refused.value.code == 404  # no listing, nothing outside the reports folder
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv(REPORTS_URL_ENV, "file:///tmp")
    with pytest.raises(SettingsError, match=REPORTS_URL_ENV):
        read_settings()
