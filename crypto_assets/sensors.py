"""Sensors: what reacts to events (drift, promotion, failures).

``champion_promotion_sensor`` watches the model evaluations; once an evaluation run's gate
checks have all been evaluated it launches ``champion_gate_job``, which reads those check results
and promotes the candidate or records why not.

``run_failure_alert_sensor`` logs every failed run and, when the ``alert_webhook`` resource has a URL
(``CRYPTO_ASSETS_ALERT_WEBHOOK_URL``), posts a short JSON message there.

``drift_retraining_sensor`` watches ``feature_drift`` materializations and asks for a
``daily_training_job`` run of the drifted day when the asset's dataset-level rule detected drift
(``drift_detected``; the rule is ``DriftConfig``'s), at most once per
``CRYPTO_ASSETS_DRIFT_COOLDOWN_HOURS`` (default 6).
"""

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from crypto_assets.assets.drift import DRIFT_DETECTED_METADATA_KEY, DRIFT_SHARE_METADATA_KEY, FEATURE_DRIFT_KEY
from crypto_assets.assets.evaluations import evaluation_key
from crypto_assets.assets.promotion import CHAMPION_KEY, gate_results_for_run
from crypto_assets.config_validation import check_run_config
from crypto_assets.jobs import champion_gate_job, daily_training_job
from crypto_assets.ml.families import MODEL_FAMILIES
from crypto_assets.resources import AlertWebhook
from crypto_assets.run_tags import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, RUN_KEY_TAG
from crypto_assets.settings import read_settings

TRIGGER_TAG = "crypto_assets/trigger"
DRIFT_TRIGGER = "drift"
MODEL_TAG = "crypto_assets/model"
# New materializations read per tick, newest first; only the newest day among them matters.
_FETCH_LIMIT = 100


@dataclass(frozen=True)
class DriftCursor:
    """What the sensor remembers: the last materialization it consumed and when it last asked for a run."""

    last_storage_id: int | None = None
    last_request_ts: float | None = None

    @classmethod
    def parse(cls, raw: str | None) -> "DriftCursor":
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(
                last_storage_id=None if data.get("last_storage_id") is None else int(data["last_storage_id"]),
                last_request_ts=None if data.get("last_request_ts") is None else float(data["last_request_ts"]),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"drift_retraining_sensor cursor is not valid JSON with last_storage_id / last_request_ts: {raw!r} "
                f"({exc}); "
                "reset it in the UI"
            ) from None

    def dumps(self) -> str:
        return json.dumps(
            {"last_storage_id": self.last_storage_id, "last_request_ts": self.last_request_ts}, sort_keys=True
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _metadata(record, key: str):
    entry = record.asset_materialization.metadata.get(key) if record.asset_materialization else None
    return getattr(entry, "value", entry)


def _from_drift_run(instance: dg.DagsterInstance, record) -> bool:
    """Whether a materialization came from a run this sensor requested (it must not trigger itself again)."""
    run = instance.get_run_by_id(record.run_id) if record.run_id else None
    return run is not None and run.tags.get(TRIGGER_TAG) == DRIFT_TRIGGER


def evaluate_drift(
    instance: dg.DagsterInstance, cursor: str | None, *, now: float, cooldown_hours: float
) -> dg.SensorResult:
    """The sensor's decision, with the clock and settings passed in so tests can control them."""
    state = DriftCursor.parse(cursor)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=FEATURE_DRIFT_KEY, after_storage_id=state.last_storage_id),
        limit=_FETCH_LIMIT,
        ascending=False,
    ).records
    if not records:
        return dg.SensorResult(skip_reason="No new feature_drift materialization.", cursor=state.dumps())

    consumed = DriftCursor(max(r.storage_id for r in records), state.last_request_ts)
    # The newest day wins; among materializations of that day, the newest one. Materializations
    # made by drift-triggered runs (daily_training_job includes feature_drift) are ignored, or a
    # drifted day would retrain itself again after every cooldown.
    ordered = sorted(records, key=lambda r: (r.partition_key or "", r.storage_id), reverse=True)
    latest = next((r for r in ordered if not _from_drift_run(instance, r)), None)
    if latest is None:
        return dg.SensorResult(
            skip_reason="New feature_drift materializations all come from drift-triggered runs.",
            cursor=consumed.dumps(),
        )
    day, detected, share = (
        latest.partition_key,
        _metadata(latest, DRIFT_DETECTED_METADATA_KEY),
        _metadata(latest, DRIFT_SHARE_METADATA_KEY),
    )
    if not isinstance(detected, bool) or not isinstance(share, (int, float)):
        return dg.SensorResult(
            skip_reason=(
                f"Latest feature_drift materialization ({day}) has no {DRIFT_DETECTED_METADATA_KEY!r} metadata."
            ),
            cursor=consumed.dumps(),
        )
    if not detected:
        return dg.SensorResult(
            skip_reason=f"No new drift: {day} drift share {share:.3f} is below the dataset-level rule.",
            cursor=consumed.dumps(),
        )
    if state.last_request_ts is not None and now < state.last_request_ts + cooldown_hours * 3600:
        until = state.last_request_ts + cooldown_hours * 3600
        # Keep the cursor where it was: the drift is acted on once the cooldown is over.
        return dg.SensorResult(
            skip_reason=(
                f"Drift detected on {day} (share {share:.3f}), but the retraining cooldown "
                f"is active until {_iso(until)} (last request at {_iso(state.last_request_ts)})."
            ),
            cursor=state.dumps(),
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                job_name=daily_training_job.name,
                partition_key=day,
                run_key=f"drift-{day}-{latest.storage_id}",
                tags={TRIGGER_TAG: DRIFT_TRIGGER, "crypto_assets/drift_share": f"{share:.4f}"},
            )
        ],
        cursor=DriftCursor(consumed.last_storage_id, now).dumps(),
    )


