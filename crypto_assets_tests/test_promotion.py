"""Candidates, gated evaluations and champion decisions on the prepared synthetic market.

Recipes train on 7 days (train_days) to keep the tests quick; the prepared market holds 21 days.
"""

import json

import dagster as dg
import pandas as pd

from crypto_assets import registry
from crypto_assets.assets import candidates, evaluations, promotion, serving
from crypto_assets.ml.families import FAMILIES_BY_NAME
from crypto_assets.ml.gates import BASELINE_GATE, CHAMPION_GATE
from crypto_assets.ml.walk_forward import frame_sha256
from crypto_assets.run_tags import RUN_KEY_TAG
from crypto_assets.sensors import promotion_run_requests

from .conftest import resources_for

DAY = "2026-03-14"
QUICK = {"anomaly_detector": {"train_days": 7}, "volatility_model": {"train_days": 7, "n_estimators": 40}}
WEAK_DETECTOR = {"train_days": 7, "n_estimators": 10, "max_samples": 16, "contamination": 0.02, "random_state": 1}


def _assets(name):
    family = FAMILIES_BY_NAME[name]
    return [
        a
        for a in candidates.candidate_assets + evaluations.evaluation_assets
        if a.key in (candidates.candidate_key(family), evaluations.evaluation_key(family))
    ]


def train_and_evaluate(warehouse, instance, name="anomaly_detector", day=DAY, candidate=None, gates=None):
    ops = {f"{name}_candidate": {"config": candidate or QUICK[name]}}
    if gates:
        ops[f"{name}_evaluation"] = {"config": gates}
    return dg.materialize(
        _assets(name),
        instance=instance,
        partition_key=day,
        resources=resources_for(warehouse),
        run_config={"ops": ops},
        raise_on_error=False,
    )


def champion_run(warehouse, instance, tags=None, **config):
    return dg.materialize(
        [promotion.model_champions],
        instance=instance,
        resources=resources_for(warehouse),
        run_config={"ops": {"model_champions": {"config": config}}},
        tags=tags,
        raise_on_error=False,
    )


def apply_promotion_requests(warehouse, instance, cursor=None):
    """What the promotion sensor and the daemon do: request, then run the champion job with the request's tags."""
    requests, cursor = promotion_run_requests(instance, cursor or {})
    results = [
        champion_run(
            warehouse,
            instance,
            tags={**r.tags, RUN_KEY_TAG: r.run_key},
            **r.run_config["ops"]["model_champions"]["config"],
        )
        for r in requests
    ]
    return requests, results, cursor


def decision_metadata(result) -> dict:
    """model_champions' metadata of a champion run: a materialization when the champion moved, else an observation."""
    found = result.asset_materializations_for_node("model_champions")
    if found:
        return found[0].metadata
    [observation] = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    return observation.asset_observation_data.asset_observation.metadata


def events(warehouse, name="anomaly_detector"):
    with warehouse.connect() as conn:
        return registry.promotion_events(conn, name)


def champion_id(warehouse, name="anomaly_detector"):
    with warehouse.connect() as conn:
        current = registry.champion(conn, name)
    return current.version_id if current else None


def gate_outcomes(result) -> dict[str, str]:
    return {e.check_name: e.metadata["outcome"].value for e in result.get_asset_check_evaluations()}


