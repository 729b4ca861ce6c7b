#!/usr/bin/env bash
# Install what the browser test (crypto_assets_tests/test_ui_browser.py) needs: Debian's Chromium
# at /usr/bin/chromium. Playwright's own browser download is not used; the test drives this
# Chromium through the Python `playwright` package. Idempotent: does nothing when it is present.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: $CHROMIUM is missing and apt-get is unavailable; install Chromium yourself" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" != "0" ]; then
  SUDO=(sudo)
fi
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
"$CHROMIUM" --version
