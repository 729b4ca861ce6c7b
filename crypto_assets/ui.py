"""Start what a user browses after the quickstart, and stop all of it together.

``python -m crypto_assets.ui [--port 3000] [--reports-port 3001] [--api-port 3002]`` runs ``dagster dev``
(webserver, daemon, code server), the report server and the prediction service side by side. Ctrl-C or
SIGTERM stops every one of them and their children, and so does any of them exiting: nothing is left running in the
background. (A shell started without job control ignores SIGINT in its background children, and
``dagster dev`` handles SIGTERM through its SIGINT handler: each child gets default SIGINT back.)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_TIMEOUT_S = 20.0


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(command: list[str]) -> subprocess.Popen:
    """A child in its own process group, so stopping it stops its children too."""
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_default_signals)


def stop(children: list[subprocess.Popen]) -> None:
    """SIGTERM every child's process group, then SIGKILL what is left after ``STOP_TIMEOUT_S``."""
    groups = []
    for child in children:
        try:
            groups.append(os.getpgid(child.pid))
            os.killpg(groups[-1], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for group in groups:
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for child in children:
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--reports-port", type=int, default=int(os.environ.get("REPORTS_PORT", "3001")))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "3002")))
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    dagster = str(bin_dir / "dagster") if (bin_dir / "dagster").exists() else "dagster"
    commands = [
        [dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(args.port)],
        [sys.executable, "-m", "crypto_assets.report_server", "--port", str(args.reports_port)],
        [sys.executable, "-m", "crypto_assets.serve", "--port", str(args.api_port)],
    ]
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children = [start(c) for c in commands]
    print(f"Dagster UI on http://127.0.0.1:{args.port}, reports on http://127.0.0.1:{args.reports_port}, "
          f"predictions on http://127.0.0.1:{args.api_port} (/health, /version, /v1/forecasts, /v1/score, /metrics); "
          "Ctrl-C to stop", flush=True)  # fmt: skip
    code = 0
    while not stopping:
        exited = [c for c in children if c.poll() is not None]
        if exited:
            code = exited[0].returncode or 0
            print(f"{' '.join(commands[children.index(exited[0])][:2])} exited ({code}); stopping the rest", flush=True)
            break
        time.sleep(0.5)
    stop(children)
    return code


if __name__ == "__main__":
    sys.exit(main())
