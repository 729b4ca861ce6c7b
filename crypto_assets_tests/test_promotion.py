import json

import dagster as dg

from crypto_assets import registry
from crypto_assets.assets import models, promotion, serving
from crypto_assets.assets.promotion import promotion_run_requests
from crypto_assets.models import FAMILIES_BY_NAME

DAY = "2026-03-14"
HOUR = "2026-03-14-12:00"
WEAK_DETECTOR = {"n_estimators": 10, "max_samples": 16, "contamination": 0.01, "random_state": 1}


def _assets(name):
    family = FAMILIES_BY_NAME[name]
    return [a for a in models.candidate_assets + models.evaluation_assets
            if a.key in (models.candidate_key(family), models.evaluation_key(family))]


def train_and_evaluate(warehouse, instance, name="anomaly_detector", day=DAY, candidate=None, gates=None):
    ops = {}
    if candidate:
        ops[f"{name}_candidate"] = {"config": candidate}
    if gates:
        ops[f"{name}_evaluation"] = {"config": gates}
    return dg.materialize(
        _assets(name), instance=instance, partition_key=day, resources={"warehouse": warehouse},
        run_config={"ops": ops}, raise_on_error=False,
    )


def champion_run(warehouse, instance, **config):
    return dg.materialize(
        [promotion.model_champions], instance=instance, resources={"warehouse": warehouse},
        run_config={"ops": {"model_champions": {"config": config}}}, raise_on_error=False,
    )


def apply_promotion_requests(warehouse, instance, cursor=None):
    """What the promotion sensor and the daemon do: request, then run the champion job."""
    requests, cursor = promotion_run_requests(instance, cursor or {})
    results = [champion_run(warehouse, instance, **r.run_config["ops"]["model_champions"]["config"]) for r in requests]
    return requests, results, cursor


def events(warehouse, name="anomaly_detector"):
    with warehouse.connect() as conn:
        return registry.promotion_events(conn, name)


def champion_id(warehouse, name="anomaly_detector"):
    with warehouse.connect() as conn:
        current = registry.champion(conn, name)
    return current.version_id if current else None


def test_failed_gate_leaves_the_champion_unchanged_and_records_why(prepared_warehouse, instance):
    evaluation = train_and_evaluate(prepared_warehouse, instance, gates={"min_pr_auc": 0.999})
    assert not evaluation.success  # the blocking gate stops the run...
    checks = {e.check_name: e.passed for e in evaluation.get_asset_check_evaluations()}
    assert checks[models.FLOOR_GATE] is False and checks[models.BASELINE_GATE] is True
    # ...but the evaluation is recorded, and promotion reads the gate results themselves.
    requests, results, _ = apply_promotion_requests(prepared_warehouse, instance)
    assert len(requests) == 1 and results[0].success
    assert champion_id(prepared_warehouse) is None
    (event,) = events(prepared_warehouse)
    assert event["outcome"] == "refused" and event["trigger"] == "sensor"
    assert models.FLOOR_GATE in event["reason"]
    assert json.loads(event["gate_results"])[models.FLOOR_GATE] is False
    decision = results[0].asset_materializations_for_node("model_champions")[0].metadata
    assert decision["outcome"].value == "refused" and decision["champion_version"].value == "none"


def test_first_candidate_becomes_champion_only_through_the_absolute_gates(prepared_warehouse, instance):
    evaluation = train_and_evaluate(prepared_warehouse, instance)
    assert evaluation.success, "the detector should pass every gate on the synthetic market"
    metadata = evaluation.asset_materializations_for_node("anomaly_detector_evaluation")[0].metadata
    assert metadata["candidate_pr_auc"].value > metadata["baseline_pr_auc"].value
    assert metadata["champion_version"].value == "none"
    _, results, _ = apply_promotion_requests(prepared_warehouse, instance)
    assert results[0].success
    assert champion_id(prepared_warehouse) == "v1"
    (event,) = events(prepared_warehouse)
    assert (event["from_version"], event["to_version"], event["outcome"]) == (None, "v1", "promoted")
    assert all(json.loads(event["gate_results"]).values())
    assert "first champion" in event["reason"]


def test_a_better_candidate_replaces_the_champion_and_an_equal_one_does_not(prepared_warehouse, instance):
    # The weak detector may or may not pass its gates; it becomes champion by hand either way.
    train_and_evaluate(prepared_warehouse, instance, candidate=WEAK_DETECTOR, gates={"min_pr_auc": 0.0})
    assert champion_run(prepared_warehouse, instance, model_name="anomaly_detector", action="promote", version="v1",
                        reason="weak model as a starting point").success
    cursor = {"anomaly_detector": instance.fetch_materializations(models.evaluation_key(FAMILIES_BY_NAME["anomaly_detector"]), limit=1).records[0].storage_id}

    better = train_and_evaluate(prepared_warehouse, instance)
    assert better.success
    _, results, cursor = apply_promotion_requests(prepared_warehouse, instance, cursor)
    assert champion_id(prepared_warehouse) == "v2"
    assert events(prepared_warehouse)[-1]["from_version"] == "v1"

    same = train_and_evaluate(prepared_warehouse, instance)  # identical config and seed: no improvement
    assert not same.success
    checks = {e.check_name: e.passed for e in same.get_asset_check_evaluations()}
    assert checks[models.CHAMPION_GATE] is False
    apply_promotion_requests(prepared_warehouse, instance, cursor)
    assert champion_id(prepared_warehouse) == "v2"
    last = events(prepared_warehouse)[-1]
    assert last["outcome"] == "refused" and models.CHAMPION_GATE in last["reason"]


