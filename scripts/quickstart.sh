#!/usr/bin/env bash
# README command 1: set up, materialize a recent window of partitions through every asset on the
# offline synthetic market, then open the Dagster UI on http://127.0.0.1:${PORT:-3000}.
# QUICKSTART_NO_UI=1 stops after the materializations (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME="$PWD/.local/dagster_home"
mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
.venv/bin/python -m crypto_assets.quickstart "$@"
if [ "${QUICKSTART_NO_UI:-0}" != "1" ]; then
  echo "Opening the Dagster UI on http://127.0.0.1:${PORT:-3000} (Ctrl-C to stop)"
  exec .venv/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p "${PORT:-3000}"
fi
