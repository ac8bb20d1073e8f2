"""Guidance-scale sweep (the paper's Fig. 5a in miniature) on fine-tuned checkpoints of a workflow run.

    .venv/bin/python benchmarks/guidance_sweep.py --set wesnoth-drake [--results results] [--seeds 16]

For each fine-tuning method and sampling method and w', samples the same seeds and reports the
no-clustering upper bound (mean over private images of the best SSCD similarity among the samples)
and the share of private images matched above 0.7. Writes a CSV and a PNG (first 8 samples per row).
This is how the tiny world's default w' were chosen (README, "What the default changes").
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from finextract.world.corpus.build import image_grid
from finextract.private_set import load_private_set
from finextract.io import save_csv, save_png
from finextract.attack.metrics import best_match
from finextract.attack.load_models import load_base, load_pair
from finextract.attack.sampling import sample_batch
from finextract.attack.similarity import DEFAULT_CALIBRATION, DEFAULT_MODEL, embed_images

GRID = {"direct": [1.0], "cfg": [1.5, 2.0, 3.0], "finextract": [1.25, 1.5, 2.0, 3.0, 5.0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="wesnoth-drake")
    parser.add_argument("--folder", default=None, help="private set folder (default resources/datasets/<set>)")
    parser.add_argument("--base", default="resources/base")
    parser.add_argument("--results", default="results")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--k", type=float, default=-0.02)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks/guidance_sweep")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.folder or f"resources/datasets/{args.set}"
    private = load_private_set(args.set, folder, load_base(args.base).resolution)
    private_desc = embed_images(private.images, DEFAULT_MODEL, DEFAULT_CALIBRATION, progress=False)
    rows, tiles = [], []
    for ft in ("dreambooth", "lora"):
        checkpoint = Path(args.results) / "finetune" / args.set / ft
        pair = load_pair(load_base(args.base), ft, checkpoint)
        for method, scales in GRID.items():
            for w in scales:
                k = args.k if method == "finextract" else 0.0
                images = sample_batch(pair, private.caption, list(range(args.seeds)), method, args.steps, w, k)
                best, _ = best_match(private_desc, embed_images(images, DEFAULT_MODEL, DEFAULT_CALIBRATION,
                                                                progress=False))
                rows.append({"set": args.set, "ft": ft, "method": method, "w": w, "k": k,
                             "upper_AS": round(float(best.mean()), 4), "share_over_0.7": float((best > 0.7).mean())})
                tiles.append(images[:8])
                print(rows[-1], flush=True)
    out = Path(args.out)
    save_csv(out.with_suffix(".csv"), pd.DataFrame(rows))
    save_png(out.with_suffix(".png"), image_grid(np.concatenate(tiles), columns=8))
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
