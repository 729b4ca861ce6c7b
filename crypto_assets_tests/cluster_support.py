"""Fixtures and helpers for the cluster deployment's tests: a throwaway DuckLake warehouse on PostgreSQL,
RabbitMQ reachability, and Celery workers started and stopped by the tests themselves.

Like conftest's Postgres pattern: a service that cannot be reached skips the test with the reason,
and under CI=true fails it (CI starts every service, so a skip there would hide a broken setup).
Import the fixtures into a test module to use them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROKER_HOST, BROKER_PORT = "127.0.0.1", 5672


def unavailable(what: str, why: str) -> None:
    """Skip, or under CI=true fail: CI has every service up, so a missing one is a broken setup."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {what} is needed and cannot be skipped. {why}")
    pytest.skip(f"{what} is not reachable, test skipped: {why}")


def postgres_base_url() -> str:
    """The server of DAGSTER_PG_URL (or the default), checked; skip or fail when it does not answer."""
    from crypto_assets import instance as instance_setup

    url = instance_setup.postgres_url()
    try:
        instance_setup.ensure_database(url)
    except instance_setup.InstanceSetupError as exc:
        unavailable("PostgreSQL", str(exc))
    return url.rsplit("/", 1)[0]


def new_lake_catalog(prefix: str = "crypto_assets_lake_test") -> tuple[str, str]:
    """A new, empty Postgres database for a DuckLake catalog: (SQLAlchemy URL to drop it, libpq URL for DuckLake)."""
    from crypto_assets import instance as instance_setup

    url = f"{postgres_base_url()}/{prefix}_{uuid.uuid4().hex[:12]}"
    instance_setup.ensure_database(url)
    return url, url.replace("postgresql+psycopg2://", "postgresql://", 1)


@pytest.fixture(name="lake_warehouse")
def lake_warehouse_fixture(tmp_path):
    """A DuckLake warehouse on a throwaway Postgres catalog and a temporary data folder."""
    from crypto_assets import instance as instance_setup
    from crypto_assets.lake import LakeWarehouse

    url, catalog = new_lake_catalog()
    yield LakeWarehouse(catalog=catalog, data_path=str(tmp_path / "lake"))
    instance_setup.drop_database(url)


def require_broker() -> str:
    """The RabbitMQ broker URL, after checking it accepts connections."""
    try:
        socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=3).close()
    except OSError as exc:
        unavailable("RabbitMQ", f"{BROKER_HOST}:{BROKER_PORT}: {exc}")
    return f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}//"


