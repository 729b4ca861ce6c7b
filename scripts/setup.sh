#!/usr/bin/env bash
# Create .venv and install the project with its test tools. Re-running is cheap: it reinstalls
# only when pyproject.toml or setup.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "crypto_assets needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.crypto_assets-installed
wanted=$(cat pyproject.toml setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip 2> >(grep -v "is ignored: it is neither" >&2)
  .venv/bin/python -m pip install --quiet -e ".[dev]" 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$wanted" > "$stamp"
fi
