"""The prediction service over real HTTP: ``python -m crypto_assets.serve`` on 127.0.0.1, as a subprocess.

The warehouse is the prepared synthetic market with two anomaly detector versions and one
volatility model version trained on it (the quick recipes of ``test_promotion``), the detector's v1
champion, the volatility model without a champion, and 2026-03-14 scored: the scoring asset wrote
the serving snapshot beside the warehouse, as the pipeline does. Tests that change the warehouse or
the snapshot get their own copy and their own service.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from crypto_assets import serving_snapshot
from crypto_assets.assets import serving
from crypto_assets.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from crypto_assets.settings import SettingsError, default_serving_snapshot_path, read_api_token, read_settings
from crypto_assets.warehouse import Warehouse

from .conftest import private_copy
from .test_promotion import DAY, QUICK, champion_run, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-" + "k3Jx9qLm2vWz8RtY"  # a test value, not a secret
LATEST_HOUR = "2026-03-14T23:00:00Z"
COINS = 20  # the synthetic universe
START_TIMEOUT_S = 90
NOT_STALE = "1e10"  # the prepared market is from March 2026: months old


class Service:
    """``python -m crypto_assets.serve`` on a free port of 127.0.0.1, its output collected."""

    def __init__(self, snapshot: Path, database: Path, env: dict[str, str] | None = None):
        environment = {
            **os.environ,
            "CRYPTO_ASSETS_DUCKDB_PATH": str(database),
            "CRYPTO_ASSETS_API_STALE_AFTER_S": NOT_STALE,
            **(env or {}),
        }
        environment.pop("CRYPTO_ASSETS_SERVING_SNAPSHOT_PATH", None)
        if "CRYPTO_ASSETS_API_TOKEN" not in (env or {}):
            environment.pop("CRYPTO_ASSETS_API_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crypto_assets.serve", "--port", "0", "--snapshot", str(snapshot)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._port: int | None = None
        self._announced = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._announced.wait(START_TIMEOUT_S) or self._port is None:
            self.stop()
            raise AssertionError(f"the service did not start: {self.output()[-3000:]}")
        self.url = f"http://127.0.0.1:{self._port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise AssertionError(f"the service never answered /health: {self.output()[-3000:]}")
            time.sleep(0.2)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("serving predictions on http://127.0.0.1:"):
                self._port = int(line.split("http://127.0.0.1:")[1].split()[0])
                self._announced.set()
        self._announced.set()

    def output(self) -> str:
        return "".join(self.lines)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kwargs)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def wait_for(condition, timeout_s: float, what: str):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s`` saying ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def score_day(warehouse: Warehouse, instance: dg.DagsterInstance) -> None:
    for asset in serving.scoring_assets:
        assert dg.materialize([asset], instance=instance, partition_key=DAY, resources={"warehouse": warehouse}).success


def register_fitted(warehouse: Warehouse, name: str, params: dict) -> str:
    """Fit a family's recipe on the 7 days up to DAY and register it, without the walk-forward evaluation (cheap)."""
    from crypto_assets import registry
    from crypto_assets.ml.families import FAMILIES_BY_NAME
    from crypto_assets.training_data import load_rows

    family = FAMILIES_BY_NAME[name]
    start, end = datetime(2026, 3, 8), datetime(2026, 3, 15)
    with warehouse.connect() as conn:
        rows = family.usable_rows(load_rows(conn, start, end))
        version, _ = registry.register_version(
            conn,
            model_name=name,
            model=family.fit(rows, params),
            features=list(family.features),
            params=params,
            lineage=registry.Lineage(
                split_id=DAY,
                feature_spec_version=FEATURE_SPEC_VERSION,
                train_start=start,
                train_end=end,
                training_frame_sha256=f"{name}-{sorted(params.items())}",  # one version per recipe here
            ),
            metrics={},
            run_id=None,
        )
    return version.version_id


@pytest.fixture(scope="session")
def serving_database(prepared_database: Path, tmp_path_factory) -> Path:
    """The prepared market: anomaly detector v1 (evaluated, champion) and v2, volatility v1 (no champion), scored."""
    warehouse = private_copy(prepared_database, tmp_path_factory.mktemp("serving"))
    with dg.instance_for_test() as instance:
        train_and_evaluate(warehouse, instance, "anomaly_detector", day=DAY)
        assert register_fitted(warehouse, "anomaly_detector", {**QUICK["anomaly_detector"], "random_state": 3}) == "v2"
        assert register_fitted(warehouse, "volatility_model", QUICK["volatility_model"]) == "v1"
        assert champion_run(
            warehouse, instance, model_name="anomaly_detector", action="promote", version="v1", reason="serve tests"
        ).success
        score_day(warehouse, instance)
    database = Path(warehouse.database)
    assert default_serving_snapshot_path(str(database)).exists(), "the scoring asset did not write the snapshot"
    return database


