"""Champion promotion: every change of champion is a materialization of ``model_champions``, every
refusal an observation of it, and each is an append-only event in ``registry.promotion_events``.

Three ways in, all through the same asset and one ``duckdb_writer`` pool slot at a time:
- ``apply_gates`` (the promotion sensor, after an evaluation): promote the candidate only if every
  gate check of that evaluation run passed, reading the check results from the Dagster instance;
  the event's reason carries each comparison's interval, and an inconclusive gate says so. While
  no model can serve, the strongest baseline on the same evidence becomes the champion of last
  resort (a version of kind ``baseline``). A decision that repeats one already recorded records
  nothing, so re-running the same evaluation changes nothing;
- ``promote`` (the ``promote_model_job``, from the Launchpad): a person names a version and a reason;
- ``rollback`` (the ``rollback_model_job``): back to the previous champion, or a named version.
Every path verifies the artifact's sha256 before it can become champion.
"""

import json
from dataclasses import dataclass, field
from typing import Literal

import dagster as dg
from pydantic import Field

from crypto_assets import registry, serving_snapshot
from crypto_assets.assets.evaluations import evaluation_key
from crypto_assets.feature_spec import FEATURE_SPEC_VERSION
from crypto_assets.metadata import table
from crypto_assets.ml.evidence import PASSED
from crypto_assets.ml.families import FAMILIES_BY_NAME, MODEL_FAMILIES
from crypto_assets.ml.gates import BASELINE_GATE, GATE_NAMES
from crypto_assets.ml.walk_forward import frame_sha256
from crypto_assets.training_data import Split, load_rows
from crypto_assets.warehouse import Warehouse

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
        description=(
            "For promote: champion, latest, latest-N or a version id like v3. For rollback: 'previous' or a version."
        ),
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
        f"({r.confidence:.0%} CI [{r.ci_low:+.4f}, {r.ci_high:+.4f}], margin {r.margin:+.4f}, {r.positives} "
        f"positives): {r.outcome}" + (f" - {r.why}" if r.why else "")
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


@dataclass
class Decision:
    """What one champion decision did: the events it recorded (none when it repeats one), and whether the champion "
    "moved."""

    events: list[dict] = field(default_factory=list)
    changed: bool = False
    summary: str = ""
    gates: dict = field(default_factory=dict)


def decide(conn, instance: dg.DagsterInstance, config: ChampionConfig, run_id: str) -> Decision:
    """Carry out one champion decision."""
    name = config.model_name
    current = registry.champion(conn, name)
    current_id = current.version_id if current else None

    if config.action == "apply_gates":
        return _apply_gates(conn, instance, config, run_id, current)

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
    event = _record(conn, name, target.version_id, current_id, outcome, trigger, config.reason.strip(), gates, run_id)
    return Decision([event], True, f"{outcome} {target.version_id} ({trigger})", gates)


