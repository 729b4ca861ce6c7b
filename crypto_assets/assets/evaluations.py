"""Daily evaluations: the quality gates, as blocking checks, decided on out-of-time evidence.

The candidate's walk-forward scores (``ml.walk_forward_scores``) are compared with every baseline
and with the champion on exactly the same rows; each comparison is a PR-AUC difference with a
paired block-bootstrap interval (``crypto_assets/ml/evidence.py``). The champion is compared as a
recipe: scored walk-forward like the candidate (identical scores when the recipes are equal), so
neither is judged on rows it trained on. Promotion reads these checks' results.
"""

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from crypto_assets import registry
from crypto_assets.assets.candidates import REGISTERED, candidate_key, load_split_frame
from crypto_assets.assets.splits import SPLITS_KEY, load_rows, read_split
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import markdown_preview
from crypto_assets.ml import evidence
from crypto_assets.ml.families import MODEL_FAMILIES, GateConfig, ModelFamily, scoring_latency_ms_per_1000
from crypto_assets.ml.walk_forward import CANDIDATE, CHAMPION, walk_forward
from crypto_assets.partitions import daily_partitions
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import numpy as np
    import pandas as pd

# Gate (blocking check) names, the same for every model family.
FLOOR_GATE = "meets_metric_floor"
BASELINE_GATE = "beats_baseline"
CHAMPION_GATE = "beats_champion"
FLAG_RATE_GATE = "sane_flag_rate"
NAN_GATE = "no_nan_scores"
ARTIFACT_GATE = "artifact_verified"
GATES = (FLOOR_GATE, BASELINE_GATE, CHAMPION_GATE, FLAG_RATE_GATE, NAN_GATE, ARTIFACT_GATE)
_GATE_DESCRIPTIONS = {
    FLOOR_GATE: "The candidate's pooled out-of-time PR-AUC reaches the floor, on enough positives.",
    BASELINE_GATE: "For every baseline, the lower bound of the block-bootstrap interval (GateConfig.confidence, 90% by default) of the PR-AUC difference exceeds the margin.",
    CHAMPION_GATE: "Against the champion's recipe on the same rows, the interval's lower bound exceeds the champion margin; passes when there is no champion that can serve.",
    FLAG_RATE_GATE: "The candidate flags a plausible share of rows.",
    NAN_GATE: "Every out-of-time and registered score is finite.",
    ARTIFACT_GATE: "The stored artifact matches its sha256 and reproduces its scores.",
}


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
        raise registry.RegistryError(
            f"no {model_name} candidate trained on split {split_id}: materialize {model_name}_candidate first"
        )
    return registry.resolve(conn, model_name, f"v{row}")


def read_scores(conn, model_name: str, split_id: str, version_id: str) -> "pd.DataFrame":
    return conn.execute(
        """
        SELECT role, fold, coin_id, partition_hour, score, flagged, truth FROM ml.walk_forward_scores
        WHERE model_name = ? AND split_id = ? AND version_id = ? ORDER BY role, partition_hour, coin_id
        """,
        [model_name, split_id, version_id],
    ).df()