class Workers:
    """Celery workers started with dagster-celery's CLI, each in its own process group (so a kill takes
    its pool children too), stopped and waited for at the end."""

    def __init__(self, env: dict[str, str], logs: Path, concurrency: int = 1):
        self.env, self.logs, self.concurrency = env, logs, concurrency
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> subprocess.Popen:
        from crypto_assets.cluster import worker_command

        self.logs.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            worker_command(name, concurrency=self.concurrency, python=sys.executable),
            cwd=ROOT,
            env=self.env,
            stdout=(self.logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def wait_ready(self, timeout_s: float = 120) -> None:
        """Until every worker's log says it is ready (connected to the broker, tasks registered)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            texts = {n: (self.logs / f"{n}.log").read_text() for n in self.processes}
            if all(" ready." in t for t in texts.values()):
                return
            dead = {n: t[-2000:] for n, t in texts.items() if self.processes[n].poll() is not None}
            assert not dead, f"a worker exited: {dead}"
            time.sleep(0.5)
        raise AssertionError(f"workers not ready within {timeout_s}s: {self.tail()}")

    def kill(self, name: str) -> None:
        """SIGKILL the worker and its pool children at once: the machine is gone."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=30)

    def tail(self, chars: int = 3000) -> dict[str, str]:
        return {n: (self.logs / f"{n}.log").read_text()[-chars:] for n in self.processes}

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


class LocalCluster:
    """The cluster deployment on this machine: a Postgres instance and DuckLake catalog (throwaway
    databases), ``dagster-daemon`` for the run queue and backfills, and Celery workers.

    ``env`` is the environment every process of the deployment gets; the caller's process needs
    DAGSTER_PG_URL from it too to read the instance (``instance()``).
    """

    def __init__(
        self,
        folder: Path,
        *,
        start: str,
        days_per_run: int = 30,
        coins: int = 20,
        concurrency: int = 2,
        deployment: str = "cluster",
    ):
        """``deployment="local"`` is the embedded default for comparison: SQLite instance, one DuckDB
        file, in-process steps, no workers (``start(workers=0)``)."""
        from crypto_assets import instance as instance_setup

        self.folder, self.deployment = folder, deployment
        self._urls: list[str] = []
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),  # dagster-celery runs `celery`
            "DAGSTER_DEPLOYMENT": deployment,
            "DAGSTER_HOME": str(folder / "dagster_home"),
            "CRYPTO_ASSETS_PARTITIONS_START": start,
            "CRYPTO_ASSETS_UNIVERSE_SIZE": str(coins),
            "CRYPTO_ASSETS_REPORTS_DIR": str(folder / "reports"),
            "CRYPTO_ASSETS_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        }
        for name in ("CRYPTO_ASSETS_WAREHOUSE", "CRYPTO_ASSETS_SOURCE", "CRYPTO_ASSETS_BACKFILL_DAYS_PER_RUN"):
            self.env.pop(name, None)
        self.catalog = None
        if deployment == "cluster":
            self.broker = require_broker()
            pg_url = f"{postgres_base_url()}/crypto_assets_cluster_{uuid.uuid4().hex[:12]}"
            instance_setup.ensure_database(pg_url)
            lake_url, self.catalog = new_lake_catalog("crypto_assets_lake_cluster")
            self._urls = [pg_url, lake_url]
            self.env.update(
                {
                    "DAGSTER_PG_URL": pg_url,
                    "CRYPTO_ASSETS_LAKE_CATALOG": self.catalog,
                    "CRYPTO_ASSETS_LAKE_DATA_PATH": str(folder / "lake"),
                    "CRYPTO_ASSETS_BACKFILL_DAYS_PER_RUN": str(days_per_run),
                }
            )
        subprocess.run(
            [sys.executable, "-m", "crypto_assets.instance", "--home", self.env["DAGSTER_HOME"]],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.workers = Workers(self.env, folder / "logs", concurrency=concurrency)
        self.daemon: subprocess.Popen | None = None

    def start(self, workers: int = 2) -> LocalCluster:
        for i in range(workers):
            self.workers.start(f"worker-{i + 1}")
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        log = (self.folder / "logs" / "daemon.log").open("w")
        self.daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if workers:
            self.workers.wait_ready()
        return self

    def run(self, *args: str) -> str:
        """A command of the deployment (``python -m ...`` or a dagster CLI) in its environment; its stdout."""
        done = subprocess.run(list(args), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    def instance(self):
        import dagster as dg

        if "DAGSTER_PG_URL" in self.env:
            os.environ["DAGSTER_PG_URL"] = self.env["DAGSTER_PG_URL"]
        return dg.DagsterInstance.from_config(self.env["DAGSTER_HOME"])

    def warehouse(self):
        from crypto_assets.lake import LakeWarehouse
        from crypto_assets.warehouse import Warehouse

        if self.catalog is None:
            return Warehouse(database=self.env["CRYPTO_ASSETS_DUCKDB_PATH"])
        return LakeWarehouse(catalog=self.catalog, data_path=self.env["CRYPTO_ASSETS_LAKE_DATA_PATH"])

    def stop(self) -> None:
        self.workers.stop()
        if self.daemon is not None and self.daemon.poll() is None:
            os.killpg(self.daemon.pid, signal.SIGTERM)
            try:
                self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
                self.daemon.wait(timeout=30)

    def drop(self) -> None:
        from crypto_assets import instance as instance_setup

        for url in self._urls:
            instance_setup.drop_database(url)
