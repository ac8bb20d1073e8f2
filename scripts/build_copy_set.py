#!/usr/bin/env python
"""Rebuild the labelled generated copy / non-copy set (resources/copyset/) from registry packages.

    .venv/bin/python scripts/build_copy_set.py            # ~25 min on 2 cores; resumable

Needs npm, apt-get and rsvg-convert (the same tools as `snakemake corpus`). See finextract/world/copyset.py
for how the labels are made and docs/similarity-validation.md for what they are used for.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from finextract.world.copyset import CopySetRecipe, build_copy_set


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=str(REPO / "resources/base"))
    parser.add_argument("--cache", type=Path, default=REPO / "results/cache")
    parser.add_argument("--out", type=Path, default=REPO / "resources/copyset")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    t0 = time.time()
    manifest = build_copy_set(args.base, args.cache, args.out, CopySetRecipe(), threads=args.threads,
                              log=lambda m: print(m, flush=True))
    print(f"{len(manifest)} images in {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
