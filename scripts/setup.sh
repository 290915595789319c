#!/usr/bin/env bash
# Create ./.venv and install trainpipe (editable) with its dev tools. Safe to run again.
#
# torch and torchvision are installed FIRST, as a matching pair, on purpose: with no torch present,
# `pip install lightning` pulls the default (multi-GB, CUDA) torch build, and torchvision pins one
# exact torch. Without a GPU we ask for $TORCH_SPEC (default: the pair below, which our CPU machines
# hold on local disk; PyPI's torchvision does not import beside their torch 2.13.0+cpu file); set
# TORCH_INDEX_URL to a CPU wheel index where your pip needs one.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip >/dev/null

if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    spec=${TORCH_SPEC:-torch torchvision}                       # a GPU: the default (CUDA) builds
  elif [ "$(uname -m)" = aarch64 ]; then
    spec=${TORCH_SPEC:-torch==2.9.1 torchvision==0.24.1}        # CPU builds
  else
    spec=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}       # runs on the CPU (a CUDA build)
  fi
  echo "setup: installing $spec"
  # shellcheck disable=SC2086  # the spec is a list of requirements
  "${pip[@]}" install $spec ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi

echo "setup: installing trainpipe[dev]"
"${pip[@]}" install -e ".[dev]"
