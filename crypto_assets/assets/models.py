"""Training and evaluation: for each model family, a daily candidate and its gated evaluation.

Adding a model is one ``ModelFamily`` in ``crypto_assets/models.py``; this module builds its two
assets. Quality gates are blocking checks on the evaluation; promotion reads their results.
"""

from datetime import datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd

from crypto_assets import registry
from crypto_assets.assets.splits import SPLITS_KEY, load_split
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.models import MODEL_FAMILIES, GateConfig, ModelFamily, scoring_latency_ms_per_1000
from crypto_assets.partitions import daily_partitions
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

# Gate (blocking check) names, the same for every model family.
FLOOR_GATE = "meets_metric_floor"
BASELINE_GATE = "beats_baseline"
CHAMPION_GATE = "beats_champion"
FLAG_RATE_GATE = "sane_flag_rate"
NAN_GATE = "no_nan_scores"
ARTIFACT_GATE = "artifact_verified"
GATES = (FLOOR_GATE, BASELINE_GATE, CHAMPION_GATE, FLAG_RATE_GATE, NAN_GATE, ARTIFACT_GATE)
_GATE_DESCRIPTIONS = {
    FLOOR_GATE: "The candidate's holdout PR-AUC reaches the configured floor.",
    BASELINE_GATE: "The candidate's PR-AUC beats the baseline's on the same holdout.",
    CHAMPION_GATE: "The candidate beats the current champion by the minimum improvement, or there is no champion.",
    FLAG_RATE_GATE: "The candidate flags a plausible share of rows.",
    NAN_GATE: "Every holdout row gets a finite score.",
    ARTIFACT_GATE: "The stored artifact matches its sha256 and reproduces the scores.",
}


def candidate_key(family: ModelFamily) -> dg.AssetKey:
    return dg.AssetKey(f"{family.name}_candidate")


def evaluation_key(family: ModelFamily) -> dg.AssetKey:
    return dg.AssetKey(f"{family.name}_evaluation")


def gate_check_keys(family: ModelFamily) -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(evaluation_key(family), gate) for gate in GATES]


def latest_candidate_for_split(conn, model_name: str, split_id: str) -> registry.ModelVersion:
    row = conn.execute(
        "SELECT max(version_number) FROM registry.model_versions WHERE model_name = ? AND split_id = ?",
        [model_name, split_id],
    ).fetchone()[0]
    if row is None:
        raise registry.RegistryError(f"no {model_name} candidate trained on split {split_id}: materialize {model_name}_candidate first")
    return registry.resolve(conn, model_name, f"v{row}")


def build_candidate_asset(family: ModelFamily) -> dg.AssetsDefinition:
    config_class = family.config_class

    @dg.asset(
        key=candidate_key(family),
        deps=[SPLITS_KEY],
        partitions_def=daily_partitions,
        pool="duckdb_writer",
        group_name="training",
        kinds=family.kinds | {"python"},
        owners=["team:ml-platform"],
        description=f"Daily candidate {family.name}: {family.description} Trained on the day's split and registered as a new version.",
    )
    def _candidate(context: dg.AssetExecutionContext, config: config_class, warehouse: Warehouse) -> dg.MaterializeResult:
        split_id = context.partition_key
        with warehouse.connect() as conn:
            train = family.training_rows(load_split(conn, split_id, "train"))
            if train.empty:
                raise dg.Failure(f"split {split_id} has no usable training rows for {family.name}: materialize training_splits (and coin_labels) first")
            started = datetime.now(timezone.utc)
            model = family.fit(train, config)
            fit_seconds = (datetime.now(timezone.utc) - started).total_seconds()
            holdout_rows = conn.execute(
                "SELECT count(*) FROM ml.training_splits WHERE split_id = ? AND part = 'holdout'", [split_id]
            ).fetchone()[0]
            version = registry.register_version(
                conn,
                model_name=family.name,
                model=model,
                split_id=split_id,
                run_id=context.run_id,
                params=config.model_dump(),
                features=model.features,
                feature_spec_version=FEATURE_SPEC_VERSION,
                train_start=train["partition_hour"].min().to_pydatetime(),
                train_end=train["partition_hour"].max().to_pydatetime(),
                train_rows=len(train),
                holdout_rows=int(holdout_rows),
                metrics={"fit_seconds": fit_seconds, "threshold": model.threshold, **model.info},
            )
        context.log.info(f"registered {family.name} {version.version_id} (sha256 {version.artifact_sha256[:12]})")
        return dg.MaterializeResult(
            metadata={
                "version_id": version.version_id,
                "artifact_sha256": version.artifact_sha256,
                "feature_spec_version": FEATURE_SPEC_VERSION,
                "train_rows": len(train),
                "fit_seconds": fit_seconds,
                "decision_threshold": float(model.threshold),
                "params": dg.MetadataValue.json(config.model_dump()),
            }
        )

    return _candidate


