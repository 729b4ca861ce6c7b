"""Daily evaluations: the quality gates, as asset checks, decided on out-of-time evidence.

The candidate's walk-forward scores (``ml.walk_forward_scores``) are compared with every baseline
and with the champion on exactly the same rows; each comparison is a difference of the family's
gate metric with a paired block-bootstrap interval (``crypto_assets/ml/evidence.py``). The champion
is compared as a recipe: scored walk-forward like the candidate (identical scores when the recipes
are equal), so neither is judged on rows it trained on. The gates are ``crypto_assets/ml/gates.py``;
promotion reads these checks' results.

A refused candidate is a normal outcome, not a crash: its failed gates show as failed checks
(severity error) on the evaluation, and the run succeeds. Nothing downstream can serve it: only
the promotion sensor moves the champion, and only when every gate passed.
"""

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import dagster as dg

from crypto_assets import registry
from crypto_assets.assets.candidates import candidate_key
from crypto_assets.assets.splits import SPLITS_KEY
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.market.schema import utc_naive
from crypto_assets.metadata import rounded, table
from crypto_assets.ml.evaluation import Evaluation, check_artifact, evaluate_candidate
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.ml.family import ModelFamily
from crypto_assets.ml.gates import BASELINE_GATE, CHAMPION_GATE, GATES, GateConfig, GateResult, decide
from crypto_assets.ml.walk_forward import CANDIDATE, CHAMPION, walk_forward
from crypto_assets.partitions import daily_partitions
from crypto_assets.resources import Reports
from crypto_assets.training_data import Split, load_anomaly_kinds, load_rows, load_split_frame
from crypto_assets.warehouse import Warehouse, insert_frame, transaction

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    import pandas as pd


def evaluation_key(family: ModelFamily) -> dg.AssetKey:
    return dg.AssetKey(family.evaluation_asset)


def latest_candidate_for_split(conn, family: ModelFamily, split_id: str) -> registry.ModelVersion:
    row = conn.execute(
        "SELECT max(version_number) FROM registry.model_versions WHERE model_name = ? AND split_id = ? AND kind = ?",
        [family.name, split_id, registry.MODEL],
    ).fetchone()[0]
    if row is None:
        raise registry.RegistryError(
            f"no {family.name} candidate trained on split {split_id}: materialize {family.candidate_asset} first"
        )
    return registry.resolve(conn, family.name, f"v{row}")


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
            f"Daily evaluation of the {family.name} candidate against {', '.join(b.name for b in family.baselines)} "
            "and the champion, on the same out-of-time rows, with bootstrap intervals; the quality gates are its "
            "checks (a failed gate refuses the candidate; the run still succeeds)."
        ),
        # Not blocking: a refusal must not fail the run (promotion reads every result, and needs all passed).
        check_specs=[dg.AssetCheckSpec(g.name, asset=key, blocking=False, description=g.description) for g in GATES],
    )
    def _evaluation(
        context: dg.AssetExecutionContext, config: GateConfig, warehouse: Warehouse, reports: Reports
    ) -> dg.MaterializeResult:
        import pandas as pd

        split_id = context.partition_key
        with warehouse.connect() as conn:
            candidate = latest_candidate_for_split(conn, family, split_id)
            scores = read_scores(conn, family.name, split_id, candidate.version_id)
            champion = registry.champion(conn, family.name)
            verified = registry.verify_artifact(conn, candidate)  # before anything is unpickled
            candidate_model = registry.load_artifact(conn, candidate) if verified else None
            split = Split.read(conn, split_id)
            rows = family.usable_rows(
                load_rows(conn, split.evaluation_start, split.evaluation_end, excluded=split.excluded_coins)
            )
            kinds = (
                load_anomaly_kinds(conn, split.evaluation_start, split.evaluation_end)
                if family.needs_ground_truth
                else None
            )
        artifact = check_artifact(family, candidate_model, rows, scores)
        champion_scores, champion_note = champion_evidence(warehouse, family, split_id, candidate, champion, scores)
        if champion_scores is not None:
            scores = pd.concat([scores, champion_scores], ignore_index=True)
        evaluation = evaluate_candidate(family, config, candidate, scores, champion_note, artifact, kinds)
        gates = decide(evaluation.evidence, config)
        versions = {CANDIDATE: candidate.version_id, CHAMPION: champion.version_id if champion else None}
        now = utc_naive(datetime.now(UTC))
        with warehouse.connect() as conn, transaction(conn):
            for stored in ("ml.model_evaluations", "ml.gate_evidence"):
                conn.execute(f"DELETE FROM {stored} WHERE model_name = ? AND split_id = ?", [family.name, split_id])
            insert_frame(
                conn,
                "ml.model_evaluations",
                metric_rows(evaluation, versions, now).assign(model_name=family.name, split_id=split_id),
            )
            insert_frame(
                conn,
                "ml.gate_evidence",
                evidence_rows(evaluation, versions, now).assign(model_name=family.name, split_id=split_id),
            )
        by_day = walk_forward_by_day(family, scores)
        chart = reports.path("evaluation", family.name, split_id, suffix=".svg")
        reports.write(chart, lambda tmp: tmp.write_text(chart_svg(family, split_id, evaluation, by_day)))
        failed = [f"{n} ({r.outcome})" for n, r in gates.items() if not r.passed]
        calibration = family.calibration_warning(evaluation.roles[CANDIDATE])
        if calibration:
            context.log.warning(f"{family.name} {candidate.version_id} on {split_id}: {calibration}")
        if evaluation.recall_by_kind is not None and len(evaluation.recall_by_kind):
            context.log.info(
                f"{family.name} recall per kind at its flags: "
                + ", ".join(f"{r.kind} {r.candidate_recall:.2f}" for r in evaluation.recall_by_kind.itertuples())
            )
        context.log.info(
            f"{family.name} {candidate.version_id} on {split_id}: "
            + (f"refused by its gates: {', '.join(failed)}" if failed else "every gate passed")
        )
        return dg.MaterializeResult(
            metadata={
                **evaluation_metadata(candidate, evaluation, gates, versions),
                **calibration_metadata(evaluation.roles[CANDIDATE], calibration),
                "walk_forward_by_day": table(by_day),
                **({"chart": dg.MetadataValue.url(reports.url(chart))} if reports.url(chart) else {}),
                "chart_file": dg.MetadataValue.path(str(chart)),
            },
            check_results=[
                check_result(name, result, f"{candidate.version_id} on {split_id}") for name, result in gates.items()
            ],
        )

    return _evaluation


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
    if champion.is_baseline:
        name = champion.params["baseline"]
        if champion.split_id == split_id:
            # Chosen on this very evaluation: beats_baseline already compares the candidate with it.
            return None, f"the champion {champion.version_id} is this evaluation's own baseline {name}"
        # A baseline champion is its baseline refit fold by fold: exactly that baseline's walk-forward scores.
        return scores[scores["role"] == name].assign(role=CHAMPION), f"baseline champion {champion.version_id} ({name})"
    if champion.recipe() == candidate.recipe():
        # Same params, features and feature spec: walk-forward refits it on the same rows into the same models.
        return scores[scores["role"] == CANDIDATE].assign(role=CHAMPION), f"champion {champion.version_id}, same recipe"
    train_days = int(champion.params.get("train_days", family.config_class().train_days))
    _, folds, frame = load_split_frame(warehouse, family, split_id, train_days)
    champion_scores = walk_forward(
        family, frame, folds, champion.params, champion.features, role=CHAMPION, with_baselines=False
    )
    return champion_scores, f"champion {champion.version_id}, its recipe fitted walk-forward on the same days"