def test_a_refused_candidate_is_a_decision_not_a_crash_and_a_baseline_serves(prepared_warehouse, instance):
    evaluation = train_and_evaluate(prepared_warehouse, instance, gates={"min_pr_auc": 0.999})
    assert evaluation.success  # a refusal is a normal outcome: the run succeeds...
    outcomes = gate_outcomes(evaluation)
    assert outcomes["meets_metric_floor"] == "failed" and outcomes[BASELINE_GATE] == "passed"
    failed = next(e for e in evaluation.get_asset_check_evaluations() if e.check_name == "meets_metric_floor")
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR  # ...and the gate shows as failed
    metadata = evaluation.asset_materializations_for_node("anomaly_detector_evaluation")[0].metadata
    assert metadata["decision"].value.startswith("refused: meets_metric_floor (failed)")
    requests, results, _ = apply_promotion_requests(prepared_warehouse, instance)
    assert len(requests) == 1 and results[0].success
    refused, baseline = events(prepared_warehouse)
    assert (refused["outcome"], refused["candidate_version"], refused["trigger"]) == ("refused", "v1", "sensor")
    assert "meets_metric_floor failed" in refused["reason"]
    assert "90% CI [" in refused["reason"]  # the evidence the gates saw travels with the decision
    assert json.loads(refused["gate_results"])["meets_metric_floor"] == "failed"
    # Nothing served yet, so the strongest baseline on the same evidence becomes champion of last resort.
    assert (baseline["outcome"], baseline["from_version"], baseline["to_version"]) == ("promoted", None, "v2")
    assert "champion of last resort" in baseline["reason"] and "zscore" in baseline["reason"]
    with prepared_warehouse.connect() as conn:
        champion = registry.champion(conn, "anomaly_detector")
        model = registry.load_artifact(conn, champion)
        refused_candidate = registry.resolve(conn, "anomaly_detector", "v1")
    assert champion.is_baseline and champion.params == {"baseline": "zscore"} and champion.split_id == DAY
    # fitted on exactly the rows the refused candidate was refit on
    assert champion.lineage.train_start == refused_candidate.lineage.train_start
    assert champion.lineage.train_rows == refused_candidate.lineage.train_rows
    assert model.features == ["ret_zscore_24h", "volume_zscore_24h"] and model.threshold > 0
    decision = decision_metadata(results[0])
    assert "baseline zscore (v2) serves meanwhile" in decision["decision"].value
    assert decision["outcome"].value == "refused, baseline champion"  # never read as a promotion of the candidate
    assert "meets_metric_floor failed" in decision["reason"].value and "last resort" in decision["reason"].value
    assert decision["champion/anomaly_detector"].value.startswith("v2 (baseline (zscore))")
    # It serves like any champion.
    assert _score(prepared_warehouse, instance).success
    served = prepared_warehouse.query("SELECT DISTINCT role, version_id FROM serving.model_scores ORDER BY role")
    assert served.values.tolist() == [["champion", "v2"], ["shadow", "v1"]]  # the refused candidate, only in shadow


def test_the_same_evaluation_decided_again_records_nothing_new(prepared_warehouse, instance):
    train_and_evaluate(prepared_warehouse, instance, gates={"min_pr_auc": 0.999})
    apply_promotion_requests(prepared_warehouse, instance)
    before = events(prepared_warehouse)
    # the training run again, same inputs: same version, same refusal, nothing new recorded or promoted
    train_and_evaluate(prepared_warehouse, instance, gates={"min_pr_auc": 0.999})
    requests, results, _ = apply_promotion_requests(prepared_warehouse, instance)
    assert len(requests) == 1 and results[0].success
    assert events(prepared_warehouse) == before
    assert "already recorded" in decision_metadata(results[0])["decision"].value
    assert prepared_warehouse.query("SELECT count(*) AS n FROM registry.model_versions")["n"][0] == 2
    assert promotion_run_requests(instance, {})[0] == []  # and the sensor does not ask again


def test_too_few_positives_refuses_as_inconclusive(prepared_warehouse, instance):
    evaluation = train_and_evaluate(prepared_warehouse, instance, gates={"min_positives": 100_000})
    assert evaluation.success
    outcomes = gate_outcomes(evaluation)
    assert outcomes[BASELINE_GATE] == "inconclusive" and outcomes["meets_metric_floor"] == "inconclusive"
    check = next(e for e in evaluation.get_asset_check_evaluations() if e.check_name == BASELINE_GATE)
    assert not check.passed and check.description.startswith("INCONCLUSIVE")
    apply_promotion_requests(prepared_warehouse, instance)
    refused = events(prepared_warehouse)[0]
    assert refused["outcome"] == "refused"
    assert (
        f"{BASELINE_GATE} inconclusive" in refused["reason"] and "fewer than the 100000 required" in refused["reason"]
    )
    assert champion_id(prepared_warehouse) == "v2"  # the baseline of last resort, not the refused candidate