def build_evaluation_asset(family: ModelFamily) -> dg.AssetsDefinition:
    key = evaluation_key(family)

    @dg.asset(
        key=key,
        deps=[candidate_key(family), SPLITS_KEY, "anomaly_ground_truth"],
        partitions_def=daily_partitions,
        pool="duckdb_writer",
        group_name="evaluation",
        kinds={"duckdb", "python"},
        owners=["team:ml-platform"],
        description=(
            f"Daily evaluation of the {family.name} candidate, the champion and the {family.baseline_name} baseline "
            "on the identical holdout; quality gates are its blocking checks."
        ),
        check_specs=[dg.AssetCheckSpec(gate, asset=key, blocking=True, description=_GATE_DESCRIPTIONS[gate]) for gate in GATES],
    )
    def _evaluation(context: dg.AssetExecutionContext, config: GateConfig, warehouse: Warehouse) -> dg.MaterializeResult:
        split_id = context.partition_key
        with warehouse.connect() as conn:
            holdout = family.evaluation_rows(load_split(conn, split_id, "holdout", with_ground_truth=True))
            candidate = latest_candidate_for_split(conn, family.name, split_id)
            champion = registry.champion(conn, family.name)
            candidate_ok = registry.verify_artifact(conn, candidate)
            candidate_model = registry.load_artifact(conn, candidate) if candidate_ok else None
            champion_model = None
            if champion is not None and champion.version_id != candidate.version_id:
                if champion.feature_spec_version != FEATURE_SPEC_VERSION:
                    context.log.warning(f"champion {champion.version_id} uses feature spec {champion.feature_spec_version}; not comparable")
                else:
                    champion_model = registry.load_artifact(conn, champion)
            result = evaluate(family, config, holdout, candidate, candidate_model, champion, champion_model)
            with transaction(conn):
                conn.execute("DELETE FROM ml.model_evaluations WHERE model_name = ? AND split_id = ?", [family.name, split_id])
                insert_frame(conn, "ml.model_evaluations", result["rows"].assign(model_name=family.name, split_id=split_id))
        return dg.MaterializeResult(metadata=result["metadata"], check_results=result["checks"])

    return _evaluation


