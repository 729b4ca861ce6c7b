"""End-to-end helpers: a populated Dagster instance served by a real ``dagster dev`` on 127.0.0.1.

``test_ui_browser.py`` and ``test_graphql.py`` load this module with ``pytest_plugins``, so the
session fixture ``dagster_server`` is built once per pytest session however many of them run:

1. a temporary ``DAGSTER_HOME`` (prepared from the repository's ``dagster.yaml``), DuckDB file and a
   partition set that starts ``PARTITIONS_START_DAYS_AGO`` days ago, so the UI has a small range;
2. ``python -m crypto_assets.quickstart --days N`` in that environment: snapshots, features and
   labels for N days, yesterday's split, candidates, gated evaluations and champion decisions;
3. ``dagster dev -w workspace.yaml -h 127.0.0.1 -p <free port>`` in its own process group, ready
   once ``/server_info`` answers and GraphQL shows the code location loaded;
4. at teardown, SIGTERM to the whole process group, then SIGKILL after a timeout.

Logs go to files under the session's temporary folder; a failing test gets their tails appended
to its report. ``N`` is ``CRYPTO_ASSETS_E2E_DAYS`` (default 8: the smallest window in which both
model families get labelled training rows at any hour of the day, so every asset of yesterday's
training run materializes; 4 days is enough for the anomaly detector alone).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto_assets.instance import DAGSTER_ENV_DEFAULTS, prepare_home

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PARTITIONS_START_DAYS_AGO = 20
DEFAULT_QUICKSTART_DAYS = 8
QUICKSTART_TIMEOUT_S = float(os.environ.get("CRYPTO_ASSETS_E2E_QUICKSTART_TIMEOUT", "480"))
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_TIMEOUT_S = 20.0
CODE_LOCATION = "crypto_assets.definitions"
# Talk to 127.0.0.1 directly, whatever proxy the environment configures.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def quickstart_days() -> int:
    return int(os.environ.get("CRYPTO_ASSETS_E2E_DAYS", str(DEFAULT_QUICKSTART_DAYS)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def yesterday(now: datetime | None = None) -> str:
    return ((now or datetime.now(UTC)) - timedelta(days=1)).strftime("%Y-%m-%d")


class ServerError(RuntimeError):
    pass


@dataclass
class DagsterServer:
    """A running ``dagster dev`` and the instance and warehouse it serves."""

    port: int
    root: Path
    env: dict[str, str]
    partitions_start: str
    log_path: Path
    quickstart_log_path: Path
    populated: tuple[datetime, datetime] | None = None  # when the quickstart started and ended
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def duckdb_path(self) -> Path:
        return self.root / "warehouse.duckdb"

    def training_days(self) -> set[str]:
        """The day the quickstart's daily_training_job ran for: the day before yesterday while it ran
        (two days only if it ran across midnight UTC)."""
        from crypto_assets.quickstart import split_day

        assert self.populated is not None, "the instance was not populated"
        return {split_day(t) for t in self.populated}

    def backfilled_day(self) -> str:
        """A complete day of the quickstart's single-run backfill (three days before it ran)."""
        assert self.populated is not None, "the instance was not populated"
        return (self.populated[0] - timedelta(days=3)).strftime("%Y-%m-%d")

    def warehouse_rows(self, day: str) -> int:
        """market_snapshots rows of one day, read from the DuckDB file itself."""
        import duckdb

        with duckdb.connect(str(self.duckdb_path), read_only=True) as conn:
            return conn.execute(
                "SELECT count(*) FROM raw.market_snapshots WHERE strftime(partition_hour, '%Y-%m-%d') = ?", [day]
            ).fetchone()[0]

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        """POST a GraphQL query to the server; return ``data`` or raise with the errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with _LOCAL.open(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise ServerError(f"GraphQL errors: {json.dumps(payload['errors'])[:2000]}")
        return payload["data"]

    def logs(self, lines: int = 60) -> str:
        return f"--- {self.log_path} (last {lines} lines) ---\n{tail(self.log_path, lines)}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def run_status(self, run_id: str) -> str:
        data = self.graphql(
            "query($id: ID!) { runOrError(runId: $id) { __typename "
            "... on Run { status } ... on PythonError { message } } }",
            {"id": run_id},
        )
        run = data["runOrError"]
        if run["__typename"] != "Run":
            raise ServerError(f"run {run_id}: {run}")
        return run["status"]


def e2e_environment(root: Path, partitions_start: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COINGECKO_", "CRYPTO_ASSETS_", "DAGSTER_"))}
    env.update(
        **DAGSTER_ENV_DEFAULTS,  # as scripts/quickstart.sh exports them for `dagster dev`
        DAGSTER_HOME=str(root / "dagster_home"),
        DAGSTER_DEPLOYMENT="local",
        CRYPTO_ASSETS_SOURCE="synthetic",
        CRYPTO_ASSETS_DUCKDB_PATH=str(root / "warehouse.duckdb"),
        CRYPTO_ASSETS_PARTITIONS_START=partitions_start,
        PYTHONUNBUFFERED="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def populate(root: Path, env: dict[str, str], log_path: Path) -> float:
    """Run the quickstart materializations into the temporary instance; return the seconds taken."""
    prepare_home(root / "dagster_home", "local")  # as scripts/quickstart.sh does
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            result = subprocess.run(
                [sys.executable, "-m", "crypto_assets.quickstart", "--days", str(quickstart_days())],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=QUICKSTART_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise ServerError(f"quickstart did not finish in {QUICKSTART_TIMEOUT_S:.0f}s\n{tail(log_path)}") from None
    if result.returncode != 0:
        raise ServerError(f"quickstart failed (exit {result.returncode})\n{tail(log_path)}")
    return time.monotonic() - started


def _default_sigint() -> None:
    """In the child: default SIGINT handling. ``dagster dev`` maps SIGTERM to its SIGINT handler,
    and a shell without job control starts background commands with SIGINT ignored, which would
    make ``dagster dev`` ignore SIGTERM too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_server(server: DagsterServer) -> None:
    """Start ``dagster dev`` in its own process group; return once the code location is loaded."""
    dagster = Path(sys.executable).with_name("dagster")
    command = [
        str(dagster) if dagster.exists() else "dagster",
        "dev",
        "-w",
        "workspace.yaml",
        "-h",
        HOST,
        "-p",
        str(server.port),
    ]
    log = open(server.log_path, "wb")
    server.process = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=server.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    log.close()  # the child holds its own descriptor
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        if not server.alive():
            raise ServerError(f"dagster dev exited with {server.process.returncode}\n{server.logs()}")
        try:
            with _LOCAL.open(f"{server.url}/server_info", timeout=5) as response:
                json.loads(response.read())
            entries = server.graphql(WORKSPACE_QUERY, timeout=10)["workspaceOrError"].get("locationEntries", [])
            entry = next((e for e in entries if e["name"] == CODE_LOCATION), None)
            if entry is None:
                last_problem = f"code location {CODE_LOCATION} not listed yet: {entries}"
            elif entry["loadStatus"] != "LOADED":
                last_problem = f"code location {entry['loadStatus']}"
            else:
                location = entry["locationOrLoadError"] or {}
                if location.get("__typename") == "PythonError":
                    raise ServerError(f"code location failed to load: {location.get('message')}\n{server.logs()}")
                if location.get("repositories"):
                    return
                last_problem = f"no repository yet: {location}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
            last_problem = repr(exc)
        time.sleep(0.5)
    raise ServerError(f"dagster dev not ready after {SERVER_START_TIMEOUT_S:.0f}s ({last_problem})\n{server.logs()}")