# STOPPED by default: the sensor launches training runs (compute, and candidates for promotion),
# and the first tick after a fresh deploy or a backfill would act at once on whatever drift is in
# the event log. Turn it on in the UI once the threshold suits the market being watched.
@dg.sensor(
    name="drift_retraining_sensor",
    job_name=daily_training_job.name,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Retrain the latest day when feature_drift detects drift (its dataset-level rule), "
        "at most once per CRYPTO_ASSETS_DRIFT_COOLDOWN_HOURS (default 6)."
    ),
)
def drift_retraining_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Request a daily_training_job run for the newest drifted day, at most once per cooldown."""
    return evaluate_drift(
        context.instance, context.cursor, now=time.time(), cooldown_hours=read_settings().drift_cooldown_hours
    )


def promotion_run_requests(
    instance: dg.DagsterInstance, cursor: dict[str, int]
) -> tuple[list[dg.RunRequest], dict[str, int]]:
    """Run requests for every evaluation materialized after ``cursor`` whose gates have all been evaluated.

    ``cursor`` maps model name -> last handled storage id. An evaluation whose gate checks are
    still running stops the scan for that model, so it is picked up on a later tick.
    """
    requests: list[dg.RunRequest] = []
    cursor = dict(cursor)
    # Evaluations already decided: a champion_gate_job run with the run key exists (launched by this
    # sensor's daemon, or by the quickstart as the daemon would). Per model: one training run
    # evaluates both models, and deciding one is not deciding the other.
    decided = {run.tags.get(RUN_KEY_TAG) for run in instance.get_runs(dg.RunsFilter(tags={TRIGGER_TAG: "sensor"}))}
    for family in MODEL_FAMILIES:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=evaluation_key(family), after_storage_id=cursor.get(family.name)),
            limit=100,
            ascending=True,
        ).records
        for record in records:
            gates = gate_results_for_run(instance, family.name, record.run_id)
            if any(v is None for v in gates.values()):
                break
            split_id = record.partition_key
            cursor[family.name] = record.storage_id
            run_key = f"{family.name}:{record.run_id}:{split_id}"
            if run_key in decided:
                continue
            run_config = {
                "ops": {
                    CHAMPION_KEY.path[-1]: {
                        "config": {
                            "model_name": family.name,
                            "action": "apply_gates",
                            "split_id": split_id,
                            "evaluation_run_id": record.run_id,
                        }
                    }
                }
            }
            check_run_config(run_config, champion_gate_job.name)  # a bad request fails the tick, not a run
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    job_name=champion_gate_job.name,
                    run_config=run_config,
                    tags={TRIGGER_TAG: "sensor", MODEL_TAG: family.name},
                )
            )
    return requests, cursor


@dg.sensor(
    name="champion_promotion_sensor",
    jobs=[champion_gate_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "After each model evaluation, apply its gate check results to the champion (promote or record the refusal)."
    ),
)
def champion_promotion_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One champion_gate_job run per evaluation whose gate checks have all been evaluated."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests, cursor = promotion_run_requests(context.instance, cursor)
    if not requests:
        return dg.SensorResult(skip_reason="no new evaluation with completed gates", cursor=json.dumps(cursor))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor))


def alert_message(run: dg.DagsterRun, error: str | None) -> dict:
    """What an alert says: which job, which run and partition, and the first line of the error."""
    return {
        "text": f"crypto_assets: run of {run.job_name} failed",
        "job": run.job_name,
        "run_id": run.run_id,
        "partition": run.tags.get("dagster/partition")
        or "..".join(filter(None, [run.tags.get(PARTITION_RANGE_START_TAG), run.tags.get(PARTITION_RANGE_END_TAG)])),
        "error": (error or "").strip().splitlines()[0][:300] if error else "",
    }


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Log every failed run; also post it to the alert webhook (CRYPTO_ASSETS_ALERT_WEBHOOK_URL) when set.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook) -> None:
    error = context.failure_event.message if context.failure_event else None
    message = alert_message(context.dagster_run, error)
    context.log.error(
        f"{message['text']} (run {message['run_id']}, partition {message['partition'] or '-'}): {message['error']}"
    )
    if alert_webhook.url:
        try:
            alert_webhook.post(message)
        except Exception as exc:  # an alerting outage must not hide the failure it reports
            context.log.error(f"could not post the alert to the alert webhook: {type(exc).__name__}")


sensors = [drift_retraining_sensor, champion_promotion_sensor, run_failure_alert_sensor]
