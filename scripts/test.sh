#!/usr/bin/env bash
# README command 2: set up, then run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest crypto_assets_tests "$@"