def own_copy(serving_database: Path, folder: Path) -> tuple[Warehouse, Path]:
    """A private copy of the serving warehouse, and its own snapshot beside it."""
    warehouse = private_copy(serving_database, folder)
    snapshot = default_serving_snapshot_path(warehouse.database)
    serving_snapshot.build_from_warehouse(warehouse.database, snapshot)
    return warehouse, snapshot


@pytest.fixture(scope="module")
def service(serving_database: Path) -> Service:
    """One service with a token, on the shared warehouse; tests here only read."""
    running = Service(
        default_serving_snapshot_path(str(serving_database)),
        serving_database,
        env={"CRYPTO_ASSETS_API_TOKEN": TOKEN},
    )
    yield running
    running.stop()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def feature_row(database: Path, coin: str, hour: str) -> dict:
    conn = duckdb.connect(str(database), read_only=True)
    try:
        row = conn.execute(
            f"SELECT {', '.join(FEATURE_NAMES)} FROM features.coin_features WHERE coin_id = ? AND partition_hour = ?",
            [coin, hour.rstrip("Z")],
        ).fetchone()
        batch = conn.execute(
            "SELECT model_name, version_id, score, flagged FROM serving.model_scores "
            "WHERE coin_id = ? AND partition_hour = ? AND role = 'champion'",
            [coin, hour.rstrip("Z")],
        ).fetchall()
    finally:
        conn.close()
    features = {
        name: None if value is None or math.isnan(value) else value
        for name, value in zip(FEATURE_NAMES, row, strict=True)
    }
    return {"features": features, "batch": {name: (version, score, flagged) for name, version, score, flagged in batch}}


def test_every_route_answers_from_the_snapshot(service: Service, serving_database: Path):
    health = service.get("/health")  # open: no token
    assert health.status_code == 200
    body = health.json()
    assert body["newest_scored_hour"] == LATEST_HOUR and body["data_age_s"] > 0
    assert body["champions"] == {"anomaly_detector": "v1"}
    assert body["degraded"] and any(
        r.startswith("volatility_model not served: no volatility_model champion") for r in body["reasons"]
    )

    version = service.get("/version", headers=AUTH).json()
    champion = version["models"]["anomaly_detector"]["champion"]
    assert (champion["version_id"], champion["kind"], champion["is_baseline"], champion["trigger"]) == (
        "v1",
        "model",
        False,
        "manual",
    )
    assert champion["since"].endswith("Z") and "beats_baseline vs zscore: pr_auc" in champion["evidence"]
    assert "\n" not in champion["evidence"] and 'reason: "serve tests"' in champion["evidence"]
    assert version["models"]["volatility_model"] == {
        "champion": None,
        "not_served": "no volatility_model champion yet (train, evaluate and promote one first)",
    }
    assert version["snapshot_age_s"] >= 0

    latest = service.get("/v1/forecasts", headers=AUTH).json()
    assert latest["hour"] == LATEST_HOUR and latest["hours"] == 1 and latest["data_age_s"] > 0
    assert len(latest["forecasts"]) == COINS and latest["models"]["anomaly_detector"]["champion"] == "v1"
    assert "volatility_model" in latest["not_served"]
    conn = duckdb.connect(str(serving_database), read_only=True)
    stored = dict(
        conn.execute(
            "SELECT coin_id, score FROM serving.model_scores WHERE role = 'champion' AND partition_hour = ?",
            [LATEST_HOUR.rstrip("Z")],
        ).fetchall()
    )
    conn.close()
    assert {f["coin_id"]: f["anomaly_detector"]["score"] for f in latest["forecasts"]} == stored
    assert all(f["anomaly_detector"]["version_id"] == "v1" and "volatility_model" not in f for f in latest["forecasts"])

    one = service.get("/v1/forecasts/bitcoin", headers=AUTH).json()
    assert one["coin_id"] == "bitcoin" and [f["coin_id"] for f in one["forecasts"]] == ["bitcoin"]
    assert isinstance(one["forecasts"][0]["anomaly_detector"]["flagged"], bool)
    history = service.get("/v1/forecasts/bitcoin", params={"hours": 3}, headers=AUTH).json()
    assert [f["hour"] for f in history["forecasts"]] == [
        "2026-03-14T23:00:00Z",
        "2026-03-14T22:00:00Z",
        "2026-03-14T21:00:00Z",
    ]
    everything = service.get("/v1/forecasts", params={"hours": 168, "model": "anomaly_detector"}, headers=AUTH)
    assert everything.status_code == 200 and len(everything.json()["forecasts"]) == 24 * COINS  # one scored day

    metrics = service.get("/metrics", headers=AUTH)
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'crypto_assets_api_requests_total{method="GET",route="/v1/forecasts/{coin_id}",status="200"} 2.0' in text
    assert 'crypto_assets_api_request_duration_seconds_bucket{le="0.005",route="/v1/forecasts"}' in text
    assert 'crypto_assets_api_champion_info{kind="model",model="anomaly_detector"' in text and 'version_id="v1"' in text
    assert "crypto_assets_api_data_age_seconds " in text and "crypto_assets_api_degraded 1.0" in text