def test_first_candidate_becomes_champion_on_its_intervals(prepared_warehouse, instance):
    evaluation = train_and_evaluate(prepared_warehouse, instance)
    assert evaluation.success, gate_outcomes(evaluation)
    metadata = evaluation.asset_materializations_for_node("anomaly_detector_evaluation")[0].metadata
    assert metadata["candidate_pr_auc"].value > metadata["zscore_pr_auc"].value
    assert metadata["champion_version"].value == "none" and metadata["champion_comparison"].value == "no champion yet"
    assert metadata["evaluation_positives"].value >= 30
    stored = prepared_warehouse.query(
        "SELECT gate, comparator, ci_low, ci_high, outcome FROM ml.gate_evidence WHERE split_id = ?", [DAY]
    )
    assert stored.values.tolist()[0][:2] == [BASELINE_GATE, "zscore"] and stored["ci_low"][0] > 0
    _, results, _ = apply_promotion_requests(prepared_warehouse, instance)
    assert results[0].success
    assert champion_id(prepared_warehouse) == "v1"
    (event,) = events(prepared_warehouse)
    assert (event["from_version"], event["to_version"], event["outcome"]) == (None, "v1", "promoted")
    assert set(json.loads(event["gate_results"]).values()) == {"passed"}
    assert "first champion" in event["reason"] and f"CI [{stored['ci_low'][0]:+.4f}" in event["reason"]


def test_the_champion_is_compared_as_a_recipe_on_the_same_rows(prepared_warehouse, instance):
    # The weak detector may or may not pass its gates; it becomes champion by hand either way.
    train_and_evaluate(prepared_warehouse, instance, candidate=WEAK_DETECTOR, gates={"min_pr_auc": 0.0})
    assert champion_run(
        prepared_warehouse,
        instance,
        model_name="anomaly_detector",
        action="promote",
        version="v1",
        reason="weak model as a starting point",
    ).success
    cursor = {
        "anomaly_detector": instance.fetch_materializations(
            evaluations.evaluation_key(FAMILIES_BY_NAME["anomaly_detector"]), limit=1
        )
        .records[0]
        .storage_id
    }

    better = train_and_evaluate(prepared_warehouse, instance)
    assert better.success, gate_outcomes(better)
    metadata = better.asset_materializations_for_node("anomaly_detector_evaluation")[0].metadata
    assert "its recipe fitted walk-forward on the same days" in metadata["champion_comparison"].value
    champion_row = next(r.data for r in metadata["comparisons"].value.records if r.data["comparator"] == "champion")
    assert champion_row["outcome"] == "passed" and metadata["gates_failed"].value == "none"
    _, _, cursor = apply_promotion_requests(prepared_warehouse, instance, cursor)
    assert champion_id(prepared_warehouse) == "v2"
    assert events(prepared_warehouse)[-1]["from_version"] == "v1"
    assert "beats_champion: PR-AUC" in events(prepared_warehouse)[-1]["reason"]

    # The same recipe on another split day: identical out-of-time scores, a difference of exactly zero.
    # Demanding a gain (margin 0) refuses it; the default margin (not credibly worse) lets it serve.
    same = train_and_evaluate(prepared_warehouse, instance, day="2026-03-09", gates={"champion_margin": 0.0})
    assert same.success
    assert gate_outcomes(same)[CHAMPION_GATE] == "failed"
    evidence_row = prepared_warehouse.query(
        "SELECT difference, ci_low, ci_high FROM ml.gate_evidence WHERE gate = ? AND version_id = 'v3'",
        [CHAMPION_GATE],
    ).iloc[0]
    assert evidence_row.tolist() == [0.0, 0.0, 0.0]
    _, _, cursor = apply_promotion_requests(prepared_warehouse, instance, cursor)
    assert champion_id(prepared_warehouse) == "v2" and events(prepared_warehouse)[-1]["outcome"] == "refused"

    fresh = train_and_evaluate(prepared_warehouse, instance, day="2026-03-09")
    assert fresh.success
    apply_promotion_requests(prepared_warehouse, instance, cursor)
    assert champion_id(prepared_warehouse) == "v3"  # the same inputs are the same version


