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
# LightFM (an evaluation baseline) only builds with an old setuptools and without build
# isolation. Best effort: where it fails, the evaluation report lists it as unavailable.
if ! .venv/bin/python -c "import lightfm" 2>/dev/null; then
  tmp=$(mktemp -d)
  if python3 -m venv "$tmp/build" && "$tmp/build/bin/pip" install -q "setuptools<70" wheel "numpy<2.5" scipy \
      && "$tmp/build/bin/pip" wheel -q --no-build-isolation --no-deps -w "$tmp/wheels" lightfm; then
    .venv/bin/python -m pip install -q --no-deps "$tmp"/wheels/lightfm-*.whl || echo "lightfm: install failed (baseline unavailable)" >&2
  else
    echo "lightfm: could not be built here (baseline will be reported as unavailable)" >&2
  fi
  rm -rf "$tmp"
fi
