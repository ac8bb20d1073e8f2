"""A committed pretraining state's EMA as a model folder, to measure (or ship) a step whose run folder is gone.

    git show <commit>:resources/pretrain-state/state.safetensors > /tmp/state.safetensors
    .venv/bin/python scripts/model_from_state.py --state /tmp/state.safetensors --corpus results/corpus-broad \
        --out results/pretrain-broad/ckpt-<step>

The EMA is stored in bf16 in a portable state, so the model is the run's checkpoint rounded to bf16 weights.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from finextract.world.pretrain import model_from_portable_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True, help="a portable state.safetensors")
    parser.add_argument("--corpus", type=Path, required=True, help="the corpus the run trained on")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    step = model_from_portable_state(args.state, args.corpus, args.out)
    print(f"{args.out}: the EMA of step {step}")


if __name__ == "__main__":
    main()