def test_lineage_is_recorded_with_the_version_and_matches_the_split(prepared_warehouse, instance):
    result = train_and_evaluate(prepared_warehouse, instance, name="volatility_model", gates={"min_pr_auc": 0.0})
    with prepared_warehouse.connect() as conn:
        version = registry.resolve(conn, "volatility_model", "latest")
        split = prepared_warehouse.query("SELECT * FROM ml.split_summaries WHERE split_id = ?", [DAY]).iloc[0]
        scores = evaluations.read_scores(conn, "volatility_model", DAY, version.version_id)
    lineage = version.lineage
    assert (lineage.split_id, lineage.evaluation_start, lineage.evaluation_end) == (
        DAY,
        split["evaluation_start"],
        split["evaluation_end"],
    )
    assert (
        str(lineage.train_start) == "2026-03-08 00:00:00" and str(lineage.train_end) == "2026-03-15 00:00:00"
    )  # 7 days up to the day's end
    candidate_rows = scores[scores["role"] == "candidate"]
    assert lineage.evaluation_rows == len(candidate_rows) and lineage.evaluation_positives == int(
        candidate_rows["truth"].sum()
    )
    # the training frame's hash names exactly the rows the refit read
    from crypto_assets.training_data import load_rows

    with prepared_warehouse.connect() as conn:
        rows = load_rows(conn, lineage.train_start, lineage.train_end)
    family = FAMILIES_BY_NAME["volatility_model"]
    train = family.usable_rows(rows)
    assert lineage.train_rows == len(train) and lineage.train_positives == int(family.truth(train).sum())
    assert lineage.training_frame_sha256 == frame_sha256(train, version.features)
    # ... and the UI shows it on the candidate and on the evaluation
    candidate_meta = result.asset_materializations_for_node("volatility_model_candidate")[0].metadata
    evaluation_meta = result.asset_materializations_for_node("volatility_model_evaluation")[0].metadata
    for meta in (candidate_meta, evaluation_meta):
        assert meta["lineage"].value["training_frame_sha256"] == lineage.training_frame_sha256
        assert meta["lineage"].value["split_id"] == DAY
    assert "gain_importance" in candidate_meta
    assert "the refit" in candidate_meta["registered_model_trained_on"].value
    for key in ("candidate_pr_auc", "persistence_pr_auc", "har_pr_auc", "vs_har_ci_low", "vs_har_ci_high"):
        assert isinstance(evaluation_meta[key].value, float), key
    assert isinstance(evaluation_meta["metrics"].value["candidate"]["brier"], float)
    by_day = evaluation_meta["walk_forward_by_day"].value.records
    assert len(by_day) == 7 and {"candidate", "persistence", "har"} <= set(by_day[0].data)


def test_manual_promotion_and_rollback(prepared_warehouse, instance):
    train_and_evaluate(prepared_warehouse, instance, candidate=WEAK_DETECTOR, gates={"min_pr_auc": 0.0})
    train_and_evaluate(prepared_warehouse, instance)
    promote = {"model_name": "anomaly_detector", "action": "promote"}
    assert champion_run(prepared_warehouse, instance, **promote, version="latest-1", reason="start with v1").success
    assert champion_run(prepared_warehouse, instance, **promote, version="v2", reason="v2 looks better").success
    rollback = champion_run(
        prepared_warehouse,
        instance,
        model_name="anomaly_detector",
        action="rollback",
        version="previous",
        reason="v2 misbehaves in production",
    )
    assert rollback.success and champion_id(prepared_warehouse) == "v1"
    assert [(e["trigger"], e["from_version"], e["to_version"]) for e in events(prepared_warehouse)] == [
        ("manual", None, "v1"),
        ("manual", "v1", "v2"),
        ("rollback", "v2", "v1"),
    ]
    metadata = rollback.asset_materializations_for_node("model_champions")[0].metadata
    assert metadata["outcome"].value == "rolled_back" and metadata["champion/anomaly_detector"].value.startswith("v1 ")
    assert metadata["reason"].value == "v2 misbehaves in production"
    [newest] = metadata["decisions"].value.records[:1]
    assert (newest.data["outcome"], newest.data["from_version"], newest.data["to_version"]) == (
        "rolled_back",
        "v2",
        "v1",
    )

    for bad, message in [
        ({**promote, "version": "v2", "reason": ""}, "needs a reason"),
        ({**promote, "version": "v9", "reason": "typo"}, "has no version 'v9'"),
        ({**promote, "version": "v1", "reason": "again"}, "already champion"),
    ]:
        result = champion_run(prepared_warehouse, instance, **bad)
        assert not result.success
        assert message in str(
            result.failure_data_for_node("model_champions").error.cause
            or result.failure_data_for_node("model_champions").error
        )
    assert len(events(prepared_warehouse)) == 3


def test_a_tampered_artifact_cannot_become_champion(prepared_warehouse, instance):
    train_and_evaluate(prepared_warehouse, instance)
    with prepared_warehouse.connect() as conn:
        conn.execute("UPDATE registry.model_versions SET artifact = artifact || '\\x00'::BLOB WHERE version_id = 'v1'")
    result = champion_run(
        prepared_warehouse, instance, model_name="anomaly_detector", action="promote", version="v1", reason="try"
    )
    assert not result.success
    error = result.failure_data_for_node("model_champions").error
    assert "ArtifactIntegrityError" in (error.cause.cls_name if error.cause else error.cls_name)
    assert champion_id(prepared_warehouse) is None and events(prepared_warehouse) == []


