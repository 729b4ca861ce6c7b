"""The prediction service: the champions' forecasts over HTTP, answered from memory.

``python -m crypto_assets.serve [--host 127.0.0.1] [--port 3002] [--snapshot PATH] [--access-log]``

Routes (JSON unless said otherwise):

- ``GET /health``: liveness, the newest scored hour and its age, and ``degraded`` with the reasons
  (stale data, the snapshot or the warehouse file missing or unreadable, a model not served);
- ``GET /version``: each model's champion: version, kind (a baseline champion of last resort is
  marked), since when, how it became champion and its gate evidence in one line;
- ``GET /v1/forecasts`` and ``GET /v1/forecasts/{coin_id}``: each model's champion output for the
  latest scored hour (score — the volatility spike probability, the anomaly score — and flag, with
  the version that produced it), the hour and the data's age; ``?hours=N`` for the N latest hours
  (1 ≤ N ≤ ``CRYPTO_ASSETS_SERVING_HISTORY_HOURS``), ``?model=NAME`` for one model;
- ``POST /v1/score``: scores one coin-hour from ``{"features": {name: number or null, ...}}``
  (every feature of the spec, nothing else; ``coin_id`` and ``partition_hour`` may come along and
  are echoed) with each champion, or ``?model=NAME``'s, through ``crypto_assets.ml.scoring.score_rows``,
  the function batch scoring calls;
- ``GET /metrics``: Prometheus text: requests and latency by route, the champions as info, the
  data's and the snapshot's age, whether the service is degraded.

Errors are ``{"error": {"status", "message", ...}}`` and never carry a stack trace: an unknown coin
is a 404 that says how many coins are known, a model without a champion a 503 with the reason, bad
parameters or payloads a 422 naming what is wrong, a body over 16 KiB a 413.

**Never blocks the pipeline, never waits for it.** DuckDB allows one process per file, and a run
writes it every hour, so the service never opens the warehouse while it serves. It answers from an
in-memory copy of the serving snapshot (``crypto_assets/serving_snapshot.py``), a small file the
pipeline replaces atomically after each scoring run and each champion decision. A thread polls the
file's identity (inode, mtime, size) every 0.5 s; on a change it reads the file once, checks each
champion artifact's sha256 before unpickling it (an artifact whose sha256 is the one already loaded
is not unpickled again), precomputes the common responses, and swaps the whole in-memory state in
one assignment, so a request sees the old snapshot or the new one, never a mix. A promotion is
visible in ``/version`` within about a second. When the file goes missing or cannot be read, the
service keeps serving the last good snapshot, every response says its age, and ``/health`` says
``degraded`` and why. At start, if there is no snapshot yet and the warehouse can be opened
read-only at once, it builds one (``python -m crypto_assets.serving_snapshot`` does the same by
hand).

**Why Starlette on uvicorn, not FastAPI.** Measured (``benchmarks/serving_frameworks.py``: the
service's two hot paths under each framework, the same uvicorn with httptools and uvloop, the same
load generator beside it on this 2-core machine), three times at load averages of 6.8 to 10.5 from
other work: the route returning precomputed JSON answered 4,020–8,651 requests/s with Starlette
and 29–54% fewer with FastAPI 0.165 (last run: 5,891 vs 2,737); the route validating a 53-feature
payload 46–56% fewer (2,756 vs 1,277). FastAPI's dependency injection and pydantic models cost
more per request than the whole handler does here, and the validation this API needs (unknown
and missing features named, non-finite values refused) is a loop over the feature spec either
way. Starlette comes with dagster-webserver (the same pinned version); FastAPI would add a
dependency for an OpenAPI page.

**Who may ask.** It binds 127.0.0.1 unless ``--host`` says otherwise. With
``CRYPTO_ASSETS_API_TOKEN`` set (read once at start, never logged or returned), every route but
``/health`` requires ``Authorization: Bearer <token>``, compared in constant time; 401 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from crypto_assets.feature_spec import FEATURE_NAMES, FEATURE_SPEC_VERSION
from crypto_assets.serving_snapshot import SnapshotFile, build_from_warehouse, read_snapshot
from crypto_assets.settings import (
    API_STALE_AFTER_ENV,
    API_TOKEN_ENV,
    SERVING_HISTORY_HOURS_ENV,
    SettingsError,
    read_api_token,
    read_settings,
)

log = logging.getLogger("crypto_assets.serve")

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 3002
POLL_INTERVAL_S = 0.5
MAX_BODY_BYTES = 16 * 1024
OPEN_PATHS = frozenset({"/health"})  # every other route needs the token, when one is set
HISTORY_CACHE_BYTES = 32 * 1024 * 1024  # responses of ?hours=N / ?model= kept per snapshot, at most this much
SCORE_BODY_KEYS = frozenset({"features", "coin_id", "partition_hour"})
_FEATURE_SET = frozenset(FEATURE_NAMES)
_HOURS = re.compile(r"^[0-9]{1,4}$")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiError(Exception):
    """An answer other than 200: the status, a message for people, and fields for programs."""

    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def _names(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


# --- the in-memory snapshot --------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """A model's champion as served: its manifest entry and its model, unpickled after its sha256 was checked."""

    name: str
    champion: dict
    score_meaning: str
    model: Any  # a crypto_assets.ml.models.FittedModel

    def header(self) -> dict:
        return {
            "champion": self.champion["version_id"],
            "is_baseline": self.champion["is_baseline"],
            "score": self.score_meaning,
        }