def _apply_gates(conn, instance, config: ChampionConfig, run_id: str, current) -> Decision:
    """The sensor's decision on one evaluation: promote the candidate if every gate passed, else record the refusal;
    while nothing can serve, the strongest baseline on the same evidence becomes the champion of last resort."""
    name = config.model_name
    current_id = current.version_id if current else None
    if not config.split_id or not config.evaluation_run_id:
        raise dg.Failure("apply_gates needs split_id and evaluation_run_id (the promotion sensor sets both)")
    gates = gate_results_for_run(instance, name, config.evaluation_run_id)
    pending = [g for g, outcome in gates.items() if outcome is None]
    if pending:
        raise dg.Failure(f"gates not evaluated yet in run {config.evaluation_run_id}: {', '.join(pending)}")
    evaluated = evaluation_metadata(instance, name, config.split_id, config.evaluation_run_id)
    candidate_id = evaluated["candidate_version"]
    evaluated_against = None if evaluated.get("champion_version", "none") == "none" else evaluated["champion_version"]
    if candidate_id == current_id:
        return Decision([], False, f"{candidate_id} is already champion: nothing to decide", gates)
    evidence = gate_evidence(conn, name, config.split_id, candidate_id)
    failed = [f"{g} {gates[g]}" for g in GATE_NAMES if gates[g] != PASSED]
    if not failed and evaluated_against != current_id:
        failed = [f"evaluated against {evaluated_against or 'no champion'}, but the champion is now {current_id}"]
    if failed:
        decision = Decision(gates=gates)
        previous = _last_decision_about(conn, name, candidate_id)
        failed_before = previous and {g for g, o in json.loads(previous["gate_results"]).items() if o != PASSED}
        if (
            previous
            and previous["outcome"] == "refused"
            and failed_before == {g for g, o in gates.items() if o != PASSED}
        ):
            decision.summary = f"{candidate_id} refused, as already recorded at {previous['created_at']:%Y-%m-%d %H:%M}"
        else:
            reason = f"{candidate_id} refused on {config.split_id}: {', '.join(failed)}. Evidence: " + (
                "; ".join(evidence) or "none recorded"
            )
            decision.events.append(
                _record(conn, name, None, current_id, "refused", "sensor", reason, gates, run_id, candidate_id)
            )
            decision.summary = f"{candidate_id} refused: {', '.join(failed)}"
        if current is None or current.feature_spec_version != FEATURE_SPEC_VERSION:
            baseline, why = install_baseline(conn, name, config.split_id, candidate_id, run_id)
            event = _record(conn, name, baseline.version_id, current_id, "promoted", "sensor", why, gates, run_id)
            decision.events.append(event)
            decision.changed = True
            decision.summary += f"; baseline {baseline.params['baseline']} ({baseline.version_id}) serves meanwhile"
        return decision
    candidate = registry.resolve(conn, name, candidate_id)
    registry.load_artifact(conn, candidate)  # refuses a tampered artifact before it can serve
    replaces = (
        f" It replaces the baseline champion {current_id}." if current is not None and current.is_baseline else ""
    )
    reason = (
        f"{candidate_id} passed every gate on {config.split_id} "
        f"({evaluated.get('evaluation_positives', '?')} positives in {evaluated.get('evaluation_rows', '?')} "
        f"out-of-time rows, {evaluated.get('evaluation_window', '')}): "
        + "; ".join(evidence)
        + ("" if current_id else " (first champion)")
        + f". Champion: {evaluated.get('champion_comparison', '')}.{replaces}"
    )
    event = _record(conn, name, candidate_id, current_id, "promoted", "sensor", reason, gates, run_id)
    return Decision([event], True, f"{candidate_id} promoted (every gate passed)", gates)


def install_baseline(
    conn, name: str, split_id: str, candidate_id: str, run_id: str
) -> tuple[registry.ModelVersion, str]:
    """Register the strongest baseline of a refused candidate's evaluation, fitted on the candidate's own training rows.

    The champion of last resort: registered like any version (kind baseline, with lineage), and
    replaced only by a model that beats it, and every other baseline, through the gates.
    """
    family = FAMILIES_BY_NAME[name]
    candidate = registry.resolve(conn, name, candidate_id)
    lineage = candidate.lineage
    scored = dict(
        conn.execute(
            "SELECT comparator, other FROM ml.gate_evidence WHERE model_name = ? AND split_id = ? AND version_id = ? "
            "AND gate = ?",
            [name, split_id, candidate_id, BASELINE_GATE],
        ).fetchall()
    )
    ranked = sorted(family.baselines, key=lambda b: -(scored.get(b.name) or float("-inf")))
    baseline = ranked[0]
    split = Split.read(conn, split_id)
    frame = load_rows(conn, lineage.train_start, lineage.train_end, excluded=split.excluded_coins,
                      with_ground_truth=family.needs_ground_truth)  # fmt: skip
    train = family.usable_rows(frame)
    model = baseline.fit(train, family.truth(train))
    version, _ = registry.register_version(
        conn,
        model_name=name,
        model=model,
        features=model.features,
        params={"baseline": baseline.name},
        lineage=registry.Lineage(
            split_id=split_id,
            feature_spec_version=FEATURE_SPEC_VERSION,
            train_start=lineage.train_start,
            train_end=lineage.train_end,
            train_rows=len(train),
            train_positives=int(family.truth(train).sum()),
            training_frame_sha256=frame_sha256(train, model.features),
            evaluation_start=lineage.evaluation_start,
            evaluation_end=lineage.evaluation_end,
            evaluation_rows=lineage.evaluation_rows,
            evaluation_positives=lineage.evaluation_positives,
        ),
        metrics={f"{family.gate_metric}": scored.get(baseline.name)},
        run_id=run_id,
        kind=registry.BASELINE,
    )
    others = ", ".join(f"{b.name} {scored.get(b.name, float('nan')):.4f}" for b in family.baselines)
    why = (
        f"no {name} has passed its gates yet ({candidate_id} was refused on {split_id}): the baseline "
        f"{baseline.name} ({version.version_id}), strongest on the same out-of-time rows ({family.gate_metric}: "
        f"{others}), serves as champion of last resort until a model beats it through the gates"
    )
    return version, why


