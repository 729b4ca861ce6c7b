import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg

from crypto_assets import registry
from crypto_assets.resources import build_resources
from crypto_assets.run_tags import RUN_KEY_TAG
from crypto_assets.sensors import champion_promotion_sensor, run_failure_alert_sensor

from .test_promotion import DAY, champion_run, train_and_evaluate


def test_promotion_sensor_requests_one_gate_run_per_completed_evaluation(prepared_warehouse, home_instance):
    """On the repo's SQLite instance and on the production PostgreSQL instance."""
    instance = home_instance
    empty = champion_promotion_sensor(dg.build_sensor_context(instance=instance))
    assert not empty.run_requests and "no new evaluation" in empty.skip_reason.skip_message

    assert train_and_evaluate(prepared_warehouse, instance).success
    context = dg.build_sensor_context(instance=instance)
    result = champion_promotion_sensor(context)
    (request,) = result.run_requests
    assert request.job_name == "champion_gate_job"
    config = request.run_config["ops"]["model_champions"]["config"]
    assert (config["model_name"], config["action"], config["split_id"]) == ("anomaly_detector", "apply_gates", DAY)
    assert request.tags["crypto_assets/trigger"] == "sensor"

    # The cursor moves past it: the next tick asks for nothing new.
    again = champion_promotion_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor))
    assert not again.run_requests

    # Running what it asked for, as the daemon does (with the request's tags and run key), promotes the candidate.
    assert champion_run(
        prepared_warehouse, instance, tags={**request.tags, RUN_KEY_TAG: request.run_key}, **config
    ).success
    with prepared_warehouse.connect() as conn:
        assert registry.champion(conn, "anomaly_detector").version_id == "v1"

    # A sensor starting from scratch (a new deployment) does not decide the same evaluation twice.
    fresh = champion_promotion_sensor(dg.build_sensor_context(instance=instance))
    assert not fresh.run_requests


class _Capture(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Capture.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_failed_runs_are_logged_and_posted_to_the_webhook(instance, monkeypatch):
    @dg.op
    def explode():
        raise RuntimeError("disk on fire\nsecond line")

    @dg.job
    def doomed():
        explode()

    result = doomed.execute_in_process(
        instance=instance, raise_on_error=False, tags={"dagster/partition": "2026-03-14"}
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CRYPTO_ASSETS_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_port}/hook")
    try:
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alert_sensor",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            # as the code location binds it: the URL comes from the environment at run time
            resources={"alert_webhook": build_resources()["alert_webhook"]},
        ).for_run_failure()
        run_failure_alert_sensor(context)
    finally:
        server.shutdown()
    (message,) = _Capture.received
    assert message["job"] == "doomed" and message["run_id"] == result.run_id
    assert message["partition"] == "2026-03-14"
    assert "explode" in message["error"] or "failed" in message["error"]
