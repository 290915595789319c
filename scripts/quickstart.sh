#!/usr/bin/env bash
# README command 1: set up, then train the default experiment (digits + MLP) and register it.
# Extra arguments are Hydra overrides, e.g. `scripts/quickstart.sh trainer.max_epochs=5`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/trainpipe train "$@"
