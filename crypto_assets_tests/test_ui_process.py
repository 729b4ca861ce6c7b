"""What the quickstart leaves running stops on SIGTERM, children and all, even when started in the background."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from crypto_assets.instance import DAGSTER_ENV_DEFAULTS, prepare_home

from .e2e import REPO_ROOT, free_port

_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited: only its parent has not reaped it yet
        return stat.read().split(") ")[-1].split()[0] != "Z"


def _descendants(pid: int) -> set[int]:
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().split(") ")[-1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid:
                children.add(int(entry.name))
    return children | {d for c in children for d in _descendants(c)}


def test_sigterm_stops_the_ui_and_every_child_even_from_a_background_shell(tmp_path):
    port, reports_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTO_ASSETS_", "DAGSTER_"))}
    env.update(**DAGSTER_ENV_DEFAULTS, DAGSTER_HOME=str(prepare_home(tmp_path / "home", "local")),
               CRYPTO_ASSETS_DUCKDB_PATH=str(tmp_path / "w.duckdb"), NO_PROXY="127.0.0.1")  # fmt: skip
    # A shell without job control starts background commands with SIGINT ignored: so does this one.
    ui = subprocess.Popen(
        [sys.executable, "-m", "crypto_assets.ui", "--port", str(port), "--reports-port", str(reports_port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with _LOCAL.open(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "dagster dev never answered"
                assert ui.poll() is None, f"crypto_assets.ui exited with {ui.returncode}"
                time.sleep(1)
        family = _descendants(ui.pid)
        assert len(family) >= 3, family  # dagster dev (webserver, daemon, code server) and the report server
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [p for p in family if _alive(p)], "children outlived SIGTERM"
    finally:
        if ui.poll() is None:
            ui.kill()
