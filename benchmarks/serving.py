"""The prediction service under load while the pipeline writes, and how soon a promotion shows.

    python -m benchmarks.serving [--days 21] [--requests 100000] [--concurrency 8] [--json]

1. Fills a warehouse as the quickstart does (``crypto_assets.quickstart.populate``, ``--days`` days
   of the synthetic market: ingest, label, train, the promotion sensor's decisions, score), in a
   temporary folder with its own DAGSTER_HOME (the repo's dagster.yaml), DuckDB file and serving
   snapshot; a model the sensor refused is promoted by hand (``promote_model_job``) so both serve.
   Then one more anomaly detector candidate (split, walk-forward, gates) for the day before, which
   stays a candidate: the version promoted midway.
2. Starts ``python -m crypto_assets.serve`` as a subprocess on a free port of 127.0.0.1.
3. Drives the forecast routes (``/v1/forecasts``, ``/v1/forecasts/{coin_id}``, ``...?hours=24``,
   4:4:2) with ``--requests`` requests over ``--concurrency`` keep-alive connections from one
   asyncio client process on this machine (a minimal HTTP/1.1 client on uvloop: measured at twice
   aiohttp's requests/s on these 2 cores, so the load generator takes less of the CPU it shares with
   the service). As the load starts, two runs start in their own processes (loaded beforehand, as
   the daemon's run workers are): ``hourly_ingest_and_score_job`` for the day the hourly schedule
   would run (the day holding the hour that just ended), and ``promote_model_job`` for that
   candidate; they take turns on the DuckDB file, so the promotion lands while the hourly run
   writes (where it landed in the load is printed). A poller asks ``/version`` every 100 ms: the
   champion switch is the time from the promotion event's commit
   (``registry.promotion_events.created_at``) to the first ``/version`` naming it.
4. ``POST /v1/score`` with a real feature row, ``--score-requests`` requests from 2 clients
   (scoring is CPU-bound in one process: clients queue behind each other, so latency grows with
   their number; 2 means one request waits while one is scored).

Prints a table, and with ``--json`` one final JSON line: requests, rps, p50_ms, p99_ms, errors,
champion_switch_s, during_writes (whether a run wrote while the load ran), score_p99_ms, and more.
Nothing is asserted: the figures are reported as measured, with the machine's load (``uptime``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWAP_MODEL = "anomaly_detector"
TARGETS = {"rps": 1500, "p99_ms": 20.0, "champion_switch_s": 5.0, "score_p99_ms": 20.0}
SCORE_CLIENTS = 2
LOADED_SAMPLE = 'crypto_assets_api_snapshot_loads_total{outcome="loaded"}'


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# --- a job run in its own process -----------------------------------------------------------------


def run_job_here(job: str, partition: str | None, run_config: str | None) -> None:
    """``--run-job``: execute one job against DAGSTER_HOME's instance and print one JSON line about it."""
    import dagster as dg

    from crypto_assets.definitions import defs

    print("ready", flush=True)  # the code location is loaded: the run starts the moment "go" arrives
    sys.stdin.readline()
    started = time.time()
    result = defs.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=partition,
        run_config=json.loads(run_config) if run_config else None,
        raise_on_error=False,
    )
    print(json.dumps({"run_id": result.run_id, "success": result.success, "started": started, "ended": time.time()}))


class JobProcess:
    """A job run in its own process, as the daemon launches one: started ahead, it runs when told to ``go``."""

    def __init__(self, job: str, env: dict, log: Path, *, partition: str | None = None, run_config: dict | None = None):
        command = [sys.executable, "-m", "benchmarks.serving", "--run-job", job]
        if partition:
            command += ["--partition", partition]
        if run_config:
            command += ["--run-config", json.dumps(run_config)]
        self.job = job
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"), text=True
        )
        self.went: float | None = None

    def wait_ready(self) -> None:
        line = self.process.stdout.readline().strip()  # bounded: the process exits on any import error
        if line != "ready":
            raise SystemExit(f"{self.job} did not start: {line!r}; see its log")

    def go(self) -> None:
        self.went = time.time()
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def result(self, timeout_s: float = 600) -> dict:
        if self.went is None:
            self.go()
        out, _ = self.process.communicate(timeout=timeout_s)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {"success": False, "run_id": None}