def test_errors_are_json_that_say_why_and_never_a_stack_trace(service: Service):
    cases = [
        ("/v1/forecasts/no-such-coin", {}, 404, f"unknown coin 'no-such-coin': {COINS} coins are known"),
        ("/v1/forecasts", {"hours": "0"}, 422, "hours must be a whole number from 1 to 168"),
        ("/v1/forecasts", {"hours": "169"}, 422, "hours must be a whole number from 1 to 168"),
        ("/v1/forecasts", {"hours": "1.5"}, 422, "hours must be a whole number"),
        ("/v1/forecasts/bitcoin", {"hours": "-3"}, 422, "hours must be a whole number"),
        ("/v1/forecasts", {"hour": "2"}, 422, "unknown query parameter(s): hour; this route takes: hours, model"),
        ("/v1/forecasts", {"model": "weather"}, 422, "unknown model 'weather': the models are anomaly_detector"),
        ("/v1/forecasts", {"model": "volatility_model"}, 503, "volatility_model has no champion to serve: no "),
        ("/version", {"verbose": "1"}, 422, "unknown query parameter(s): verbose; this route takes: none"),
        ("/v2/forecasts", {}, 404, "no such route"),
    ]
    for path, params, status, message in cases:
        response = service.get(path, params=params, headers=AUTH)
        assert response.status_code == status, (path, params, response.text)
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["status"] == status and message in error["message"], (path, error)
        assert "Traceback" not in response.text and 'File "' not in response.text
    assert service.get("/v1/forecasts/no-such-coin", headers=AUTH).json()["error"]["known_coins"] == COINS
    repeated = service.get("/v1/forecasts?hours=2&hours=3", headers=AUTH)
    assert repeated.status_code == 422 and "more than once: hours" in repeated.json()["error"]["message"]
    assert service.post("/v1/forecasts", headers=AUTH).status_code == 405
    payload = {"features": dict.fromkeys(FEATURE_NAMES, 0.0)}
    no_champion = service.post("/v1/score", params={"model": "volatility_model"}, json=payload, headers=AUTH)
    assert no_champion.status_code == 503
    assert "no volatility_model champion yet" in no_champion.json()["error"]["message"]


