#!/usr/bin/env bash
# README command 1: set up, materialize a recent window of partitions through every asset on the
# offline synthetic market, then open the Dagster UI on http://127.0.0.1:${PORT:-3000}, with the
# drift reports and evaluation charts served on http://127.0.0.1:${REPORTS_PORT:-3001} and the
# prediction service on http://127.0.0.1:${API_PORT:-3002} (linked from model_champions).
# QUICKSTART_NO_UI=1 stops after the materializations (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME="$PWD/.local/dagster_home"
# The deployment's dagster.yaml into DAGSTER_HOME, and the instance's storage created once.
.venv/bin/python -m crypto_assets.instance --home "$DAGSTER_HOME"
# Dagster's backfill bookkeeping settings, for the webserver and daemon of `dagster dev` too.
eval "$(.venv/bin/python -m crypto_assets.instance --print-env)"
export CRYPTO_ASSETS_REPORTS_URL="${CRYPTO_ASSETS_REPORTS_URL:-http://127.0.0.1:${REPORTS_PORT:-3001}}"
export CRYPTO_ASSETS_API_URL="${CRYPTO_ASSETS_API_URL:-http://127.0.0.1:${API_PORT:-3002}}"
.venv/bin/python -m crypto_assets.quickstart "$@"
if [ "${QUICKSTART_NO_UI:-0}" != "1" ]; then
  # dagster dev, the report server and the prediction service, stopped together on Ctrl-C or SIGTERM.
  exec .venv/bin/python -m crypto_assets.ui --port "${PORT:-3000}" --reports-port "${REPORTS_PORT:-3001}" \
    --api-port "${API_PORT:-3002}"
fi