def _last_decision_about(conn, name: str, version_id: str) -> dict | None:
    events = [e for e in registry.promotion_events(conn, name) if e.get("candidate_version") == version_id]
    return events[-1] if events else None


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
          AND split_id = (SELECT max(split_id) FROM ml.model_evaluations
                          WHERE model_name = ? AND version_id = ? AND role = 'candidate')
        """,
        [name, version_id, name, version_id],
    ).fetchall()
    return {"evaluation_metrics": dict(rows)} if rows else {"evaluation_metrics": "none recorded"}


def _record(conn, name, to_version, current_id, outcome, trigger, reason, gates, run_id, candidate_id=None) -> dict:
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
        candidate_version=candidate_id,
    )


@dg.asset(
    key=CHAMPION_KEY,
    deps=[evaluation_key(f) for f in MODEL_FAMILIES],
    pool="duckdb_writer",
    group_name="evaluation",
    kinds={"duckdb", "python"},
    owners=["team:ml-platform"],
    output_required=False,
)
def model_champions(context: dg.AssetExecutionContext, config: ChampionConfig, warehouse: Warehouse):
    """The champion of every model, and the story of how it became champion.

    A materialization is a change of champion (a promotion, a baseline champion of last resort, a
    rollback); a decision that changes nothing (a refused candidate) is an observation, so the
    Events list tells them apart. Both show every model's champion and the timeline of decisions;
    registry.promotion_events keeps every one.
    """
    with warehouse.connect() as conn:
        decision = decide(conn, context.instance, config, context.run.run_id)
        story = champion_story(conn)
        if decision.changed:
            serving_snapshot.publish(conn, warehouse.database, context.log)  # the service switches within seconds
    context.log.info(f"{config.model_name}: {decision.summary}")
    last = decision.events[-1] if decision.events else None
    metadata = {
        "decision": f"{config.model_name}: {decision.summary}",
        "model_name": config.model_name,
        "outcome": _outcome(decision),
        "evaluation_run_id": config.evaluation_run_id or "none",
        # plain text: the UI shows it in the table, where markdown would hide behind a link
        **({"reason": " ".join(e["reason"] for e in decision.events)} if last else {}),
        **({"gate_results": table(_gate_frame(decision.gates))} if decision.gates else {}),
        **story,
        **serving_snapshot.api_link_metadata(),
    }
    if decision.changed:
        yield dg.MaterializeResult(metadata=metadata)
    else:
        context.log_event(
            dg.AssetObservation(asset_key=CHAMPION_KEY, description=metadata["decision"], metadata=metadata)
        )


def _outcome(decision: Decision) -> str:
    """What happened, in one word a newcomer reads right: a refusal that installed a baseline is not a promotion."""
    outcomes = [e["outcome"] for e in decision.events]
    if "refused" in outcomes and decision.changed:
        return "refused, baseline champion"
    return outcomes[-1] if outcomes else "unchanged"


def _gate_frame(gates: dict):
    import pandas as pd

    if all(isinstance(v, str) for v in gates.values()):
        return pd.DataFrame([{"gate": k, "outcome": v} for k, v in gates.items()])
    return pd.DataFrame([{"gate": k, "outcome": json.dumps(v, default=str)[:200]} for k, v in gates.items()])


def champion_story(conn) -> dict:
    """Every model's champion (a baseline marked as such) and the timeline of decisions, newest first."""
    champions = conn.execute(
        """
        SELECT f.model_name AS model, a.version_id AS champion, coalesce(v.kind, 'none') AS kind,
               v.params AS params, v.split_id AS trained_on, a.updated_at AS champion_since
        FROM unnest(?::VARCHAR[]) AS f(model_name)
        LEFT JOIN registry.aliases a ON a.model_name = f.model_name AND a.alias = 'champion'
        LEFT JOIN registry.model_versions v ON v.model_name = a.model_name AND v.version_id = a.version_id
        ORDER BY model
        """,
        [[f.name for f in MODEL_FAMILIES]],
    ).df()
    champions["kind"] = [
        f"baseline ({json.loads(p).get('baseline')})" if k == registry.BASELINE else k
        for k, p in zip(champions["kind"], champions["params"].fillna("{}"), strict=True)
    ]
    timeline = conn.execute(
        """
        SELECT created_at, model_name AS model, outcome, candidate_version AS about, from_version, to_version,
               trigger, reason
        FROM registry.promotion_events ORDER BY created_at DESC, event_id LIMIT 30
        """
    ).df()
    serving = {
        f"champion/{row.model}": f"{row.champion} ({row.kind}) since {row.champion_since:%Y-%m-%d %H:%M} UTC"
        if isinstance(row.champion, str)
        else "none yet"
        for row in champions.itertuples()
    }
    return {
        **serving,
        "champions": table(champions.drop(columns="params")),
        "decisions": table(timeline),
    }