def test_score_validates_the_payload_against_the_feature_spec(service: Service):
    good = dict.fromkeys(FEATURE_NAMES, 0.1)

    def score(body: bytes | str, **kwargs) -> httpx.Response:
        return service.post("/v1/score", content=body, headers={**AUTH, "content-type": "application/json"}, **kwargs)

    unknown_and_missing = {k: v for k, v in good.items() if k not in ("ret_1h", "rsi_14")} | {"moon_phase": 1.0}
    response = score(json.dumps({"features": unknown_and_missing}))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["unknown_features"] == ["moon_phase"] and error["missing_features"] == ["ret_1h", "rsi_14"]
    assert "unknown features: moon_phase; missing features: ret_1h, rsi_14" in error["message"]

    for value in ("NaN", "Infinity", "-Infinity", "1e999", '"0.5"', "true", "[1]", "{}"):
        body = json.dumps({"features": {**good, "ret_1h": "PLACEHOLDER"}}).replace('"PLACEHOLDER"', value)
        response = score(body)
        assert response.status_code == 422, (value, response.text)
        assert response.json()["error"]["invalid_features"] == ["ret_1h"], value
        assert "non-numeric or non-finite values: ret_1h" in response.json()["error"]["message"]

    for body, message in [
        ("{not json", "the body is not valid JSON"),
        ("[1, 2]", 'a JSON object with a "features" object'),
        (json.dumps({"features": good, "threshold": 0.1}), "unknown field(s) in the body: threshold"),
        (json.dumps({"features": good, "partition_hour": "yesterday"}), "partition_hour must be an ISO 8601 time"),
        (json.dumps({"features": good, "coin_id": 7}), "coin_id must be a string"),
    ]:
        response = score(body)
        assert response.status_code == 422 and message in response.json()["error"]["message"], (body, response.text)
    assert score(json.dumps({"features": good}), params={"modell": "x"}).status_code == 422

    oversized = json.dumps({"features": good, "coin_id": "x" * 20_000})
    response = score(oversized)
    assert response.status_code == 413 and "larger than 16384 bytes" in response.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit holds on what arrives
        for _ in range(40):
            yield b" " * 1024

    chunked = httpx.post(service.url + "/v1/score", content=chunks(), headers=AUTH, timeout=10)
    assert chunked.status_code == 413

    nulls = score(json.dumps({"features": {**good, "parkinson_6h_vs_p90_168h": None}}))  # NULL in the warehouse too
    assert nulls.status_code == 200 and set(nulls.json()["scores"]) == {"anomaly_detector"}


