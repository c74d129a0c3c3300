#!/usr/bin/env bash
# Create .venv and install shoprec with its test and eval extras.
# torch/torchvision are pinned exactly (pyproject) so pip takes them from this machine's disk.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,eval]'
