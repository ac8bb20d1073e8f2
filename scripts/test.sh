#!/usr/bin/env bash
# Set up .venv (idempotent) and run the test suite. As root on Debian it also installs the system tools
# some tests need (SVG rendering for the corpus builder, Chromium to open the Snakemake report; the SLURM
# test installs SLURM itself).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
        && ! { command -v rsvg-convert && command -v chromium; } >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq librsvg2-bin chromium >/dev/null) \
        || echo "test.sh: could not install librsvg2-bin/chromium; the tests that need them will say so"
fi
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
status=0
# two workers for the two cores; a file's tests stay on one worker, so its module fixtures are built once
# (every test runs Snakemake in its own directory; the SLURM tests share one cluster behind a lock)
.venv/bin/python -m pytest -q -ra --durations=15 -n 2 --dist loadfile "$@" || status=$?
# snakemake --lint on the workflow (.test/ config); notices not justified in the script fail CI
.venv/bin/python scripts/lint_workflow.py || { [ "$status" = 0 ] && status=1; }
# the rules' formatting, as the Snakemake workflow catalog checks it (settings in pyproject.toml)
.venv/bin/snakefmt --check workflow/ || { [ "$status" = 0 ] && status=1; }
exit "$status"
