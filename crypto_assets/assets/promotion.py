"""Champion promotion: every change of champion, and every refusal, is a materialization of
``model_champions`` and an append-only event in ``registry.promotion_events``.

Three ways in, all through the same asset and one ``duckdb_writer`` pool slot at a time:
- ``apply_gates`` (the promotion sensor, after an evaluation): promote the candidate only if every
  gate check of that evaluation run passed, reading the check results from the Dagster instance;
  the event's reason carries each comparison's interval, and an inconclusive gate says so;
- ``promote`` (the ``promote_model_job``, from the Launchpad): a person names a version and a reason;
- ``rollback`` (the ``rollback_model_job``): back to the previous champion, or a named version.
Every path verifies the artifact's sha256 before it can become champion.
"""

import json
from typing import TYPE_CHECKING, Literal

import dagster as dg
from pydantic import Field

from crypto_assets import registry, serving_snapshot
from crypto_assets.assets.evaluations import evaluation_key
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.metadata import markdown_preview
from crypto_assets.ml.evidence import PASSED
from crypto_assets.ml.families import FAMILIES_BY_NAME, MODEL_FAMILIES
from crypto_assets.ml.gates import GATE_NAMES
from crypto_assets.warehouse import Warehouse

if TYPE_CHECKING:  # only for annotations: imported where used, so the code location loads fast
    pass

CHAMPION_KEY = dg.AssetKey("model_champions")
ModelName = Literal[tuple(FAMILIES_BY_NAME)]  # type: ignore[valid-type]


class ChampionConfig(dg.Config):
    model_name: ModelName = Field(description="Which model's champion to decide.")  # type: ignore[valid-type]
    action: Literal["apply_gates", "promote", "rollback"] = Field(
        default="apply_gates",
        description="apply_gates: the sensor's automatic decision; promote / rollback: a person's.",
    )
    version: str = Field(
        default="latest",
        description="For promote: champion, latest, latest-N or a version id like v3. For rollback: 'previous' or a version.",
    )
    reason: str = Field(
        default="", description="Why: required for promote and rollback, recorded in the promotion event."
    )
    split_id: str | None = Field(default=None, description="apply_gates: the evaluated day.")
    evaluation_run_id: str | None = Field(
        default=None, description="apply_gates: the run that evaluated the candidate."
    )


def gate_results_for_run(instance: dg.DagsterInstance, model_name: str, run_id: str) -> dict[str, str | None]:
    """Each gate's outcome in one evaluation run (passed, failed or inconclusive), None while not evaluated."""
    key = evaluation_key(FAMILIES_BY_NAME[model_name])
    results: dict[str, str | None] = dict.fromkeys(GATE_NAMES)
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.asset_check_evaluation
        if evaluation is None or evaluation.asset_key != key or evaluation.check_name not in results:
            continue
        outcome = evaluation.metadata.get("outcome")
        results[evaluation.check_name] = (
            outcome.value if outcome is not None else ("passed" if evaluation.passed else "failed")
        )
    return results


def gate_evidence(conn, model_name: str, split_id: str, version_id: str) -> list[str]:
    """The comparisons the gates decided on, one sentence each, with their intervals."""
    rows = conn.execute(
        """
        SELECT gate, comparator, comparator_version, candidate, other, difference, ci_low, ci_high, confidence, margin,
               positives, rows, outcome, why
        FROM ml.gate_evidence WHERE model_name = ? AND split_id = ? AND version_id = ? ORDER BY gate, comparator
        """,
        [model_name, split_id, version_id],
    ).df()
    return [
        f"{r.gate}: PR-AUC {r.candidate:.4f} vs {r.comparator} {r.other:.4f}, difference {r.difference:+.4f} "
        f"({r.confidence:.0%} CI [{r.ci_low:+.4f}, {r.ci_high:+.4f}], margin {r.margin:+.4f}, {r.positives} positives): {r.outcome}"
        + (f" - {r.why}" if r.why else "")
        for r in rows.itertuples()
    ]