def _score(warehouse, instance, name="anomaly_detector", day=DAY):
    asset = next(a for a in serving.scoring_assets if a.key == serving.score_key(FAMILIES_BY_NAME[name]))
    return dg.materialize(
        [asset], instance=instance, partition_key=day, resources=resources_for(warehouse), raise_on_error=False
    )


def test_the_champion_serves_and_the_latest_candidate_scores_beside_it_in_shadow(prepared_warehouse, instance):
    skipped = _score(prepared_warehouse, instance)
    assert skipped.success and skipped.asset_materializations_for_node("anomaly_scores") == []
    observations = [e for e in skipped.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert (
        "no anomaly_detector champion yet"
        in observations[0].asset_observation_data.asset_observation.metadata["skipped"].value
    )

    train_and_evaluate(prepared_warehouse, instance, candidate=WEAK_DETECTOR, gates={"min_pr_auc": 0.0})
    train_and_evaluate(prepared_warehouse, instance)
    champion_run(
        prepared_warehouse, instance, model_name="anomaly_detector", action="promote", version="v1", reason="test"
    )
    assert _score(prepared_warehouse, instance).success
    by_role = (
        "SELECT role, version_id, count(*) AS n FROM serving.model_scores"
        " WHERE model_name = 'anomaly_detector' GROUP BY ALL ORDER BY role, version_id"
    )
    assert prepared_warehouse.query(by_role).values.tolist() == [["champion", "v1", 24 * 20], ["shadow", "v2", 24 * 20]]
    first = prepared_warehouse.query(
        "SELECT role, coin_id, partition_hour, score, scored_at FROM serving.model_scores ORDER BY ALL"
    )

    # a re-run replaces the rows and keeps when each hour was first scored: the record of what was known when
    assert _score(prepared_warehouse, instance).success
    again = prepared_warehouse.query(
        "SELECT role, coin_id, partition_hour, score, scored_at FROM serving.model_scores ORDER BY ALL"
    )
    pd.testing.assert_frame_equal(first, again)

    # v1's rows were not live (scored long after their hours): promoted, v2 re-scores them, and with no
    # other candidate left there is no shadow. One row per role, coin and hour, never two answers.
    champion_run(
        prepared_warehouse,
        instance,
        model_name="anomaly_detector",
        action="promote",
        version="v2",
        reason="shadow did well",
    )
    assert _score(prepared_warehouse, instance).success
    assert prepared_warehouse.query(by_role).values.tolist() == [["champion", "v2", 24 * 20]]


def test_rows_that_were_served_live_stay_when_a_new_champion_rescores_the_day(prepared_warehouse, instance):
    train_and_evaluate(prepared_warehouse, instance, candidate=WEAK_DETECTOR, gates={"min_pr_auc": 0.0})
    train_and_evaluate(prepared_warehouse, instance)
    champion_run(
        prepared_warehouse, instance, model_name="anomaly_detector", action="promote", version="v1", reason="x"
    )
    assert _score(prepared_warehouse, instance).success
    with prepared_warehouse.connect() as conn:  # as if the hourly schedule had scored the morning in time
        conn.execute(
            "UPDATE serving.model_scores SET scored_at = partition_hour + INTERVAL 65 MINUTE "
            "WHERE extract(hour FROM partition_hour) < 6"
        )
    champion_run(
        prepared_warehouse, instance, model_name="anomaly_detector", action="promote", version="v2", reason="y"
    )
    assert _score(prepared_warehouse, instance).success
    champions = prepared_warehouse.query(
        "SELECT version_id, count(*) AS n, count(DISTINCT (coin_id, partition_hour)) AS hours "
        "FROM serving.model_scores WHERE role = 'champion' GROUP BY ALL ORDER BY version_id"
    )
    assert champions.values.tolist() == [["v1", 6 * 20, 6 * 20], ["v2", 18 * 20, 18 * 20]]
    duplicates = prepared_warehouse.query(
        "SELECT count(*) AS n FROM (SELECT model_name, role, coin_id, partition_hour FROM serving.model_scores "
        "GROUP BY ALL HAVING count(*) > 1)"
    )
    assert duplicates["n"][0] == 0


def test_outcomes_tell_live_out_of_time_and_in_sample_forecasts_apart(prepared_warehouse, instance):
    # The champion was trained on the split of 2026-03-09: 2026-03-14 is a day it never saw (out of time).
    # The shadow candidate was trained through 2026-03-14 itself: its forecasts of that day are in-sample.
    train_and_evaluate(
        prepared_warehouse, instance, name="volatility_model", day="2026-03-09", gates={"min_pr_auc": 0.0}
    )
    train_and_evaluate(prepared_warehouse, instance, name="volatility_model", gates={"min_pr_auc": 0.0})
    champion_run(
        prepared_warehouse, instance, model_name="volatility_model", action="promote", version="v1", reason="test"
    )
    assert _score(prepared_warehouse, instance, "volatility_model").success
    outcomes = dg.materialize(
        [serving.prediction_outcomes],
        instance=instance,
        partition_key=DAY,
        resources=resources_for(prepared_warehouse),
        raise_on_error=False,
    )
    assert outcomes.success
    rows = prepared_warehouse.query(
        "SELECT role, version_id, evidence, count(*) AS n FROM serving.prediction_outcomes GROUP BY ALL ORDER BY role"
    )
    labeled = prepared_warehouse.query(
        "SELECT count(*) AS n FROM features.coin_labels"
        " WHERE volatility_spike IS NOT NULL AND partition_hour::DATE = DATE '2026-03-14'"
    )["n"][0]
    # scored long after the hours ended (a backfill today of a day in March): none of it is live
    assert rows.values.tolist() == [["champion", "v1", "out_of_time", labeled], ["shadow", "v2", "in_sample", labeled]]
    metadata = outcomes.asset_materializations_for_node("prediction_outcomes")[0].metadata
    assert metadata["dagster/row_count"].value == 2 * labeled
    assert metadata["champion_rows_7d"].value == labeled and metadata["champion_live_rows_7d"].value == 0
    assert metadata["in_sample_rows_7d"].value == labeled
    assert 0 <= metadata["champion_pr_auc_7d"].value <= 1
    records = {(r.data["role"], r.data["evidence"]) for r in metadata["by_version_role_evidence"].value.records}
    assert records == {("champion", "out_of_time"), ("shadow", "in_sample")}


def test_deciding_one_model_of_a_training_run_still_decides_the_other(prepared_warehouse, instance):
    # daily_training_job evaluates both models in one run; the gate job of the first must not hide the second.
    both = _assets("anomaly_detector") + _assets("volatility_model")
    run = dg.materialize(
        both,
        instance=instance,
        partition_key=DAY,
        resources=resources_for(prepared_warehouse),
        run_config={"ops": {f"{n}_candidate": {"config": c} for n, c in QUICK.items()}},
        raise_on_error=False,
    )
    requests, _ = promotion_run_requests(instance, {})
    first = next(r for r in requests if r.tags["crypto_assets/model"] == "anomaly_detector")
    assert champion_run(
        prepared_warehouse,
        instance,
        tags={**first.tags, RUN_KEY_TAG: first.run_key},
        **first.run_config["ops"]["model_champions"]["config"],
    ).success
    remaining, _ = promotion_run_requests(instance, {})
    assert [
        (r.tags["crypto_assets/model"], r.run_config["ops"]["model_champions"]["config"]["evaluation_run_id"])
        for r in remaining
    ] == [("volatility_model", run.run_id)]


def test_scoring_a_day_without_features_fails_naming_the_day_and_writes_nothing(prepared_warehouse, instance):
    train_and_evaluate(prepared_warehouse, instance)
    champion_run(
        prepared_warehouse, instance, model_name="anomaly_detector", action="promote", version="v1", reason="test"
    )
    before = prepared_warehouse.query("SELECT count(*) AS n FROM serving.model_scores")["n"].item()
    result = _score(prepared_warehouse, instance, day="2026-03-20")  # the prepared market ends on 2026-03-14

    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no coin_features on 1 day(s) whose hours have ended: 2026-03-20" in failure.message + str(
        failure.step_failure_data.user_failure_data.description
    )
    assert result.asset_materializations_for_node("anomaly_scores") == []
    assert prepared_warehouse.query("SELECT count(*) AS n FROM serving.model_scores")["n"].item() == before
