#!/usr/bin/env python
"""Rebuild the N0 ablation's nested private sets (resources/datasets/openmoji-n0/) from registry packages.

    .venv/bin/python scripts/build_n0_sets.py     # seconds; needs npm and rsvg-convert

finextract/world/corpus/n0_sets.py says which emoji and why; docs/paper-experiments.md reports
`snakemake n0_ablation --configfile config/n0-ablation.yaml` on them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from finextract.world.corpus.n0_sets import DEFAULT_SIZES, write_openmoji_n0_sets


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=REPO / "results/cache")
    parser.add_argument("--out", type=Path, default=REPO / "resources/datasets/openmoji-n0")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    args = parser.parse_args(argv)
    for folder in write_openmoji_n0_sets(args.out, args.cache, tuple(args.sizes)):
        print(f"{folder}: {len(list((folder / 'images').glob('*.png')))} images")


if __name__ == "__main__":
    main()