def check_result(name: str, result: GateResult, about: str) -> dg.AssetCheckResult:
    """A gate's check result; ``about`` (version and split day) because the checks page shows no partition."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=result.passed,
        description=f"{result.outcome.upper()} ({about}): {result.why}",
        metadata={
            "outcome": result.outcome,
            "rule": result.rule,
            **{k: rounded(_metadata_value(v)) for k, v in result.metadata.items()},
        },
    )


def metric_rows(evaluation: Evaluation, versions: dict, now: datetime) -> "pd.DataFrame":
    """ml.model_evaluations rows: one per role and metric."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "role": role,
                "version_id": versions.get(role),
                "metric": metric,
                "value": float(value),
                "evaluated_at": now,
            }
            for role, metrics in evaluation.roles.items()
            for metric, value in metrics.items()
        ]
    )


def evidence_rows(evaluation: Evaluation, versions: dict, now: datetime) -> "pd.DataFrame":
    """ml.gate_evidence rows: one per comparison, with the gate that decided on it."""
    import pandas as pd

    champion = evaluation.evidence.champion
    return pd.DataFrame(
        [
            {
                **c.as_dict(),
                "gate": CHAMPION_GATE if c is champion else BASELINE_GATE,
                "version_id": versions[CANDIDATE],
                "comparator_version": versions[CHAMPION] if c is champion else c.comparator,
                "evaluated_at": now,
            }
            for c in evaluation.evidence.comparisons
        ]
    ).drop(columns=["hours"], errors="ignore")