@dataclass
class ServingState:
    """One loaded snapshot. Never changed after it is built (but for its response cache): replaced whole."""

    written_at: float  # epoch seconds
    loaded_at: float
    warehouse: str | None
    feature_spec_version: str
    history_hours: int
    model_names: tuple[str, ...]
    served: dict[str, ServedModel]
    not_served: dict[str, str]
    hours: list[str]  # scored hours, newest first
    latest_hour_end: float | None  # epoch seconds at which the newest scored hour ended
    rows: dict[str, dict[str, dict]]  # hour -> coin -> {coin_id, symbol, hour, <model>: {...}}
    coins: frozenset[str]
    latest_body: bytes = b""  # GET /v1/forecasts after the ages
    latest_by_coin: dict[str, bytes] = field(default_factory=dict)
    version_body: bytes = b""
    cache: dict = field(default_factory=dict)
    cache_bytes: int = 0

    def data_age(self, now: float) -> float | None:
        return None if self.latest_hour_end is None else now - self.latest_hour_end

    def ages(self, now: float) -> bytes:
        """The start of every snapshot response: the data's and the snapshot's age, computed per request."""
        age = self.data_age(now)
        data_age = "null" if age is None else f"{age:.1f}"
        return f'{{"data_age_s":{data_age},"snapshot_age_s":{now - self.written_at:.1f},'.encode()

    def forecast_payload(self, coin: str | None, hours: int, model: str | None) -> dict:
        names = [model] if model else [n for n in self.model_names if n in self.served]
        rows = []
        for hour in self.hours[:hours]:
            by_coin = self.rows[hour]
            for row in [by_coin.get(coin)] if coin else by_coin.values():
                outputs = [(n, row[n]) for n in names if row is not None and n in row]
                if outputs:
                    rows.append({"coin_id": row["coin_id"], "symbol": row["symbol"], "hour": hour, **dict(outputs)})
        payload = {
            "hour": self.hours[0] if self.hours else None,
            "hours": min(hours, len(self.hours)),
            "models": {n: self.served[n].header() for n in names},
            "not_served": {} if model else self.not_served,
        }
        if coin is not None:
            payload["coin_id"] = coin
        payload["forecasts"] = rows
        return payload

    def forecast_body(self, coin: str | None, hours: int, model: str | None) -> bytes:
        """The JSON after the ages: precomputed for the latest hour, cached per snapshot for the rest."""
        if hours == 1 and model is None:
            return self.latest_by_coin[coin] if coin is not None else self.latest_body
        key = (coin, hours, model)
        body = self.cache.get(key)
        if body is None:
            body = _dumps(self.forecast_payload(coin, hours, model))[1:]
            if self.cache_bytes + len(body) > HISTORY_CACHE_BYTES:
                self.cache.clear()
                self.cache_bytes = 0
            self.cache[key] = body
            self.cache_bytes += len(body)
        return body


