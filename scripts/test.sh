#!/usr/bin/env bash
# README command 2: set up, then run the whole test suite (slow tests included, as CI does).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not slow"` or `scripts/test.sh -k csv`
# (`-n 0` runs in one process).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
.venv/bin/ruff check .
# two workers: integration tests are isolated (own temp dir, MLflow store, ports) and mostly wait
# on subprocesses, so they overlap well even on 2 cores
.venv/bin/python -m pytest -n 2 "$@"
