#!/usr/bin/env bash
# Set up, install Chromium for the browser test if missing, start a throw-away PostgreSQL, then run
# the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
  else
    echo "chromium not found and cannot install it: the browser test will be skipped" >&2
  fi
fi
# A throw-away PostgreSQL for the tests that need one (installed from the distribution's packages
# where missing; stopped and deleted on exit); they skip with the reason where it cannot start.
source scripts/pg_cluster.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q "$@"