def build_state(snapshot: SnapshotFile, previous: ServingState | None, loaded_at: float) -> ServingState:
    """The in-memory state of a snapshot; a champion whose artifact is the one already loaded is reused."""
    manifest = snapshot.manifest
    served, not_served, names = {}, {}, []
    for entry in manifest["models"]:
        name = entry["model_name"]
        names.append(name)
        champion = entry.get("champion")
        if not champion:
            not_served[name] = entry.get("not_served") or "no champion"
            continue
        known = previous.served.get(name) if previous is not None else None
        if known is not None and known.champion["artifact_sha256"] == champion["artifact_sha256"]:
            model = known.model  # the same bytes, verified when they were first loaded
        else:
            model = single_threaded(snapshot.load_model(name))  # read_snapshot checked the bytes' sha256
        served[name] = ServedModel(name, champion, entry["score_meaning"], model)
    columns = manifest["forecast_columns"]
    at = {c: i for i, c in enumerate(columns)}
    rows: dict[str, dict[str, dict]] = {}
    for record in manifest["forecasts"]:
        name, coin, hour = record[at["model_name"]], record[at["coin_id"]], record[at["hour"]]
        row = rows.setdefault(hour, {}).get(coin)
        if row is None:
            row = rows[hour][coin] = {"coin_id": coin, "symbol": record[at["symbol"]]}
        row[name] = {
            "version_id": record[at["version_id"]],
            "score": record[at["score"]],
            "flagged": record[at["flagged"]],
            "scored_at": record[at["scored_at"]],
        }
    hours = sorted(rows, reverse=True)
    latest = _epoch(hours[0]) if hours else None
    state = ServingState(
        written_at=_epoch(manifest["written_at"]),
        loaded_at=loaded_at,
        warehouse=manifest.get("warehouse"),
        feature_spec_version=manifest["feature_spec_version"],
        history_hours=int(manifest["history_hours"]),
        model_names=tuple(names),
        served=served,
        not_served=not_served,
        hours=hours,
        latest_hour_end=None if latest is None else latest + 3600.0,
        rows=rows,
        coins=frozenset(coin for by_coin in rows.values() for coin in by_coin),
    )
    state.latest_body = _dumps(state.forecast_payload(None, 1, None))[1:]
    state.latest_by_coin = {coin: _dumps(state.forecast_payload(coin, 1, None))[1:] for coin in state.coins}
    state.version_body = _dumps(
        {
            "snapshot_written_at": manifest["written_at"],
            "feature_spec_version": manifest["feature_spec_version"],
            "models": {
                name: {"champion": _public_champion(served[name].champion), "score": served[name].score_meaning}
                if name in served
                else {"champion": None, "not_served": not_served[name]}
                for name in names
            },
        }
    )[1:]
    return state


def single_threaded(model):
    """The model, its estimator set to predict on one thread (``n_jobs=1``; the scores do not change).

    The service scores one row at a time, where a thread pool costs more than it saves: LightGBM
    trained with ``n_jobs=2`` took 8 ms (p99 16 ms) for one row on the loaded 2-core machine, and
    0.7 ms on one thread.
    """
    estimator = getattr(model, "estimator", None)
    if hasattr(estimator, "get_params") and hasattr(estimator, "set_params"):
        threads = {k: 1 for k in estimator.get_params(deep=True) if k == "n_jobs" or k.endswith("__n_jobs")}
        if threads:
            estimator.set_params(**threads)
    return model


def _public_champion(champion: dict) -> dict:
    keys = (
        "version_id",
        "kind",
        "is_baseline",
        "since",
        "trigger",
        "evidence",
        "trained_on",
        "created_at",
        "feature_spec_version",
        "artifact_sha256",
    )
    return {k: champion.get(k) for k in keys}