def evaluation_metadata(instance: dg.DagsterInstance, model_name: str, split_id: str, run_id: str) -> dict:
    """The metadata the evaluation run recorded for that day (candidate and champion versions, metrics)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=evaluation_key(FAMILIES_BY_NAME[model_name]), asset_partitions=[split_id]),
        limit=50,
    ).records
    record = next((r for r in records if r.run_id == run_id), None)
    if record is None:
        raise dg.Failure(f"no {model_name} evaluation of {split_id} was materialized by run {run_id}")
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def decide(conn, instance: dg.DagsterInstance, config: ChampionConfig, run_id: str) -> dict:
    """Carry out one champion decision and return its promotion event."""
    name = config.model_name
    current = registry.champion(conn, name)
    current_id = current.version_id if current else None

    if config.action == "apply_gates":
        if not config.split_id or not config.evaluation_run_id:
            raise dg.Failure("apply_gates needs split_id and evaluation_run_id (the promotion sensor sets both)")
        gates = gate_results_for_run(instance, name, config.evaluation_run_id)
        pending = [g for g, outcome in gates.items() if outcome is None]
        if pending:
            raise dg.Failure(f"gates not evaluated yet in run {config.evaluation_run_id}: {', '.join(pending)}")
        evaluated = evaluation_metadata(instance, name, config.split_id, config.evaluation_run_id)
        candidate_id = evaluated["candidate_version"]
        evaluated_against = (
            None if evaluated.get("champion_version", "none") == "none" else evaluated["champion_version"]
        )
        evidence = gate_evidence(conn, name, config.split_id, candidate_id)
        failed = [f"{g} {gates[g]}" for g in GATE_NAMES if gates[g] != PASSED]
        if failed:
            reason = f"{candidate_id} refused on {config.split_id}: {', '.join(failed)}. Evidence: " + (
                "; ".join(evidence) or "none recorded"
            )
            return _record(conn, name, None, current_id, "refused", "sensor", reason, gates, run_id)
        if candidate_id == current_id:
            return _record(
                conn, name, None, current_id, "refused", "sensor", f"{candidate_id} is already champion", gates, run_id
            )
        if evaluated_against != current_id:
            reason = (
                f"{candidate_id} was evaluated against {evaluated_against or 'no champion'}, "
                f"but the champion is now {current_id or 'none'}; re-run the evaluation"
            )
            return _record(conn, name, None, current_id, "refused", "sensor", reason, gates, run_id)
        candidate = registry.resolve(conn, name, candidate_id)
        registry.load_artifact(conn, candidate)  # refuses a tampered artifact before it can serve
        reason = (
            f"{candidate_id} passed every gate on {config.split_id} "
            f"({evaluated.get('evaluation_positives', '?')} positives in {evaluated.get('evaluation_rows', '?')} out-of-time rows, "
            f"{evaluated.get('evaluation_window', '')}): "
            + "; ".join(evidence)
            + ("" if current_id else " (first champion)")
            + f". Champion: {evaluated.get('champion_comparison', '')}"
        )
        return _record(conn, name, candidate_id, current_id, "promoted", "sensor", reason, gates, run_id)

    if not config.reason.strip():
        raise dg.Failure(f"{config.action} needs a reason: say why in the run config's 'reason'")
    if config.action == "promote":
        target = registry.resolve(conn, name, config.version)
        outcome, trigger = "promoted", "manual"
    else:
        spec = _previous_champion(conn, name, current_id) if config.version == "previous" else config.version
        target = registry.resolve(conn, name, spec)
        outcome, trigger = "rolled_back", "rollback"
    if target.feature_spec_version != FEATURE_SPEC_VERSION:
        raise dg.Failure(
            f"{name} {target.version_id} was trained on feature spec {target.feature_spec_version}, "
            f"but features are now {FEATURE_SPEC_VERSION}: it cannot serve"
        )
    registry.load_artifact(conn, target)  # raises ArtifactIntegrityError on tampered bytes
    if target.version_id == current_id:
        raise dg.Failure(f"{name} {target.version_id} is already champion")
    gates = _recorded_gates(conn, name, target.version_id)
    return _record(conn, name, target.version_id, current_id, outcome, trigger, config.reason.strip(), gates, run_id)


def _previous_champion(conn, name: str, current_id: str | None) -> str:
    row = conn.execute(
        """
        SELECT from_version FROM registry.promotion_events
        WHERE model_name = ? AND to_version = ? AND outcome IN ('promoted', 'rolled_back') AND from_version IS NOT NULL
        ORDER BY created_at DESC LIMIT 1
        """,
        [name, current_id],
    ).fetchone()
    if current_id is None or row is None:
        raise dg.Failure(f"{name} has no earlier champion to roll back to; name a version instead of 'previous'")
    return row[0]


def _recorded_gates(conn, name: str, version_id: str) -> dict:
    """The latest evaluation metrics recorded for a version, for the audit trail of a manual decision."""
    rows = conn.execute(
        """
        SELECT metric, value FROM ml.model_evaluations
        WHERE model_name = ? AND version_id = ? AND role = 'candidate'
          AND split_id = (SELECT max(split_id) FROM ml.model_evaluations WHERE model_name = ? AND version_id = ? AND role = 'candidate')
        """,
        [name, version_id, name, version_id],
    ).fetchall()
    return {"evaluation_metrics": dict(rows)} if rows else {"evaluation_metrics": "none recorded"}


def _record(conn, name, to_version, current_id, outcome, trigger, reason, gates, run_id) -> dict:
    return registry.record_decision(
        conn,
        model_name=name,
        to_version=to_version,
        expected_from=current_id,
        outcome=outcome,
        trigger=trigger,
        reason=reason,
        gate_results=gates,
        run_id=run_id,
    )


@dg.asset(
    key=CHAMPION_KEY,
    deps=[evaluation_key(f) for f in MODEL_FAMILIES],
    pool="duckdb_writer",
    group_name="evaluation",
    kinds={"duckdb", "python"},
    owners=["team:ml-platform"],
)
def model_champions(
    context: dg.AssetExecutionContext, config: ChampionConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    """The current champion of each model, and the decision that was just made about it.

    Each materialization is one decision (promoted, rolled back or refused) with from/to versions,
    the reason and the gate results; registry.promotion_events keeps them all.
    """
    import pandas as pd

    with warehouse.connect() as conn:
        event = decide(conn, context.instance, config, context.run.run_id)
        serving_snapshot.publish(conn, warehouse.database, context.log)  # the prediction service's copy
        champions = conn.execute(
            """
            SELECT a.model_name, a.version_id AS champion, v.split_id AS trained_on, v.created_at, a.updated_at AS champion_since
            FROM registry.aliases a JOIN registry.model_versions v USING (model_name, version_id)
            WHERE a.alias = 'champion' ORDER BY a.model_name
            """
        ).df()
        history = conn.execute(
            """
            SELECT created_at, from_version, to_version, outcome, trigger, reason FROM registry.promotion_events
            WHERE model_name = ? ORDER BY created_at DESC LIMIT 10
            """,
            [config.model_name],
        ).df()
    gates = json.loads(event["gate_results"])
    context.log.info(
        f"{config.model_name}: {event['outcome']} ({event['from_version']} -> {event['to_version']}): {event['reason']}"
    )
    return dg.MaterializeResult(
        metadata={
            "model_name": config.model_name,
            "outcome": event["outcome"],
            "trigger": event["trigger"],
            "from_version": event["from_version"] or "none",
            "to_version": event["to_version"] or "none",
            "champion_version": (event["to_version"] if event["outcome"] != "refused" else event["from_version"])
            or "none",
            "reason": event["reason"],
            "evaluation_run_id": config.evaluation_run_id or "none",
            "gate_results": markdown_preview(pd.DataFrame([{"gate": k, "outcome": v} for k, v in gates.items()]))
            if gates and all(isinstance(v, str) for v in gates.values())
            else dg.MetadataValue.json(gates),
            "champions": markdown_preview(champions),
            "recent_decisions": markdown_preview(history),
            **serving_snapshot.api_link_metadata(),  # prediction_api: the service's /version, when it runs
        }
    )