def build_evaluation_asset(family: ModelFamily) -> dg.AssetsDefinition:
    key = evaluation_key(family)

    @dg.asset(
        key=key,
        deps=[candidate_key(family), SPLITS_KEY],
        partitions_def=daily_partitions,
        pool="duckdb_writer",
        group_name="evaluation",
        kinds={"duckdb", "python"},
        owners=["team:ml-platform"],
        description=(
            f"Daily evaluation of the {family.name} candidate against {', '.join(b.name for b in family.baselines)} and the "
            "champion, on the same out-of-time rows, with bootstrap intervals; the quality gates are its blocking checks."
        ),
        check_specs=[
            dg.AssetCheckSpec(gate, asset=key, blocking=True, description=_GATE_DESCRIPTIONS[gate]) for gate in GATES
        ],
    )
    def _evaluation(
        context: dg.AssetExecutionContext, config: GateConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        split_id = context.partition_key
        with warehouse.connect() as conn:
            candidate = latest_candidate_for_split(conn, family.name, split_id)
            scores = read_scores(conn, family.name, split_id, candidate.version_id)
            champion = registry.champion(conn, family.name)
            candidate_ok = registry.verify_artifact(conn, candidate)  # before anything is unpickled
            candidate_model = registry.load_artifact(conn, candidate) if candidate_ok else None
            split = read_split(conn, split_id)
            rows = family.usable_rows(
                load_rows(conn, split["evaluation_start"], split["evaluation_end"], excluded=split["excluded_coins"])
            )
        reproduction = reproduce(candidate_model, rows, scores)
        champion_scores, champion_note = champion_evidence(warehouse, family, split_id, candidate, champion, scores)
        result = evaluate(
            family, config, candidate, candidate_model, scores, champion, champion_scores, champion_note, reproduction
        )
        with warehouse.connect() as conn, transaction(conn):
            conn.execute(
                "DELETE FROM ml.model_evaluations WHERE model_name = ? AND split_id = ?", [family.name, split_id]
            )
            conn.execute("DELETE FROM ml.gate_evidence WHERE model_name = ? AND split_id = ?", [family.name, split_id])
            insert_frame(conn, "ml.model_evaluations", result["rows"].assign(model_name=family.name, split_id=split_id))
            insert_frame(conn, "ml.gate_evidence", result["evidence"].assign(model_name=family.name, split_id=split_id))
        return dg.MaterializeResult(metadata=result["metadata"], check_results=result["checks"])

    return _evaluation


def reproduce(model, rows: "pd.DataFrame", scores: "pd.DataFrame") -> dict:
    """Score the evaluation rows with the reloaded artifact and compare with the scores stored when it was registered."""
    import numpy as np
    import pandas as pd

    registered = scores[scores["role"] == REGISTERED]
    if model is None or registered.empty:
        return {"reproduced": False, "latency_ms_per_1000_rows": float("nan")}
    again = pd.Series(model.scores(rows), index=pd.MultiIndex.from_frame(rows[["coin_id", "partition_hour"]]))
    expected = registered.set_index(["coin_id", "partition_hour"])["score"]
    again = again.reindex(expected.index)
    return {
        "reproduced": bool(np.allclose(again.to_numpy(dtype=float), expected.to_numpy(dtype=float), equal_nan=False)),
        "latency_ms_per_1000_rows": scoring_latency_ms_per_1000(model.scores, rows),
    }


def champion_evidence(
    warehouse: Warehouse,
    family: ModelFamily,
    split_id: str,
    candidate: registry.ModelVersion,
    champion: registry.ModelVersion | None,
    scores: "pd.DataFrame",
) -> "tuple[pd.DataFrame | None, str]":
    """The champion recipe's out-of-time scores on the candidate's rows, or None and why there is nothing to compare."""
    if champion is None:
        return None, "no champion yet"
    if champion.version_id == candidate.version_id:
        return None, f"the champion {champion.version_id} is this candidate"
    if champion.feature_spec_version != FEATURE_SPEC_VERSION:
        return None, (
            f"the champion {champion.version_id} reads feature spec {champion.feature_spec_version}, retired "
            f"(now {FEATURE_SPEC_VERSION}): it cannot serve, so it is no competitor"
        )
    if champion.recipe() == candidate.recipe():
        # Same params, features and feature spec: walk-forward refits it on the same rows into the same models.
        return scores[scores["role"] == CANDIDATE].assign(role=CHAMPION), f"champion {champion.version_id}, same recipe"
    train_days = int(champion.params.get("train_days", family.config_class().train_days))
    _, folds, frame = load_split_frame(warehouse, family, split_id, train_days)
    champion_scores = walk_forward(
        family, frame, folds, champion.params, champion.features, role=CHAMPION, with_baselines=False
    )
    return champion_scores, f"champion {champion.version_id}, its recipe fitted walk-forward on the same days"


def _aligned(scores: "pd.DataFrame", role: str, keys: "pd.DataFrame") -> "np.ndarray":
    """``role``'s scores on exactly ``keys``' rows, in their order (NaN where it has none)."""
    import pandas as pd

    found = scores[scores["role"] == role].set_index(["coin_id", "partition_hour"])["score"]
    return found.reindex(pd.MultiIndex.from_frame(keys[["coin_id", "partition_hour"]])).to_numpy(dtype=float)


def evaluate(
    family: ModelFamily,
    config: GateConfig,
    candidate: registry.ModelVersion,
    candidate_model,
    scores: "pd.DataFrame",
    champion: registry.ModelVersion | None,
    champion_scores: "pd.DataFrame | None",
    champion_note: str,
    reproduction: dict,
) -> dict:
    """Metrics, comparisons and gate results of one candidate on its walk-forward evidence."""
    import numpy as np
    import pandas as pd

    if champion_scores is not None:
        scores = pd.concat([scores, champion_scores], ignore_index=True)
    rows = scores[scores["role"] == CANDIDATE].reset_index(drop=True)
    truth = rows["truth"].to_numpy(dtype=bool)
    hours = rows["partition_hour"].to_numpy()
    candidate_scores = rows["score"].to_numpy(dtype=float)
    flags = rows["flagged"].fillna(False).to_numpy(dtype=bool)
    draws = (
        evidence.hour_draws(hours, config.bootstrap_replicates, config.block_hours, config.seed) if len(rows) else None
    )

    def versus(name: str, other: "np.ndarray", margin: float) -> evidence.Comparison:
        return evidence.compare(
            comparator=name,
            truth=truth,
            hours=hours,
            candidate_scores=candidate_scores,
            other_scores=other,
            margin=margin,
            min_positives=config.min_positives,
            confidence=config.confidence,
            draws=draws,
        )

    baselines = [versus(b.name, _aligned(scores, b.name, rows), config.baseline_margin) for b in family.baselines]
    against_champion = (
        versus(CHAMPION, _aligned(scores, CHAMPION, rows), config.champion_margin)
        if champion_scores is not None
        else None
    )

    roles = {CANDIDATE: family.metrics(truth, candidate_scores, flags)}
    for b in family.baselines:
        roles[b.name] = family.metrics(truth, _aligned(scores, b.name, rows), np.zeros(len(rows), dtype=bool))
        roles[b.name] = {k: v for k, v in roles[b.name].items() if k in ("pr_auc", "roc_auc", "positives", "rows")}
    if champion_scores is not None:
        roles[CHAMPION] = {
            k: v
            for k, v in family.metrics(truth, _aligned(scores, CHAMPION, rows), np.zeros(len(rows), dtype=bool)).items()
            if k in ("pr_auc", "roc_auc", "positives", "rows")
        }
    versions = {CANDIDATE: candidate.version_id, CHAMPION: champion.version_id if champion else None}
    positives = int(truth.sum())
    pr_auc = roles[CANDIDATE]["pr_auc"]
    floor = config.min_pr_auc if config.min_pr_auc is not None else family.pr_auc_floor

    registered = scores[scores["role"] == REGISTERED]
    reproduced = reproduction["reproduced"]
    roles[CANDIDATE]["latency_ms_per_1000_rows"] = reproduction["latency_ms_per_1000_rows"]
    expected_rate = family.expected_flag_rate(candidate_model) if candidate_model is not None else float("nan")
    flagged_rate = roles[CANDIDATE]["flagged_rate"]

    gates: dict[str, tuple[str, dict, str]] = {}
    floor_outcome = (
        evidence.INCONCLUSIVE
        if positives < config.min_positives
        else (evidence.PASSED if pr_auc >= floor else evidence.FAILED)
    )
    gates[FLOOR_GATE] = (
        floor_outcome,
        {"candidate_pr_auc": pr_auc, "floor": floor, "positives": positives, "min_positives": config.min_positives},
        f"PR-AUC {pr_auc:.4f} vs floor {floor} on {positives} positives",
    )
    baseline_outcome = _combined([c.outcome for c in baselines])
    gates[BASELINE_GATE] = (
        baseline_outcome,
        _comparison_metadata(baselines),
        "; ".join(c.sentence() for c in baselines),
    )
    if against_champion is None:
        gates[CHAMPION_GATE] = (evidence.PASSED, {"champion": champion_note}, champion_note)
    else:
        gates[CHAMPION_GATE] = (
            against_champion.outcome,
            {"champion": champion_note, **_comparison_metadata([against_champion])},
            f"{champion_note}: {against_champion.sentence()}",
        )
    rate_ok = config.min_flag_rate_ratio * expected_rate <= flagged_rate <= config.max_flag_rate_ratio * expected_rate
    gates[FLAG_RATE_GATE] = (
        evidence.PASSED if rate_ok else evidence.FAILED,
        {"flagged_rate": flagged_rate, "expected_rate": expected_rate},
        f"flags {flagged_rate:.4f} of rows, expected about {expected_rate:.4f}",
    )
    all_scores = np.concatenate([candidate_scores, registered["score"].to_numpy(dtype=float)])
    finite = len(candidate_scores) > 0 and bool(np.isfinite(all_scores).all())
    gates[NAN_GATE] = (
        evidence.PASSED if finite else evidence.FAILED,
        {"scored_rows": len(all_scores), "non_finite": int((~np.isfinite(all_scores)).sum())},
        f"{int((~np.isfinite(all_scores)).sum())} non-finite of {len(all_scores)} scores",
    )
    gates[ARTIFACT_GATE] = (
        evidence.PASSED if reproduced else evidence.FAILED,
        {"sha256": candidate.artifact_sha256, "verified": candidate_model is not None, "scores_reproduced": reproduced},
        "sha256 verified and scores reproduced" if reproduced else "the artifact failed verification or reproduction",
    )

    checks = [
        dg.AssetCheckResult(
            check_name=name,
            passed=outcome == evidence.PASSED,
            description=f"{outcome.upper()}: {why}",
            metadata={"outcome": outcome, **{k: _metadata_value(v) for k, v in meta.items()}},
        )
        for name, (outcome, meta, why) in gates.items()
    ]
    now = utc_naive(datetime.now(UTC))
    metric_rows = pd.DataFrame(
        [
            {
                "role": role,
                "version_id": versions.get(role),
                "metric": metric,
                "value": float(value),
                "evaluated_at": now,
            }
            for role, metrics in roles.items()
            for metric, value in metrics.items()
        ]
    )
    comparisons = [*baselines, *([against_champion] if against_champion else [])]
    evidence_rows = pd.DataFrame(
        [
            {
                **c.as_dict(),
                "gate": CHAMPION_GATE if c.comparator == CHAMPION else BASELINE_GATE,
                "version_id": candidate.version_id,
                "comparator_version": versions[CHAMPION] if c.comparator == CHAMPION else c.comparator,
                "evaluated_at": now,
            }
            for c in comparisons
        ]
    ).drop(columns=["hours"], errors="ignore")
    comparison_table = pd.DataFrame(
        [
            {
                "comparator": c.comparator,
                "pr_auc": c.other,
                "candidate": c.candidate,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "margin": c.margin,
                "outcome": c.outcome,
            }
            for c in comparisons
        ]
    )
    metadata = {
        "candidate_version": candidate.version_id,
        "champion_version": versions[CHAMPION] or "none",
        "champion_comparison": champion_note,
        "evaluation_window": f"{candidate.lineage.evaluation_start} .. {candidate.lineage.evaluation_end} UTC",
        "evaluation_rows": len(rows),
        "evaluation_positives": positives,
        "evaluation_hours": int(len(np.unique(hours))) if len(rows) else 0,
        "gates_passed": sum(outcome == evidence.PASSED for outcome, _, _ in gates.values()),
        "gates_failed": ", ".join(f"{n} ({o})" for n, (o, _, _) in gates.items() if o != evidence.PASSED) or "none",
        "gates": markdown_preview(
            pd.DataFrame([{"gate": n, "outcome": o, "evidence": w} for n, (o, _, w) in gates.items()]), limit=10
        ),
        "comparisons": markdown_preview(comparison_table, limit=10),
        **{f"lineage/{k}": v for k, v in candidate.lineage.as_metadata().items()},
        **{f"{role}_{metric}": float(value) for role, metrics in roles.items() for metric, value in metrics.items()},
    }
    for c in comparisons:
        metadata[f"vs_{c.comparator}_difference"] = float(c.difference)
        metadata[f"vs_{c.comparator}_ci"] = f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
        metadata[f"vs_{c.comparator}_outcome"] = c.outcome
    return {
        "checks": checks,
        "rows": metric_rows,
        "evidence": evidence_rows,
        "metadata": metadata,
        "gates": {name: outcome for name, (outcome, _, _) in gates.items()},
        "comparisons": comparisons,
    }


def _combined(outcomes: list[str]) -> str:
    """All comparisons must pass; any inconclusive one makes the whole inconclusive, unless another failed outright."""
    if any(o == evidence.FAILED for o in outcomes):
        return evidence.FAILED
    if any(o == evidence.INCONCLUSIVE for o in outcomes) or not outcomes:
        return evidence.INCONCLUSIVE
    return evidence.PASSED


def _comparison_metadata(comparisons: list[evidence.Comparison]) -> dict:
    out = {}
    for c in comparisons:
        out.update(
            {
                f"{c.comparator}_pr_auc": c.other,
                "candidate_pr_auc": c.candidate,
                f"{c.comparator}_difference": c.difference,
                f"{c.comparator}_ci_low": c.ci_low,
                f"{c.comparator}_ci_high": c.ci_high,
                f"{c.comparator}_outcome": c.outcome,
                "margin": c.margin,
                "positives": c.positives,
                "confidence": c.confidence,
            }
        )
    return out


def _metadata_value(value):
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value) if not isinstance(value, str) else value


evaluation_assets = [build_evaluation_asset(f) for f in MODEL_FAMILIES]