def stop_server(server: DagsterServer) -> None:
    """SIGTERM the whole process group (webserver, daemon, code servers, runs), then SIGKILL."""
    process = server.process
    if process is None:
        return
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pass
    # Children (code server, daemon, run workers) may outlive the parent: wait for the group.
    deadline = time.monotonic() + SERVER_STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.poll() is None:
        process.wait(timeout=5)


WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


@pytest.fixture(scope="session")
def dagster_server(tmp_path_factory) -> DagsterServer:
    """A populated temporary instance served by ``dagster dev`` on 127.0.0.1 (see the module docstring)."""
    root = tmp_path_factory.mktemp("e2e")
    partitions_start = (datetime.now(UTC) - timedelta(days=PARTITIONS_START_DAYS_AGO)).strftime("%Y-%m-%d")
    server = DagsterServer(
        port=free_port(),
        root=root,
        env=e2e_environment(root, partitions_start),
        partitions_start=partitions_start,
        log_path=root / "dagster_dev.log",
        quickstart_log_path=root / "quickstart.log",
    )
    started_at = datetime.now(UTC)
    seconds = populate(root, server.env, server.quickstart_log_path)
    server.populated = (started_at, datetime.now(UTC))
    print(f"\n[e2e] quickstart --days {quickstart_days()} into {root} took {seconds:.0f}s")
    started = time.monotonic()
    # HTTP clients in this process (requests, under DagsterGraphQLClient) must not proxy 127.0.0.1.
    saved = {k: os.environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    for key in saved:
        os.environ[key] = ",".join(filter(None, [os.environ.get(key), HOST, "localhost"]))
    try:
        start_server(server)
        print(f"[e2e] dagster dev ready on {server.url} in {time.monotonic() - started:.0f}s (log: {server.log_path})")
        yield server
    finally:
        stop_server(server)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Append the tail of the dagster dev log to the report of a failing test that used the server."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("dagster_server")
    if report.failed and isinstance(server, DagsterServer):
        report.sections.append(("dagster dev log", server.logs(80)))