def test_an_on_demand_score_is_the_batch_score(service: Service, serving_database: Path):
    for coin, hour in [("bitcoin", LATEST_HOUR), ("solana", "2026-03-14T05:00:00Z")]:
        row = feature_row(serving_database, coin, hour)
        response = service.post(
            "/v1/score", json={"coin_id": coin, "partition_hour": hour, "features": row["features"]}, headers=AUTH
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["coin_id"] == coin and body["partition_hour"] == hour and body["feature_spec_version"]
        served = body["scores"]["anomaly_detector"]
        version, score, flagged = row["batch"]["anomaly_detector"]
        assert (served["version_id"], served["flagged"]) == (version, flagged)
        assert served["score"] == pytest.approx(score, abs=1e-12)
    one = service.post(
        "/v1/score", params={"model": "anomaly_detector"}, json={"features": row["features"]}, headers=AUTH
    )
    assert one.status_code == 200 and list(one.json()["scores"]) == ["anomaly_detector"]


def test_the_token_guards_every_route_but_health(service: Service):
    routes = [("GET", "/version"), ("GET", "/v1/forecasts"), ("GET", "/v1/forecasts/bitcoin"), ("GET", "/metrics")]
    routes.append(("POST", "/v1/score"))
    for method, path in routes:
        for headers, message in [
            ({}, "missing bearer token"),
            ({"Authorization": "Bearer wrong-token-of-some-length"}, "invalid bearer token"),
            ({"Authorization": f"Basic {TOKEN}"}, "invalid bearer token"),
            ({"Authorization": f"Bearer {TOKEN}x"}, "invalid bearer token"),
        ]:
            response = httpx.request(method, service.url + path, headers=headers, timeout=10)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["message"].startswith(message)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in response.text
        allowed = httpx.request(
            method, service.url + path, headers=AUTH, json={"features": dict.fromkeys(FEATURE_NAMES, 0.0)}, timeout=10
        )
        assert allowed.status_code == 200, (method, path, allowed.text)
        assert TOKEN not in allowed.text and TOKEN not in str(allowed.headers)
    assert service.get("/health").status_code == 200
    assert 'route="/version",status="401"} 4.0' in service.get("/metrics", headers=AUTH).text
    assert TOKEN not in service.output()


def test_a_promotion_or_rollback_shows_in_version_within_5_seconds(serving_database: Path, tmp_path: Path):
    warehouse, snapshot = own_copy(serving_database, tmp_path)
    snapshot.unlink()  # the service builds it from the (readable) warehouse at start
    running = Service(snapshot, Path(warehouse.database))
    try:
        assert snapshot.exists() and "built one from the warehouse" in running.output()

        def champion(name: str = "anomaly_detector"):
            entry = running.get("/version").json()["models"][name]
            return entry["champion"]["version_id"] if entry["champion"] else None

        assert champion() == "v1"
        with dg.instance_for_test() as instance:
            for name, version, action in [
                ("anomaly_detector", "v2", "promote"),
                ("volatility_model", "v1", "promote"),
                ("anomaly_detector", "v1", "rollback"),
            ]:
                assert champion_run(
                    warehouse, instance, model_name=name, action=action, version=version, reason="switch test"
                ).success
                decided = time.monotonic()  # the decision is committed and the snapshot written
                wait_for(lambda n=name, v=version: champion(n) == v, 5.0, f"{name} {version} in /version")
                assert time.monotonic() - decided < 5.0
            rolled_back = running.get("/version").json()["models"]["anomaly_detector"]["champion"]
            assert rolled_back["trigger"] == "rollback" and "rolled_back (rollback)" in rolled_back["evidence"]
            health = running.get("/health").json()
            assert not health["degraded"], health["reasons"]  # both models served, data fresh enough for this test
            assert running.get("/v1/forecasts", params={"model": "volatility_model"}).json()["forecasts"] == []

            score_day(warehouse, instance)  # the volatility champion's first scores reach the service too
            wait_for(
                lambda: running.get("/v1/forecasts", params={"model": "volatility_model"}).json()["forecasts"],
                5.0,
                "volatility forecasts",
            )
        forecast = running.get("/v1/forecasts/bitcoin").json()["forecasts"][0]
        spike = forecast["volatility_model"]
        assert spike["version_id"] == "v1" and 0.0 <= spike["score"] <= 1.0 and isinstance(spike["flagged"], bool)
        row = feature_row(Path(warehouse.database), "bitcoin", LATEST_HOUR)
        on_demand = running.post("/v1/score", json={"features": row["features"]}).json()["scores"]
        for name in ("anomaly_detector", "volatility_model"):  # IsolationForest and LightGBM, one row each
            version, score, flagged = row["batch"][name]
            assert on_demand[name]["version_id"] == version and on_demand[name]["flagged"] == flagged
            assert on_demand[name]["score"] == pytest.approx(score, abs=1e-12)
            assert forecast[name]["score"] == pytest.approx(score, abs=1e-12)
    finally:
        running.stop()


HOLD_WAREHOUSE = textwrap.dedent(
    """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1])  # a write connection: DuckDB locks the file for this process
    conn.execute("BEGIN TRANSACTION")
    conn.execute("DELETE FROM serving.model_scores WHERE partition_hour < TIMESTAMP '2000-01-01'")
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.execute("COMMIT")
    conn.close()
    """
)


def test_serving_goes_on_while_a_run_holds_the_warehouse(serving_database: Path, tmp_path: Path):
    warehouse, snapshot = own_copy(serving_database, tmp_path)
    running = Service(snapshot, Path(warehouse.database))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WAREHOUSE, warehouse.database, "6"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException, match="(?i)lock"):  # the file really is held
            duckdb.connect(warehouse.database, read_only=True)
        payload = {"features": feature_row(serving_database, "bitcoin", LATEST_HOUR)["features"]}
        started = time.monotonic()
        slowest = 0.0
        with httpx.Client(base_url=running.url, timeout=5) as client:
            for i in range(150):
                asked = time.monotonic()
                if i % 10 == 0:
                    response = client.post("/v1/score", json=payload)
                else:
                    response = client.get("/v1/forecasts/bitcoin" if i % 2 else "/v1/forecasts")
                slowest = max(slowest, time.monotonic() - asked)
                assert response.status_code == 200, response.text
        assert holder.poll() is None, "the writer let go before the requests were done"
        assert time.monotonic() - started < 6 and slowest < 1.0
    finally:
        holder.wait(timeout=30)
        running.stop()
    assert holder.returncode == 0


