"""Starlette or FastAPI for the prediction service: the same two routes under each, the same load.

    python -m benchmarks.serving_frameworks [--requests 20000] [--concurrency 32] [--json]

FastAPI is not a dependency of the project: install it where this runs (``pip install fastapi``,
or ``pip install --target DIR fastapi`` and ``PYTHONPATH=DIR``), else this says so and stops.

Each framework serves, on uvicorn (httptools, uvloop) in its own process, what the prediction
service's hot paths do: ``GET /v1/forecasts/{coin_id}`` returns precomputed JSON behind the data's
age, computed per request; ``POST /v1/score`` validates a payload of every feature of the spec
(FastAPI: a pydantic model with one ``float | None`` field per feature, no extra fields, no NaN or
infinity; Starlette: a loop over the spec, as ``crypto_assets.serve`` does). The load generator
is ``benchmarks.serving``'s (keep-alive connections from one asyncio process on this machine).
(No ``from __future__ import annotations`` here: FastAPI must see the payload model itself.)
"""

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time

COINS = [f"coin-{i}" for i in range(20)]
WRITTEN = time.time() - 100


def _bodies() -> dict[str, bytes]:
    return {
        coin: json.dumps(
            {
                "coin_id": coin,
                "hour": "2026-12-01T22:00:00Z",
                "models": {
                    "volatility_model": {"version_id": "v3", "score": 0.12, "flagged": False},
                    "anomaly_detector": {"version_id": "v2", "score": 0.41, "flagged": False},
                },
            }
        ).encode()[1:]
        for coin in COINS
    }


def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from crypto_assets.feature_spec import FEATURE_NAMES

    bodies = _bodies()

    async def forecast(request):
        coin = request.path_params["coin_id"]
        if coin not in bodies:
            return JSONResponse({"error": "unknown coin"}, status_code=404)
        age = f'{{"data_age_s":{time.time() - WRITTEN:.1f},'.encode()
        return Response(age + bodies[coin], media_type="application/json")

    async def score(request):
        features = json.loads(await request.body()).get("features")
        unknown = [k for k in features if k not in FEATURE_NAMES]
        missing = [k for k in FEATURE_NAMES if k not in features]
        invalid = [k for k, v in features.items() if not (v is None or (type(v) in (int, float) and math.isfinite(v)))]
        if unknown or missing or invalid:
            return JSONResponse({"error": [unknown, missing, invalid]}, status_code=422)
        return JSONResponse({"score": sum(v or 0 for v in features.values())})

    return Starlette(routes=[Route("/v1/forecasts/{coin_id}", forecast), Route("/v1/score", score, methods=["POST"])])


def fastapi_app():
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import Response
    from pydantic import ConfigDict, create_model

    from crypto_assets.feature_spec import FEATURE_NAMES

    bodies = _bodies()
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    features_model = create_model("Features", __config__=config, **{n: (float | None, ...) for n in FEATURE_NAMES})
    payload_model = create_model("Payload", __config__=ConfigDict(extra="forbid"), features=(features_model, ...))
    app = FastAPI()

    @app.get("/v1/forecasts/{coin_id}")
    async def forecast(coin_id: str):
        if coin_id not in bodies:
            raise HTTPException(404, "unknown coin")
        age = f'{{"data_age_s":{time.time() - WRITTEN:.1f},'.encode()
        return Response(age + bodies[coin_id], media_type="application/json")

    @app.post("/v1/score")
    async def score(payload: payload_model):  # type: ignore[valid-type]
        return {"score": sum(v or 0 for v in payload.features.model_dump().values())}

    return app


def serve_here(framework: str, port: int) -> None:
    import uvicorn

    app = starlette_app() if framework == "starlette" else fastapi_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", choices=("starlette", "fastapi"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_here(args.serve, args.port)
        return 0
    try:
        import fastapi  # noqa: F401
    except ImportError:
        print("FastAPI is not installed here: pip install fastapi (it is not a dependency of crypto_assets)")
        return 1
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import httpx

    from benchmarks.serving import drive, percentile, request_bytes, uptime
    from crypto_assets.feature_spec import FEATURE_NAMES

    payload = json.dumps({"features": dict.fromkeys(FEATURE_NAMES, 0.5)}).encode()
    results = {}
    for offset, framework in enumerate(("starlette", "fastapi")):
        port = 3990 + offset
        command = [sys.executable, "-m", "benchmarks.serving_frameworks", "--serve", framework, "--port", str(port)]
        server = subprocess.Popen(command)
        try:
            for _ in range(200):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/v1/forecasts/coin-1", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            load = uptime()
            get = [("get", request_bytes("GET", f"/v1/forecasts/{COINS[i % 20]}")) for i in range(args.requests)]
            post = [("post", request_bytes("POST", "/v1/score", payload))] * (args.requests // 2)
            for label, mix in (("get", get), ("post", post)):
                outcome = asyncio.run(drive(port, mix, args.concurrency if label == "get" else 8, expect=b"{"))
                latencies = outcome["latencies"][label]
                results[f"{framework}_{label}"] = {
                    "rps": round(len(latencies) / outcome["seconds"]),
                    "p50_ms": round(percentile(latencies, 0.5), 2),
                    "p99_ms": round(percentile(latencies, 0.99), 2),
                    "errors": sum(outcome["errors"].values()),
                    "uptime": load,
                }
        finally:
            server.terminate()
            server.wait(timeout=15)
    print(f"{'framework, route':<34}{'requests/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for key, r in results.items():
        print(f"{key:<34}{r['rps']:>11,}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}   {r['uptime']}")
    for label in ("get", "post"):
        ratio = results[f"fastapi_{label}"]["rps"] / results[f"starlette_{label}"]["rps"] - 1
        print(f"FastAPI vs Starlette, {label}: {ratio:+.0%} requests/s")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
