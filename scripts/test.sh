#!/usr/bin/env bash
# Installs everything the test suite needs (Python packages, and Debian's Chromium for the
# dashboard tests when apt is available), then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
fi
python -m pip install -q --disable-pip-version-check -e ".[test,web]"
python -m pytest -q "$@"