def write_spans(home: Path, run_id: str) -> list[tuple[float, float]]:
    """(start, end) of each step of a run that opens the warehouse (all of them do), from its event log."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        starts, spans = {}, []
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                starts[event.step_key] = entry.timestamp
            elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
                spans.append((starts.pop(event.step_key), entry.timestamp))
    return spans


# --- the fill --------------------------------------------------------------------------------------


def fill(folder: Path, days: int) -> dict:
    """The quickstart's runs, both models serving, and one more anomaly detector candidate; returns what it made."""
    import dagster as dg

    from crypto_assets import registry
    from crypto_assets.assets import candidates, evaluations, splits
    from crypto_assets.definitions import defs
    from crypto_assets.ml.families import FAMILIES_BY_NAME, MODEL_FAMILIES
    from crypto_assets.quickstart import LAUNCHED_BY_TAG, Launcher, populate, split_day
    from crypto_assets.warehouse import Warehouse

    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    populate(instance, days)
    warehouse = Warehouse(database=os.environ["CRYPTO_ASSETS_DUCKDB_PATH"])
    promoted_by_hand = []
    with warehouse.connect() as conn:
        without = [f.name for f in MODEL_FAMILIES if registry.champion(conn, f.name) is None]
    for name in without:  # refused by its gates on this short window: served anyway, to measure both
        config = {"model_name": name, "action": "promote", "version": "latest", "reason": "benchmark: serve both"}
        Launcher(instance).run(
            "promote_model_job",
            name,
            tags={LAUNCHED_BY_TAG: "benchmarks.serving"},
            run_config={"ops": {"model_champions": {"config": config}}},
        )
        promoted_by_hand.append(name)
    before = (datetime.strptime(split_day(), "%Y-%m-%d") - timedelta(days=1)).strftime("%Y-%m-%d")
    family = FAMILIES_BY_NAME[SWAP_MODEL]
    chosen = [
        a
        for a in [splits.training_splits, *candidates.candidate_assets, *evaluations.evaluation_assets]
        if a.key in (splits.training_splits.key, candidates.candidate_key(family), evaluations.evaluation_key(family))
    ]
    dg.materialize(chosen, instance=instance, partition_key=before, resources=defs.resources, raise_on_error=False)
    with warehouse.connect() as conn:
        champion = registry.champion(conn, SWAP_MODEL).version_id
        latest = registry.resolve(conn, SWAP_MODEL, "latest").version_id
        champions = {f.name: registry.champion(conn, f.name).version_id for f in MODEL_FAMILIES}
    return {
        "fill_s": time.monotonic() - started,
        "promoted_by_hand": promoted_by_hand,
        "champions": champions,
        "swap_from": champion,
        "swap_to": latest,
    }