def evaluate(family, config: GateConfig, holdout: pd.DataFrame, candidate, candidate_model, champion, champion_model) -> dict:
    """Score candidate, champion and baseline on the same holdout rows; compute metrics and gates."""
    truth = family.truth(holdout) if len(holdout) else np.zeros(0, dtype=bool)
    roles: dict[str, dict[str, float]] = {}
    versions = {"candidate": candidate.version_id, "baseline": family.baseline_name}
    candidate_scores = None
    if candidate_model is not None and len(holdout):
        candidate_scores = candidate_model.scores(holdout)
        roles["candidate"] = {
            **family.metrics(truth, candidate_scores, candidate_model.flags(holdout)),
            "latency_ms_per_1000_rows": scoring_latency_ms_per_1000(candidate_model.scores, holdout),
        }
    if champion_model is not None and len(holdout):
        roles["champion"] = family.metrics(truth, champion_model.scores(holdout), champion_model.flags(holdout))
        versions["champion"] = champion.version_id
    if len(holdout):
        roles["baseline"] = family.metrics(truth, family.baseline_scores(holdout), family.baseline_flags(holdout))

    def pr_auc(role: str) -> float:
        return roles.get(role, {}).get("pr_auc", float("nan"))

    floor = config.min_pr_auc if config.min_pr_auc is not None else family.pr_auc_floor
    expected_rate = family.expected_flag_rate(candidate_model) if candidate_model is not None else float("nan")
    flagged = roles.get("candidate", {}).get("flagged_rate", float("nan"))
    reproduced = candidate_model is not None and candidate_scores is not None and np.allclose(
        candidate_scores, candidate_model.scores(holdout), equal_nan=True
    )
    champion_cmp = "no champion yet" if champion is None else (
        f"champion {champion.version_id} is the candidate itself" if champion.version_id == candidate.version_id
        else f"champion {champion.version_id} PR-AUC {pr_auc('champion'):.4f}"
    )
    beats_champion = (
        champion is None
        or champion.version_id == candidate.version_id
        or (not np.isnan(pr_auc("champion")) and pr_auc("candidate") >= pr_auc("champion") + config.min_improvement_over_champion)
        or (champion_model is None and champion.feature_spec_version != FEATURE_SPEC_VERSION)
    )
    gates = {
        FLOOR_GATE: (pr_auc("candidate") >= floor, {"candidate_pr_auc": pr_auc("candidate"), "floor": floor}),
        BASELINE_GATE: (
            pr_auc("candidate") > pr_auc("baseline") + config.min_improvement_over_baseline,
            {"candidate_pr_auc": pr_auc("candidate"), "baseline_pr_auc": pr_auc("baseline")},
        ),
        CHAMPION_GATE: (
            bool(beats_champion) and not np.isnan(pr_auc("candidate")),
            {"candidate_pr_auc": pr_auc("candidate"), "champion": champion_cmp, "min_improvement": config.min_improvement_over_champion},
        ),
        FLAG_RATE_GATE: (
            config.min_flag_rate_ratio * expected_rate <= flagged <= config.max_flag_rate_ratio * expected_rate,
            {"flagged_rate": flagged, "expected_rate": expected_rate},
        ),
        NAN_GATE: (
            candidate_scores is not None and len(candidate_scores) > 0 and bool(np.isfinite(candidate_scores).all()),
            {"scored_rows": 0 if candidate_scores is None else len(candidate_scores),
             "non_finite": 0 if candidate_scores is None else int((~np.isfinite(candidate_scores)).sum())},
        ),
        ARTIFACT_GATE: (
            bool(reproduced),
            {"sha256": candidate.artifact_sha256, "verified": candidate_model is not None, "scores_reproduced": bool(reproduced)},
        ),
    }
    checks = [
        dg.AssetCheckResult(check_name=name, passed=bool(passed), metadata={k: _metadata_value(v) for k, v in meta.items()})
        for name, (passed, meta) in gates.items()
    ]
    comparison = pd.DataFrame(roles).T.reset_index(names="role")
    comparison.insert(1, "version", comparison["role"].map(versions))
    rows = pd.DataFrame(
        [
            {"role": role, "version_id": versions.get(role), "metric": metric, "value": float(value),
             "evaluated_at": utc_naive(datetime.now(timezone.utc))}
            for role, metrics in roles.items()
            for metric, value in metrics.items()
        ]
    )
    explanations = family.explain(candidate_model, holdout) if candidate_model is not None and len(holdout) else {}
    metadata = {
        "candidate_version": candidate.version_id,
        "champion_version": versions.get("champion", "none"),
        "holdout_rows": len(holdout),
        "holdout_positives": int(truth.sum()),
        "gates_passed": sum(bool(p) for p, _ in gates.values()),
        "gates_failed": ", ".join(name for name, (p, _) in gates.items() if not p) or "none",
        "comparison": markdown_preview(comparison),
        **{f"{role}_{metric}": float(value) for role, metrics in roles.items() for metric, value in metrics.items()},
    }
    for name, values in explanations.items():
        top = sorted(values.items(), key=lambda kv: -kv[1])[:10]
        metadata[name] = markdown_preview(pd.DataFrame(top, columns=["feature", name]))
    return {"checks": checks, "rows": rows, "metadata": metadata, "gates": {k: bool(p) for k, (p, _) in gates.items()}}


def _metadata_value(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value) if not isinstance(value, str) else value


candidate_assets = [build_candidate_asset(f) for f in MODEL_FAMILIES]
evaluation_assets = [build_evaluation_asset(f) for f in MODEL_FAMILIES]