class SnapshotWatcher:
    """Keeps the latest good snapshot in memory: polls the file, loads it when it changes, says what is wrong."""

    def __init__(
        self, path: Path, *, stale_after_s: float, poll_s: float = POLL_INTERVAL_S, database: str | None = None
    ):
        self.path, self.stale_after_s, self.poll_s, self.database = Path(path), stale_after_s, poll_s, database
        self.state: ServingState | None = None
        self.problem: str | None = None  # why the file on disk is not what is served
        self.warehouse_missing = False
        self.on_load: Callable[[str, ServingState | None], None] | None = None
        self._key: object = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Build a snapshot if there is none and the warehouse opens at once, load it, then poll in a thread."""
        if not self.path.exists() and self.database and Path(self.database).exists():
            try:
                build_from_warehouse(self.database, self.path, wait_s=0.0)
                log.info("no serving snapshot at %s: built one from the warehouse %s", self.path, self.database)
            except Exception as exc:  # noqa: BLE001 - the pipeline writes one on its next scoring run or decision
                log.warning("no serving snapshot at %s, and none built from the warehouse: %s", self.path, exc)
        self.poll()
        self._thread = threading.Thread(target=self._run, name="snapshot-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # never let the watcher die: the next poll tries again
                log.exception("snapshot poll failed")

    def poll(self) -> None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if self._key != "missing":
                log.warning("the serving snapshot %s is missing; serving the last good one", self.path)
                self._notify("missing")
            self._key, self.problem = "missing", "the snapshot file is missing"
        except OSError as exc:
            self._key, self.problem = "unreadable", f"the snapshot file cannot be read ({exc.strerror})"
        else:
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            if key != self._key:
                self._key = key
                self._load()
        warehouse = self.state.warehouse if self.state is not None else None
        self.warehouse_missing = bool(warehouse) and not os.path.exists(warehouse)

    def _load(self) -> None:
        started = time.monotonic()
        try:
            state = build_state(read_snapshot(self.path), self.state, loaded_at=time.time())
        except Exception as exc:  # noqa: BLE001 - unreadable, refused or not unpicklable: keep the last good one
            self.problem = f"the snapshot file could not be loaded ({type(exc).__name__}: {exc})"
            log.warning("serving snapshot %s not loaded: %s; serving the last good one", self.path, self.problem)
            self._notify("failed")
            return
        self.state, self.problem = state, None  # one assignment: requests see the old state or the new one
        champions = ", ".join(f"{n} {m.champion['version_id']}" for n, m in state.served.items()) or "none"
        log.info(
            "serving snapshot loaded in %.0f ms: latest hour %s, %d coins, champions %s",
            (time.monotonic() - started) * 1000,
            state.hours[0] if state.hours else "none",
            len(state.coins),
            champions,
        )
        self._notify("loaded")

    def _notify(self, outcome: str) -> None:
        if self.on_load is not None:
            self.on_load(outcome, self.state)

    def degraded_reasons(self, now: float) -> list[str]:
        state = self.state
        if state is None:
            return [f"no snapshot loaded yet: {self.problem or 'the pipeline has not written one'}"]
        reasons = []
        if self.problem:
            reasons.append(
                f"{self.problem}; serving the last good snapshot, written {now - state.written_at:.0f} s ago"
            )
        if self.warehouse_missing:
            reasons.append("the warehouse file this snapshot was written from is missing")
        if state.feature_spec_version != FEATURE_SPEC_VERSION:
            reasons.append(
                f"the snapshot's feature spec {state.feature_spec_version} is not this service's "
                f"{FEATURE_SPEC_VERSION}: run the service from the pipeline's code"
            )
        age = state.data_age(now)
        if age is None:
            reasons.append("no scored hour in the snapshot yet")
        elif age > self.stale_after_s:
            reasons.append(
                f"stale data: the newest scored hour ended {age:.0f} s ago "
                f"(more than {API_STALE_AFTER_ENV}={self.stale_after_s:g})"
            )
        reasons.extend(f"{name} not served: {why}" for name, why in state.not_served.items())
        return reasons


# --- HTTP -------------------------------------------------------------------------------------


def error_body(status: int, message: str, **details: Any) -> bytes:
    return _dumps({"error": {"status": status, "message": message, **details}})


def _json_response(body: bytes, status: int = 200, headers: dict | None = None):
    from starlette.responses import Response

    return Response(body, status_code=status, media_type="application/json", headers=headers)


class ServiceMetrics:
    """The Prometheus metrics of one app (its own registry, so two apps in a process never clash)."""

    def __init__(self, watcher: SnapshotWatcher):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self._requests = Counter(
            "crypto_assets_api_requests",
            "HTTP requests answered, by route, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "crypto_assets_api_request_duration_seconds",
            "Time from request to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._champion = Info(
            "crypto_assets_api_champion",
            "The champion each model serves, from the loaded snapshot.",
            ["model"],
            registry=self.registry,
        )
        self._loads = Counter(
            "crypto_assets_api_snapshot_loads",
            "Snapshot files read, by outcome (loaded, failed, missing).",
            ["outcome"],
            registry=self.registry,
        )

        def data_age() -> float:
            age = watcher.state.data_age(time.time()) if watcher.state is not None else None
            return math.nan if age is None else age

        def snapshot_age() -> float:
            return math.nan if watcher.state is None else time.time() - watcher.state.written_at

        Gauge(
            "crypto_assets_api_data_age_seconds", "Seconds since the newest scored hour ended.", registry=self.registry
        ).set_function(data_age)
        Gauge(
            "crypto_assets_api_snapshot_age_seconds",
            "Seconds since the pipeline wrote the snapshot being served.",
            registry=self.registry,
        ).set_function(snapshot_age)
        Gauge(
            "crypto_assets_api_degraded", "1 when /health says degraded, else 0.", registry=self.registry
        ).set_function(lambda: float(bool(watcher.degraded_reasons(time.time()))))
        self._children: dict[tuple, tuple] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(route, method, str(status)),
                self._latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def snapshot_event(self, outcome: str, state: ServingState | None) -> None:
        self._loads.labels(outcome).inc()
        if outcome == "loaded" and state is not None:
            for name in state.model_names:
                served = state.served.get(name)
                champion = served.champion if served else {}
                self._champion.labels(name).info(
                    {
                        "version_id": champion.get("version_id", "none"),
                        "kind": champion.get("kind", "none"),
                        "since": champion.get("since") or "none",
                    }
                )

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every request by its route template (``/v1/forecasts/{coin_id}``, not the coin)."""

    def __init__(self, app, metrics: ServiceMetrics, routes: list):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            self.metrics.observe(
                route.path if route is not None else self._route_of(scope),
                scope["method"],
                status,
                time.perf_counter() - started,
            )

    def _route_of(self, scope) -> str:
        """The route a request that never reached the router (a 401) was for."""
        from starlette.routing import Match

        for route in self.routes:
            if route.matches(scope)[0] is not Match.NONE:
                return route.path
        return "unmatched"


