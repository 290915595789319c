#!/usr/bin/env bash
# Create ./.venv and install trainpipe (editable) with its dev tools. Safe to run again.
#
# torch is installed FIRST, on purpose: with no torch present, `pip install lightning` pulls the
# default (multi-GB, CUDA) torch build. Without a GPU we ask for $TORCH_SPEC (default: the pinned
# CPU-capable build below); set TORCH_INDEX_URL to a CPU wheel index where your pip needs one.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip >/dev/null

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    spec=${TORCH_SPEC:-torch}              # a GPU: the default (CUDA) build
  else
    spec=${TORCH_SPEC:-torch==2.13.0}      # no GPU: the CPU build
  fi
  echo "setup: installing $spec"
  "${pip[@]}" install "$spec" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi

echo "setup: installing trainpipe[dev]"
"${pip[@]}" install -e ".[dev]"
