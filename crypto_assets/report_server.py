"""Serve the Evidently drift reports over HTTP, so the UI's report link opens with one click.

``python -m crypto_assets.report_server [--port 3001] [--directory .local/reports]`` serves that
folder, read-only, on 127.0.0.1. ``scripts/quickstart.sh`` starts it beside ``dagster dev`` and
sets ``CRYPTO_ASSETS_REPORTS_URL``, from which ``feature_drift`` builds each report's link (a
``file://`` link does not open from the http page of the Dagster UI).
"""

from __future__ import annotations

import argparse
import functools
import http.server
from pathlib import Path

from crypto_assets.settings import read_settings

DEFAULT_PORT = 3001


class ReportHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of one folder: no directory listings, no uploads, no logging of every request."""

    def list_directory(self, path):  # noqa: D401 - http.server's hook
        self.send_error(404, "no listing")
        return None

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


def serve(directory: Path, port: int, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A server for ``directory`` on host:port (port 0: any free port); call ``serve_forever`` on it."""
    directory.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(ReportHandler, directory=str(directory.resolve()))
    return http.server.ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--directory", type=Path, default=None, help="default: CRYPTO_ASSETS_REPORTS_DIR or .local/reports"
    )
    args = parser.parse_args(argv)
    directory = args.directory or read_settings().reports_dir
    server = serve(directory, args.port)
    print(f"serving drift reports from {directory} on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
