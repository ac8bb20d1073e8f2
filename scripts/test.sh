#!/usr/bin/env bash
# Set up .venv (idempotent) and run the test suite, including the real-SLURM test when root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q -ra "$@"