def test_degraded_when_the_snapshot_or_warehouse_goes_missing_serving_the_last_snapshot(
    serving_database: Path, tmp_path: Path
):
    warehouse, snapshot = own_copy(serving_database, tmp_path)
    good = snapshot.read_bytes()
    running = Service(snapshot, Path(warehouse.database), env={"CRYPTO_ASSETS_API_STALE_AFTER_S": "7200"})
    try:
        before = running.get("/v1/forecasts").json()
        health = running.get("/health").json()
        assert health["degraded"] and any(
            r.startswith("stale data: the newest scored hour ended") for r in health["reasons"]
        )

        def reasons():
            return running.get("/health").json()["reasons"]

        snapshot.unlink()
        missing = wait_for(
            lambda: next((r for r in reasons() if r.startswith("the snapshot file is missing")), None), 5, "missing"
        )
        assert "serving the last good snapshot, written" in missing and " s ago" in missing
        after = running.get("/v1/forecasts").json()
        assert after["forecasts"] == before["forecasts"] and after["snapshot_age_s"] >= before["snapshot_age_s"]
        assert running.get("/version").status_code == 200

        Path(warehouse.database).rename(tmp_path / "moved.duckdb")
        wait_for(
            lambda: "the warehouse file this snapshot was written from is missing" in reasons(), 5, "warehouse missing"
        )

        snapshot.write_bytes(b"not a zip file")
        unreadable = wait_for(
            lambda: next((r for r in reasons() if "could not be loaded" in r), None), 5, "unreadable snapshot"
        )
        assert "SnapshotError" in unreadable and "serving the last good snapshot" in unreadable

        # A snapshot whose artifact does not match its recorded sha256 is refused before unpickling.
        tampered = tmp_path / "tampered.zip"
        with zipfile.ZipFile(io.BytesIO(good)) as source, zipfile.ZipFile(tampered, "w") as archive:
            for item in source.infolist():
                data = source.read(item)
                archive.writestr(item, data + b"\x00" if item.filename.endswith(".pkl") else data)
        os.replace(tampered, snapshot)
        refused = wait_for(lambda: next((r for r in reasons() if "sha256" in r), None), 5, "tampered snapshot refused")
        assert "refusing to unpickle it" in refused
        assert running.get("/v1/forecasts").json()["forecasts"] == before["forecasts"]

        (tmp_path / "moved.duckdb").rename(warehouse.database)
        restored = tmp_path / "restored.zip"
        restored.write_bytes(good)
        os.replace(restored, snapshot)
        wait_for(lambda: not any("snapshot file" in r or "warehouse file" in r for r in reasons()), 5, "recovered")
    finally:
        running.stop()


def test_the_snapshot_is_bounded_and_refuses_a_tampered_artifact(serving_database: Path, tmp_path: Path):
    conn = duckdb.connect(str(serving_database), read_only=True)
    try:
        manifest = serving_snapshot.write_snapshot(conn, tmp_path / "three.zip", history_hours=3)
    finally:
        conn.close()
    hours = sorted({row[3] for row in manifest["forecasts"]}, reverse=True)
    assert hours == ["2026-03-14T23:00:00Z", "2026-03-14T22:00:00Z", "2026-03-14T21:00:00Z"]
    assert len(manifest["forecasts"]) == 3 * COINS and manifest["latest_hour"] == LATEST_HOUR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["three.zip"]  # no temporary file left behind
    loaded = serving_snapshot.read_snapshot(tmp_path / "three.zip")
    assert type(loaded.load_model("anomaly_detector")).__name__ == "AnomalyModel"
    assert "volatility_model" not in loaded.artifacts


def test_serving_settings_are_validated_and_the_token_never_shown():
    with pytest.raises(SettingsError, match="CRYPTO_ASSETS_API_TOKEN must be at least 16") as short:
        read_api_token({"CRYPTO_ASSETS_API_TOKEN": "hunter2"})
    assert "hunter2" not in str(short.value)
    assert read_api_token({"CRYPTO_ASSETS_API_TOKEN": TOKEN}) == TOKEN and read_api_token({}) is None
    for name, value in [
        ("CRYPTO_ASSETS_SERVING_HISTORY_HOURS", "0"),
        ("CRYPTO_ASSETS_SERVING_HISTORY_HOURS", "a week"),
        ("CRYPTO_ASSETS_API_STALE_AFTER_S", "nan"),
        ("CRYPTO_ASSETS_API_URL", "localhost:3002"),
    ]:
        with pytest.raises(SettingsError, match=name):
            read_settings({name: value})
    settings = read_settings({"CRYPTO_ASSETS_API_TOKEN": TOKEN, "CRYPTO_ASSETS_DUCKDB_PATH": "/data/w.duckdb"})
    assert settings.api_token_set and TOKEN not in repr(settings)
    assert settings.snapshot_path_for("/data/w.duckdb") == Path("/data/w.serving-snapshot.zip")