def evaluation_metadata(
    candidate: registry.ModelVersion, evaluation: Evaluation, gates: dict[str, GateResult], versions: dict
) -> dict:
    """The keys that decide, as numbers where they vary (so the Plots tab charts them across days); the rest grouped."""
    import pandas as pd

    e = evaluation.evidence
    comparisons = pd.DataFrame(
        [
            {
                "comparator": c.comparator,
                "gate": CHAMPION_GATE if c is e.champion else BASELINE_GATE,
                f"comparator_{c.metric}": c.other,
                f"candidate_{c.metric}": c.candidate,
                "difference": c.difference,
                "ci_low": c.ci_low,
                "ci_high": c.ci_high,
                "margin": c.margin,
                "positives": c.positives,
                "outcome": c.outcome,
            }
            for c in e.comparisons
        ]
    )
    lineage = candidate.lineage
    failed = [f"{n} ({r.outcome})" for n, r in gates.items() if not r.passed]
    metadata = {
        "decision": f"refused: {', '.join(failed)}"
        if failed
        else "every gate passed: the promotion sensor promotes it",
        "candidate_version": candidate.version_id,
        "champion_version": versions[CHAMPION] or "none",
        "champion_comparison": e.champion_note,
        "evaluation_window": f"{lineage.evaluation_start} .. {lineage.evaluation_end} UTC",
        "evaluation_rows": evaluation.rows,
        "evaluation_positives": e.positives,
        f"candidate_{e.metric}": e.candidate_metric,
        **{f"{c.comparator}_{c.metric}": c.other for c in e.comparisons},
        **{f"vs_{c.comparator}_ci_low": c.ci_low for c in e.comparisons},
        **{f"vs_{c.comparator}_ci_high": c.ci_high for c in e.comparisons},
        "gates_failed": ", ".join(failed) or "none",
        "gates": table(pd.DataFrame([{"gate": n, "outcome": r.outcome, "evidence": r.why} for n, r in gates.items()])),
        "comparisons": table(comparisons),
        "metrics": dg.MetadataValue.json(
            {role: {k: rounded(v) for k, v in m.items()} for role, m in evaluation.roles.items()}
        ),
        "lineage": dg.MetadataValue.json({k: v for k, v in lineage.as_metadata().items()}),
        **kind_metadata(evaluation.recall_by_kind),
    }
    return {k: rounded(v) for k, v in metadata.items()}


def calibration_metadata(metrics: dict[str, float], warning: str | None) -> dict:
    """The candidate's Brier score, Brier skill and expected calibration error, where it forecasts probabilities."""
    if "ece" not in metrics:
        return {}
    return {
        **{f"candidate_{k}": rounded(float(metrics[k])) for k in ("brier", "brier_skill", "ece")},
        "calibration": warning or "well calibrated",
    }


def kind_metadata(by_kind: "pd.DataFrame | None") -> dict:
    """Recall per anomaly kind: a table, the same as JSON (what benchmarks read), and one number per kind to plot."""
    import re

    if by_kind is None:
        return {}
    records = [{k: rounded(v) for k, v in r.items()} for r in by_kind.to_dict("records")]
    return {
        "recall_by_kind": table(by_kind),
        "recall_by_kind_json": dg.MetadataValue.json(records),
        # kinds come from whichever generator injected them: keys are made safe, the table keeps the names
        **{f"recall/{re.sub(r'[^a-z0-9_]+', '_', r['kind'].lower())}": r["candidate_recall"] for r in records},
    }


def walk_forward_by_day(family: ModelFamily, scores: "pd.DataFrame") -> "pd.DataFrame":
    """Per evaluated day: positives, and the gate metric of the candidate, every baseline and the champion on that "
    "day's rows."""
    import pandas as pd

    from crypto_assets.ml.evidence import METRICS

    metric = METRICS[family.gate_metric]
    roles = [CANDIDATE, *(b.name for b in family.baselines)]
    if (scores["role"] == CHAMPION).any():
        roles.append(CHAMPION)
    days = sorted(scores.loc[scores["role"] == CANDIDATE, "fold"].unique())
    rows = []
    for day in days:
        on_day = scores[scores["fold"] == day]
        truth = on_day.loc[on_day["role"] == CANDIDATE, "truth"].to_numpy(dtype=bool)
        row = {"day": day, "rows": len(truth), "positives": int(truth.sum())}
        for role in roles:
            values = on_day[on_day["role"] == role]
            row[role] = (
                metric(values["truth"].to_numpy(dtype=bool), values["score"].to_numpy(dtype=float))
                if (len(values) and values["truth"].any())
                else float("nan")
            )
        rows.append(row)
    return pd.DataFrame(rows)


def chart_svg(family: ModelFamily, split_id: str, evaluation: Evaluation, by_day: "pd.DataFrame") -> str:
    from crypto_assets.charts import evaluation_chart

    roles = [c for c in by_day.columns if c not in ("day", "rows", "positives")]
    intervals = [
        {"label": f"vs {c.comparator}", "low": c.ci_low, "high": c.ci_high, "point": c.difference,
         "margin": c.margin, "outcome": c.outcome}
        for c in evaluation.evidence.comparisons
    ]  # fmt: skip
    return evaluation_chart(
        f"{family.name} candidate, split {split_id}",
        by_day["day"].tolist(),
        {role: [None if pd_isna(v) else float(v) for v in by_day[role]] for role in roles},
        intervals,
    )


def pd_isna(value) -> bool:
    import math

    return value is None or (isinstance(value, float) and math.isnan(value))


def _metadata_value(value):
    import numpy as np

    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    return str(value) if not isinstance(value, str) else value


evaluation_assets = [build_evaluation_asset(f) for f in MODEL_FAMILIES]
