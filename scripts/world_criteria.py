"""Measure the world criteria W1–W3 (docs/tiny-world.md) for one or more tiny-world models.

    .venv/bin/python scripts/world_criteria.py --models resources/base --corpus results/corpus-broad \
        --out results/world-criteria
"""
from __future__ import annotations

import argparse
from pathlib import Path

from finextract.world.measure import measure_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="tiny-world model folders")
    parser.add_argument("--corpus", default="results/corpus-broad", help="the broad corpus folder")
    parser.add_argument("--out", default="results/world-criteria")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for model in args.models:
        out = Path(args.out) / Path(model).name
        table = measure_world(model, args.corpus, out, steps=args.steps, threads=args.threads)
        print(f"{model}:\n{table.to_string(index=False)}")


if __name__ == "__main__":
    main()
