#!/usr/bin/env bash
# Set up, then run the main job on the embedded store: build a sample shop, index it, query it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
HF_HUB_OFFLINE=1 .venv/bin/shoprec demo "$@"