def feature_payload(database: str) -> dict:
    """The newest scored coin-hour's features, as a POST /v1/score body."""
    import math

    import duckdb

    from crypto_assets.feature_spec import FEATURE_NAMES

    conn = duckdb.connect(database, read_only=True)
    try:
        row = conn.execute(
            f"SELECT coin_id, partition_hour, {', '.join(FEATURE_NAMES)} FROM features.coin_features "
            "ORDER BY partition_hour DESC, coin_id LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    coin, hour, *values = row
    features = {n: None if v is None or math.isnan(v) else v for n, v in zip(FEATURE_NAMES, values, strict=True)}
    return {"coin_id": coin, "partition_hour": hour.isoformat() + "Z", "features": features}


# --- the load ----------------------------------------------------------------------------------------


def request_bytes(method: str, path: str, body: bytes | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Connection:
    """One keep-alive HTTP/1.1 connection: send a request, read the status and a Content-Length body."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def ask(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            at = head.lower().find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at)]) if at >= 0 else 0
            body = await self.reader.readexactly(length)
            if b"connection: close" in head.lower():
                self.close()
            return status, body
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(
    port: int, requests: list[tuple[str, bytes]], concurrency: int, expect: bytes = b'{"data_age_s":'
) -> dict:
    """Send every request (route label, bytes) over ``concurrency`` connections; latency of each, and errors.

    An error is a status other than 200, a body not starting with ``expect``, a timeout or a broken connection.
    """
    results: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    queue = iter(requests)

    async def client():
        connection = Connection(port)
        for label, request in queue:
            asked = time.perf_counter()
            try:
                async with asyncio.timeout(10):
                    status, body = await connection.ask(request)
                ok = status == 200 and body.startswith(expect)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
                connection.close()
            results.setdefault(label, []).append(time.perf_counter() - asked)
            if not ok:
                errors[label] = errors.get(label, 0) + 1
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"seconds": time.perf_counter() - started, "latencies": results, "errors": errors}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def poll_version(port: int, model: str, version: str, stop: asyncio.Event, deadline_s: float) -> float | None:
    """The time.time() at which /version first names ``version`` as ``model``'s champion (None: not by the deadline)."""
    connection = Connection(port)
    request = request_bytes("GET", "/version")
    ends = time.monotonic() + deadline_s
    try:
        while time.monotonic() < ends:
            try:
                status, body = await connection.ask(request)
                champion = json.loads(body)["models"][model]["champion"] if status == 200 else None
                if champion and champion["version_id"] == version:
                    return time.time()
            except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
                connection.close()
            if stop.is_set() and time.monotonic() > ends:
                break
            await asyncio.sleep(0.1)
        return None
    finally:
        connection.close()


def metric(text: str, sample: str) -> float:
    """The value of one sample (name and labels, as exposed) in Prometheus text; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=21, help="days of the synthetic market to fill (default 21)")
    parser.add_argument(
        "--requests",
        type=int,
        default=100_000,
        help="forecast requests (default 100,000: about 40 s here, long enough for the hourly run and the "
        "promotion, which takes its turn on the DuckDB file, to land inside the load)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--score-requests", type=int, default=2_000, help="POST /v1/score requests (default 2,000)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--run-job", help=argparse.SUPPRESS)  # internal: one job run in this process
    parser.add_argument("--partition", help=argparse.SUPPRESS)
    parser.add_argument("--run-config", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_job:
        run_job_here(args.run_job, args.partition, args.run_config)
        return 0
    if not (1 <= args.concurrency <= 256 and 1 <= args.requests <= 1_000_000 and 1 <= args.score_requests <= 100_000):
        parser.error("--concurrency 1..256, --requests 1..1,000,000, --score-requests 1..100,000")

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    import httpx

    from crypto_assets.instance import prepare_home

    folder = Path(tempfile.mkdtemp(prefix="serving-benchmark-"))
    home = prepare_home(folder / "dagster_home", "local")
    snapshot = folder / "serving-snapshot.zip"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_DEPLOYMENT": "local",
        "CRYPTO_ASSETS_SOURCE": "synthetic",
        "CRYPTO_ASSETS_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        "CRYPTO_ASSETS_SERVING_SNAPSHOT_PATH": str(snapshot),
        "CRYPTO_ASSETS_REPORTS_DIR": str(folder / "reports"),
    }
    env.pop("CRYPTO_ASSETS_API_TOKEN", None)
    os.environ.update(env)
    load_at_start = uptime()
    print(f"filling {args.days} days in {folder} ({load_at_start})", flush=True)
    made = fill(folder, args.days)
    payload = json.dumps(feature_payload(env["CRYPTO_ASSETS_DUCKDB_PATH"])).encode()
    print(
        f"filled in {made['fill_s']:.1f}s: champions {made['champions']}"
        + (f" ({', '.join(made['promoted_by_hand'])} promoted by hand)" if made["promoted_by_hand"] else "")
        + f"; {SWAP_MODEL} {made['swap_to']} waits as a candidate",
        flush=True,
    )

    service = subprocess.Popen(
        [sys.executable, "-m", "crypto_assets.serve", "--port", "0", "--snapshot", str(snapshot)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service_log: list[str] = []
    announced = threading.Event()
    port_holder: list[int] = []

    def read_service():
        for line in service.stdout:
            service_log.append(line)
            if line.startswith("serving predictions on http://127.0.0.1:"):
                port_holder.append(int(line.split("http://127.0.0.1:")[1].split()[0]))
                announced.set()
        announced.set()

    threading.Thread(target=read_service, daemon=True).start()
    try:
        if not announced.wait(120) or not port_holder:
            raise SystemExit("the service did not start:\n" + "".join(service_log)[-3000:])
        port = port_holder[0]
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        coins = sorted({f["coin_id"] for f in httpx.get(f"{base}/v1/forecasts", timeout=10).json()["forecasts"]})
        loads_before = metric(httpx.get(f"{base}/metrics", timeout=10).text, LOADED_SAMPLE)

        mix = []
        for i in range(args.requests):
            coin = coins[i % len(coins)]
            kind = i % 10
            if kind < 4:
                mix.append(("GET /v1/forecasts", request_bytes("GET", "/v1/forecasts")))
            elif kind < 8:
                mix.append(("GET /v1/forecasts/{coin_id}", request_bytes("GET", f"/v1/forecasts/{coin}")))
            else:
                mix.append(
                    ("GET /v1/forecasts/{coin_id}?hours=24", request_bytes("GET", f"/v1/forecasts/{coin}?hours=24"))
                )

        hourly_day = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%d")  # what the hourly schedule runs
        promote_config = {
            "ops": {
                "model_champions": {
                    "config": {
                        "model_name": SWAP_MODEL,
                        "action": "promote",
                        "version": made["swap_to"],
                        "reason": "benchmark: promoted midway through the load",
                    }
                }
            }
        }

        hourly = JobProcess("hourly_ingest_and_score_job", env, folder / "hourly.log", partition=hourly_day)
        promote = JobProcess("promote_model_job", env, folder / "promote.log", run_config=promote_config)
        hourly.wait_ready()
        promote.wait_ready()

        async def load_phase():
            stop = asyncio.Event()
            poller = asyncio.create_task(poll_version(port, SWAP_MODEL, made["swap_to"], stop, deadline_s=300))
            outcome = await drive(port, mix, args.concurrency)
            stop.set()
            return outcome, await poller

        load_started = time.time()
        hourly.go()  # both take their turn on the DuckDB file, as the queue's runs do
        promote.go()
        forecast, visible_at = asyncio.run(load_phase())
        load_ended = load_started + forecast["seconds"]
        load_during = uptime()
        hourly_run = hourly.result()
        promotion_run = promote.result()
        loads_after = metric(httpx.get(f"{base}/metrics", timeout=10).text, LOADED_SAMPLE)

        score_mix = [("POST /v1/score", request_bytes("POST", "/v1/score", payload))] * args.score_requests
        scoring = asyncio.run(drive(port, score_mix, SCORE_CLIENTS))
        load_at_end = uptime()
    finally:
        service.terminate()
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            service.kill()
        (folder / "service.log").write_text("".join(service_log))

    import duckdb

    conn = duckdb.connect(env["CRYPTO_ASSETS_DUCKDB_PATH"], read_only=True)
    decided = conn.execute(
        "SELECT max(created_at) FROM registry.promotion_events "
        "WHERE model_name = ? AND to_version = ? AND trigger = 'manual'",
        [SWAP_MODEL, made["swap_to"]],
    ).fetchone()[0]
    conn.close()
    decided_at = decided.replace(tzinfo=UTC).timestamp() if decided else None
    switch_s = visible_at - decided_at if visible_at and decided_at else None
    spans = [s for run in (hourly_run, promotion_run) if run.get("run_id") for s in write_spans(home, run["run_id"])]
    during_writes = any(start < load_ended and end > load_started for start, end in spans)
    hourly_spans = write_spans(home, hourly_run["run_id"]) if hourly_run.get("run_id") else []

    all_latencies = [v for values in forecast["latencies"].values() for v in values]
    errors = sum(forecast["errors"].values())
    score_latencies = scoring["latencies"].get("POST /v1/score", [])
    summary = {
        "requests": len(all_latencies),
        "rps": round(len(all_latencies) / forecast["seconds"], 1),
        "p50_ms": round(percentile(all_latencies, 0.50), 2),
        "p99_ms": round(percentile(all_latencies, 0.99), 2),
        "errors": errors,
        "champion_switch_s": None if switch_s is None else round(switch_s, 2),
        "during_writes": during_writes,
        "score_p99_ms": round(percentile(score_latencies, 0.99), 2),
        "score_p50_ms": round(percentile(score_latencies, 0.50), 2),
        "score_rps": round(len(score_latencies) / scoring["seconds"], 1),
        "score_errors": sum(scoring["errors"].values()),
        "concurrency": args.concurrency,
        "score_clients": SCORE_CLIENTS,
        "fill_days": args.days,
        "fill_s": round(made["fill_s"], 1),
        "hourly_run_success": hourly_run.get("success"),
        "promotion_run_success": promotion_run.get("success"),
        "promotion_go_to_visible_s": None if not visible_at else round(visible_at - promote.went, 2),
        "promotion_decided_at_s": None if decided_at is None else round(decided_at - load_started, 2),
        "load_s": round(forecast["seconds"], 2),
        "snapshot_reloads_during_load": int(loads_after - loads_before),
        "uptime_start": load_at_start,
        "uptime_during_load": load_during,
        "uptime_end": load_at_end,
    }

    print(
        f"\n{summary['requests']:,} forecast requests over {args.concurrency} connections "
        f"in {forecast['seconds']:.1f}s, "
        f"while hourly_ingest_and_score_job ({hourly_day}) and promote_model_job wrote the warehouse"
    )
    print(f"{'route':<40}{'requests':>10}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}")
    for label, values in sorted(forecast["latencies"].items()):
        print(
            f"{label:<40}{len(values):>10,}{forecast['errors'].get(label, 0):>8}"
            f"{percentile(values, 0.5):>9.2f}{percentile(values, 0.99):>9.2f}"
        )
    print(
        f"{'all forecast routes':<40}{summary['requests']:>10,}{errors:>8}{summary['p50_ms']:>9.2f}"
        f"{summary['p99_ms']:>9.2f}   {summary['rps']:,.0f} requests/s"
    )
    print(
        f"{'POST /v1/score (' + str(SCORE_CLIENTS) + ' clients)':<40}{len(score_latencies):>10,}"
        f"{summary['score_errors']:>8}{summary['score_p50_ms']:>9.2f}{summary['score_p99_ms']:>9.2f}"
        f"   {summary['score_rps']:,.0f} requests/s"
    )
    if hourly_spans:
        first, last = min(s for s, _ in hourly_spans), max(e for _, e in hourly_spans)
        print(
            f"hourly run {'succeeded' if hourly_run.get('success') else 'FAILED'}: its steps ran from "
            f"{first - load_started:+.1f}s to {last - load_started:+.1f}s of the {forecast['seconds']:.1f}s load"
        )
    print(
        f"promotion {made['swap_from']} -> {made['swap_to']} ({SWAP_MODEL}): "
        + (
            f"decided {decided_at - load_started:+.1f}s into the {forecast['seconds']:.1f}s load, "
            f"in /version {switch_s:.2f}s after its decision was committed "
            f"({summary['promotion_go_to_visible_s']:.1f}s after its run was told to start)"
            if switch_s is not None
            else "NOT seen in /version"
        )
    )
    print(
        f"snapshot reloads during the load: {summary['snapshot_reloads_during_load']}; during writes: {during_writes}"
    )
    print(f"machine load: start {load_at_start}\n              during {load_during}\n              end {load_at_end}")
    checks = [
        ("errors", errors == 0, f"{errors}", "0"),
        ("requests/s", summary["rps"] >= TARGETS["rps"], f"{summary['rps']:,.0f}", f">= {TARGETS['rps']:,}"),
        ("p99 ms", summary["p99_ms"] <= TARGETS["p99_ms"], f"{summary['p99_ms']}", f"<= {TARGETS['p99_ms']}"),
        (
            "champion switch s",
            switch_s is not None and switch_s <= TARGETS["champion_switch_s"],
            f"{summary['champion_switch_s']}",
            f"<= {TARGETS['champion_switch_s']}",
        ),
        (
            "POST /v1/score p99 ms",
            summary["score_p99_ms"] <= TARGETS["score_p99_ms"],
            f"{summary['score_p99_ms']}",
            f"<= {TARGETS['score_p99_ms']}",
        ),
    ]
    for name, met, value, target in checks:
        print(f"target {name:<24}{value:>12}  ({target}): {'met' if met else 'MISSED'}")
    print(f"(files, logs: {folder})")
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
