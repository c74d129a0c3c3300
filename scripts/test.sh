#!/usr/bin/env bash
# Set up, install Chromium for the browser test if missing, then run the whole test suite.
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
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q "$@"