def test_manual_promotion_and_rollback(prepared_warehouse, instance):
    train_and_evaluate(prepared_warehouse, instance, candidate=WEAK_DETECTOR, gates={"min_pr_auc": 0.0})
    train_and_evaluate(prepared_warehouse, instance)
    promote = {"model_name": "anomaly_detector", "action": "promote"}
    assert champion_run(prepared_warehouse, instance, **promote, version="latest-1", reason="start with v1").success
    assert champion_run(prepared_warehouse, instance, **promote, version="v2", reason="v2 looks better").success
    rollback = champion_run(prepared_warehouse, instance, model_name="anomaly_detector", action="rollback",
                            version="previous", reason="v2 misbehaves in production")
    assert rollback.success and champion_id(prepared_warehouse) == "v1"
    assert [(e["trigger"], e["from_version"], e["to_version"]) for e in events(prepared_warehouse)] == [
        ("manual", None, "v1"), ("manual", "v1", "v2"), ("rollback", "v2", "v1"),
    ]
    metadata = rollback.asset_materializations_for_node("model_champions")[0].metadata
    assert metadata["from_version"].value == "v2" and metadata["to_version"].value == "v1"
    assert metadata["reason"].value == "v2 misbehaves in production"

    for bad, message in [
        ({**promote, "version": "v2", "reason": ""}, "needs a reason"),
        ({**promote, "version": "v9", "reason": "typo"}, "has no version 'v9'"),
        ({**promote, "version": "v1", "reason": "again"}, "already champion"),
    ]:
        result = champion_run(prepared_warehouse, instance, **bad)
        assert not result.success
        assert message in str(result.failure_data_for_node("model_champions").error.cause or result.failure_data_for_node("model_champions").error)
    assert len(events(prepared_warehouse)) == 3


def test_a_tampered_artifact_cannot_become_champion(prepared_warehouse, instance):
    train_and_evaluate(prepared_warehouse, instance)
    with prepared_warehouse.connect() as conn:
        conn.execute("UPDATE registry.model_versions SET artifact = artifact || '\\x00'::BLOB WHERE version_id = 'v1'")
    result = champion_run(prepared_warehouse, instance, model_name="anomaly_detector", action="promote", version="v1", reason="try")
    assert not result.success
    error = result.failure_data_for_node("model_champions").error
    assert "ArtifactIntegrityError" in (error.cause.cls_name if error.cause else error.cls_name)
    assert champion_id(prepared_warehouse) is None and events(prepared_warehouse) == []


def _score(warehouse, instance, name="anomaly_detector"):
    asset = next(a for a in serving.scoring_assets if a.key.path[0] == serving.SCORE_TABLES[name])
    return dg.materialize([asset], instance=instance, partition_key=HOUR, resources={"warehouse": warehouse}, raise_on_error=False)


def test_scoring_skips_with_a_reason_until_there_is_a_champion_then_uses_the_current_one(prepared_warehouse, instance):
    skipped = _score(prepared_warehouse, instance)
    assert skipped.success
    assert skipped.asset_materializations_for_node("anomaly_scores") == []
    observations = [e for e in skipped.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert "no anomaly_detector champion yet" in observations[0].asset_observation_data.asset_observation.metadata["skipped"].value

    train_and_evaluate(prepared_warehouse, instance, candidate=WEAK_DETECTOR, gates={"min_pr_auc": 0.0})
    train_and_evaluate(prepared_warehouse, instance)
    promote = {"model_name": "anomaly_detector", "action": "promote", "reason": "test"}
    champion_run(prepared_warehouse, instance, **promote, version="v1")
    assert _score(prepared_warehouse, instance).success
    query = "SELECT DISTINCT version_id, count(*) OVER () AS n FROM serving.model_scores WHERE model_name = 'anomaly_detector'"
    assert prepared_warehouse.query(query).values.tolist() == [["v1", 20]]
    champion_run(prepared_warehouse, instance, **promote, version="v2")
    assert _score(prepared_warehouse, instance).success
    assert prepared_warehouse.query(query).values.tolist() == [["v2", 20]]


def test_volatility_evaluation_reports_metrics_and_lightgbm_explanations(prepared_warehouse, instance):
    result = train_and_evaluate(prepared_warehouse, instance, name="volatility_model", gates={"min_pr_auc": 0.0})
    metadata = result.asset_materializations_for_node("volatility_model_evaluation")[0].metadata
    for key in ("candidate_pr_auc", "candidate_roc_auc", "candidate_f1", "candidate_brier", "baseline_pr_auc",
                "candidate_latency_ms_per_1000_rows"):
        assert isinstance(metadata[key].value, float), key
    assert "gain_importance" in metadata and "mean_abs_contribution" in metadata
    stored = prepared_warehouse.query(
        "SELECT role, count(*) AS metrics FROM ml.model_evaluations WHERE model_name = 'volatility_model' GROUP BY role ORDER BY role"
    )
    assert stored["role"].tolist() == ["baseline", "candidate"]
    with prepared_warehouse.connect() as conn:
        version = registry.resolve(conn, "volatility_model", "latest")
        model = registry.load_artifact(conn, version)
    assert 0.0 < model.threshold < 1.0 and model.info["validation_rows"] > 0
