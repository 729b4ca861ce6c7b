#!/usr/bin/env bash
# README command 2: set up, then run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser test drives Debian's Chromium; without it (no root, no apt) that test skips with a reason.
bash scripts/install_browser.sh || echo "Chromium could not be installed: the browser test will be skipped" >&2
# Lint and format check first: seconds, and a red line here is cheaper than one in review.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest crypto_assets_tests "$@"