class BearerTokenMiddleware:
    """Every path but ``OPEN_PATHS`` needs ``Authorization: Bearer <token>``, compared in constant time."""

    def __init__(self, app, token: str):
        self.app, self._expected = app, token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        given = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        if given is None:
            message = "missing bearer token: send the header 'Authorization: Bearer <token>'"
        else:
            scheme, _, credentials = given.partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._expected):
                return await self.app(scope, receive, send)
            message = "invalid bearer token"
        response = _json_response(
            error_body(401, message), 401, headers={"WWW-Authenticate": 'Bearer realm="crypto_assets"'}
        )
        await response(scope, receive, send)


def _query(request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, refusing unknown and repeated ones."""
    if not request.scope["query_string"]:
        return {}
    params = request.query_params
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "none"
        raise ApiError(
            422, f"unknown query parameter(s): {_names(unknown)}; this route takes: {takes}", unknown=unknown
        )
    repeated = [k for k in allowed if len(params.getlist(k)) > 1]
    if repeated:
        raise ApiError(422, f"query parameter(s) given more than once: {', '.join(repeated)}")
    return dict(params)


def _hours(raw: str | None, bound: int) -> int:
    if raw is None:
        return 1
    if not _HOURS.match(raw) or not 1 <= int(raw) <= bound:
        raise ApiError(
            422,
            f"hours must be a whole number from 1 to {bound} ({SERVING_HISTORY_HOURS_ENV}), got {raw[:40]!r}",
            parameter="hours",
        )
    return int(raw)


def _model(state: ServingState, raw: str | None) -> str | None:
    """The model a request names (None: all served), or the error: unknown (422), or without a champion (503)."""
    if raw is None:
        if not state.served:
            reasons = "; ".join(f"{n}: {why}" for n, why in state.not_served.items())
            raise ApiError(503, f"no model has a champion to serve: {reasons}", not_served=state.not_served)
        return None
    if raw not in state.model_names:
        raise ApiError(
            422, f"unknown model {raw[:80]!r}: the models are {', '.join(state.model_names)}", parameter="model"
        )
    if raw not in state.served:
        raise ApiError(503, f"{raw} has no champion to serve: {state.not_served[raw]}", model=raw)
    return raw


async def _read_body(request, limit: int) -> bytes:
    too_large = ApiError(413, f"the request body is larger than {limit} bytes", limit_bytes=limit)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _is_number(value) -> bool:
    if type(value) not in (int, float):  # bool is not a number here, and neither is a string
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def parse_score_payload(body: bytes) -> tuple[list[float], dict]:
    """The feature values in spec order (None as NaN) and the echoed fields, or a 422 naming what is wrong."""
    try:
        payload = json.loads(body, parse_constant=float)  # NaN and Infinity parse, then fail as non-finite
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, f"the body is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("features"), dict):
        raise ApiError(
            422, 'the body must be a JSON object with a "features" object: {"features": {"ret_1h": 0.01, ...}}'
        )
    extra = sorted(set(payload) - SCORE_BODY_KEYS)
    if extra:
        raise ApiError(
            422, f"unknown field(s) in the body: {_names(extra)}; it takes: {', '.join(sorted(SCORE_BODY_KEYS))}"
        )
    features = payload["features"]
    unknown = sorted(k for k in features if k not in _FEATURE_SET)
    missing = [k for k in FEATURE_NAMES if k not in features]
    invalid = [k for k in FEATURE_NAMES if k in features and features[k] is not None and not _is_number(features[k])]
    if unknown or missing or invalid:
        problems = []
        if unknown:
            problems.append(f"unknown features: {_names(unknown)}")
        if missing:
            problems.append(f"missing features: {_names(missing)}")
        if invalid:
            problems.append(f"non-numeric or non-finite values: {_names(invalid)}")
        raise ApiError(
            422,
            "; ".join(problems) + f" (feature spec {FEATURE_SPEC_VERSION}: every feature, a finite number or null)",
            unknown_features=unknown[:100],
            missing_features=missing,
            invalid_features=invalid,
        )
    echo = {}
    coin = payload.get("coin_id")
    if coin is not None:
        if not isinstance(coin, str) or not 0 < len(coin) <= 200:
            raise ApiError(422, "coin_id must be a string of 1 to 200 characters")
        echo["coin_id"] = coin
    hour = payload.get("partition_hour")
    if hour is not None:
        try:
            datetime.fromisoformat(hour)
        except (TypeError, ValueError):
            raise ApiError(422, "partition_hour must be an ISO 8601 time, e.g. 2026-12-01T10:00:00Z") from None
        echo["partition_hour"] = hour
    values = [math.nan if features[name] is None else float(features[name]) for name in FEATURE_NAMES]
    return values, echo


def score_one(models: list[ServedModel], values: list[float]) -> dict[str, dict]:
    """Each model's score and flag for one coin-hour, through the batch-scoring code path (``score_rows``).

    Runs on the service's one scoring thread (scoring holds the GIL: more threads would only
    queue). scikit-learn's input checks are skipped (``assume_finite``,
    ``skip_parameter_validation``): the payload was checked against the spec already, finite numbers
    or null (NaN, imputed by the models as in batch). The IsolationForest is scored tree by tree
    without joblib (``crypto_assets/ml/isolation_forest.py``), as in batch.
    """
    import numpy as np
    import pandas as pd
    import sklearn

    from crypto_assets.ml.scoring import score_rows

    frame = pd.DataFrame(np.array([values], dtype=float), columns=FEATURE_NAMES)
    results = {}
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for served in models:
            scores, flags = score_rows(served.model, frame)
            score = float(scores[0])
            results[served.name] = {
                "version_id": served.champion["version_id"],
                "is_baseline": served.champion["is_baseline"],
                "score": score if math.isfinite(score) else None,
                "flagged": bool(flags[0]),
                "score_meaning": served.score_meaning,
            }
    return results


def create_app(
    snapshot_path: str | Path,
    *,
    token: str | None = None,
    stale_after_s: float | None = None,
    poll_s: float = POLL_INTERVAL_S,
    database: str | None = None,
):
    """The ASGI app serving ``snapshot_path``; ``database``: the warehouse to build a missing snapshot from at start."""
    import contextlib

    import pandas  # noqa: F401 - imported now, not on the first request
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.responses import Response
    from starlette.routing import Route

    watcher = SnapshotWatcher(
        Path(snapshot_path),
        stale_after_s=read_settings().api_stale_after_s if stale_after_s is None else stale_after_s,
        poll_s=poll_s,
        database=database,
    )
    metrics = ServiceMetrics(watcher)
    watcher.on_load = metrics.snapshot_event
    scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="score")  # see score_one

    def current() -> ServingState:
        state = watcher.state
        if state is None:
            raise ApiError(503, f"no snapshot loaded yet: {watcher.problem or 'the pipeline has not written one'}")
        return state

    async def health(request):
        now = time.time()
        state = watcher.state
        reasons = watcher.degraded_reasons(now)
        body = {
            "status": "degraded" if reasons else "ok",
            "degraded": bool(reasons),
            "reasons": reasons,
            "newest_scored_hour": state.hours[0] if state and state.hours else None,
            "data_age_s": None if state is None or state.data_age(now) is None else round(state.data_age(now), 1),
            "snapshot_age_s": None if state is None else round(now - state.written_at, 1),
            "snapshot_loaded_age_s": None if state is None else round(now - state.loaded_at, 1),
            "champions": {} if state is None else {n: m.champion["version_id"] for n, m in state.served.items()},
        }
        return _json_response(_dumps(body))

    async def version(request):
        _query(request, ())
        state = current()
        return _json_response(state.ages(time.time()) + state.version_body)

    async def forecasts(request):
        state = current()
        params = _query(request, ("hours", "model"))
        coin = request.path_params.get("coin_id")
        if coin is not None and coin not in state.coins:
            raise ApiError(
                404,
                f"unknown coin {coin[:80]!r}: {len(state.coins)} coins are known "
                f"(those scored in the latest {len(state.hours)} hours)",
                known_coins=len(state.coins),
            )
        hours = _hours(params.get("hours"), state.history_hours)
        model = _model(state, params.get("model"))
        return _json_response(state.ages(time.time()) + state.forecast_body(coin, hours, model))

    async def score(request):
        state = current()
        params = _query(request, ("model",))
        values, echo = parse_score_payload(await _read_body(request, MAX_BODY_BYTES))
        if state.feature_spec_version != FEATURE_SPEC_VERSION:
            raise ApiError(
                503,
                f"the champions read feature spec {state.feature_spec_version}; this service validates "
                f"{FEATURE_SPEC_VERSION}: run it from the pipeline's code",
            )
        model = _model(state, params.get("model"))
        chosen = [state.served[model]] if model else list(state.served.values())
        results = await asyncio.get_running_loop().run_in_executor(scorer, score_one, chosen, values)
        body = {**echo, "feature_spec_version": FEATURE_SPEC_VERSION, "scores": results}
        return _json_response(state.ages(time.time()) + _dumps(body)[1:])

    async def prometheus(request):
        _query(request, ())
        payload, content_type = metrics.exposition()
        return Response(payload, media_type=content_type)

    async def api_error(request, exc: ApiError):
        return _json_response(error_body(exc.status, exc.message, **exc.details), exc.status)

    async def http_error(request, exc: HTTPException):
        message = {404: "no such route", 405: "method not allowed on this route"}.get(exc.status_code, str(exc.detail))
        return _json_response(error_body(exc.status_code, message), exc.status_code, headers=exc.headers)

    async def server_error(request, exc: Exception):
        log.error("internal error answering %s %s", request.method, request.url.path, exc_info=exc)
        return _json_response(error_body(500, "internal error; the service's log has the details"), 500)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(watcher.start)
        try:
            yield
        finally:
            watcher.stop()
            scorer.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/v1/forecasts", forecasts, methods=["GET"]),
        Route("/v1/forecasts/{coin_id}", forecasts, methods=["GET"]),
        Route("/v1/score", score, methods=["POST"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
    middleware = [Middleware(MetricsMiddleware, metrics=metrics, routes=routes)]
    if token:
        middleware.append(Middleware(BearerTokenMiddleware, token=token))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.watcher = watcher
    return app


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Serve the champions' forecasts over HTTP (see the module docstring of crypto_assets.serve)."
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)"
    )
    parser.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="the serving snapshot (default: CRYPTO_ASSETS_SERVING_SNAPSHOT_PATH, else beside the warehouse)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = read_settings()
        token = read_api_token()
    except SettingsError as exc:  # one line naming the variable, never its value
        parser.exit(2, f"crypto_assets.serve: {exc}\n")
    if token is None and not _is_loopback(args.host):
        log.warning("listening on %s without %s: anyone who can reach it may ask", args.host, API_TOKEN_ENV)

    import uvicorn

    snapshot = args.snapshot or settings.snapshot_path_for(settings.duckdb_path)
    app = create_app(snapshot, token=token, stale_after_s=settings.api_stale_after_s, database=settings.duckdb_path)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    host, port = sock.getsockname()[:2]
    print(
        f"serving predictions on http://{host}:{port} from {snapshot} "
        f"(bearer token {'required' if token else 'not required'}: {API_TOKEN_ENV})",
        flush=True,
    )
    config = uvicorn.Config(
        app, log_level="info", access_log=args.access_log, server_header=False, timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
