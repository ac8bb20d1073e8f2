"""Figures and numbers for the base model's card: loss curve, a sample grid, caption fidelity.

    .venv/bin/python scripts/base_model_card.py --model resources/base --corpus results/corpus-broad \
        --out resources/base [--loss resources/pretrain-state/loss.csv]

Caption fidelity: for 16 in-corpus captions "X, <style>", the mean SSCD similarity between a sample
and the real image of X in that style, against the same for mismatched X (chance level).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from finextract.attack.load_models import load_base
from finextract.world.corpus.build import image_grid
from finextract.io import save_json, save_png
from finextract.attack.model_pair import SingleModel
from finextract.attack.sampling import sample_batch


def concept_style_captions(corpus: Path) -> pd.DataFrame:
    """One row per corpus image: its ``index``, ``concept``, ``style`` and ``{concept}, {style} style`` caption.

    The narrow corpus lists these columns in captions.csv; the broad one keeps image metadata in images.csv and
    one caption row per template in captions.csv.
    """
    captions = pd.read_csv(corpus / "captions.csv")
    if {"index", "concept", "style"} <= set(captions.columns):
        return captions
    images = pd.read_csv(corpus / "images.csv")
    chosen = captions[captions["template"] == "concept_style"].rename(columns={"image": "index"})
    return images[["index", "concept", "style"]].merge(chosen[["index", "caption"]], on="index")


def pick_captions(captions: pd.DataFrame, n: int = 16) -> pd.DataFrame:
    """n rows spread over the concepts drawn in every style, cycling through the styles."""
    styles = sorted(captions["style"].unique())
    per_concept = captions.groupby("concept", sort=False)["style"].nunique()
    concepts = per_concept[per_concept == len(styles)].index.tolist()
    picks = np.linspace(0, len(concepts) - 1, n).round().astype(int)
    rows = []
    for i, c in enumerate(picks):
        style = styles[i % len(styles)]
        rows.append(captions[(captions["concept"] == concepts[c]) & (captions["style"] == style)].iloc[0])
    return pd.DataFrame(rows)


def loss_plot(loss_csv: Path, out: Path) -> None:
    from finextract.reporting.loss_curve import plot_loss_curve

    plot_loss_curve(pd.read_csv(loss_csv), out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resources/base")
    parser.add_argument("--loss", default="", help="draw loss.png from this loss.csv (ship_base.py already does)")
    parser.add_argument("--corpus", default="results/corpus-broad")
    parser.add_argument("--out", default="resources/base")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, default=4, help="samples per caption")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    backbone = load_base(args.model, device="cpu")
    captions = concept_style_captions(Path(args.corpus))
    corpus = np.load(Path(args.corpus) / "images.npy")
    chosen = pick_captions(captions)
    pair = SingleModel(backbone)
    samples, reals = [], []
    for _, row in chosen.iterrows():
        images = sample_batch(pair, row["caption"], list(range(args.seeds)), "cfg", args.steps, args.cfg)
        samples.append(images)
        reals.append(corpus[int(row["index"])])
    # grid: per caption, the real image then the samples
    tiles = np.concatenate([np.concatenate([real[None], s]) for real, s in zip(reals, samples)])
    save_png(out / "samples.png", image_grid(tiles, columns=args.seeds + 1))
    if args.loss:
        loss_plot(Path(args.loss), out / "loss.png")

    from finextract.attack.similarity import DEFAULT_CALIBRATION, DEFAULT_MODEL, embed_images

    sample_desc = embed_images(np.concatenate(samples), DEFAULT_MODEL, DEFAULT_CALIBRATION, progress=False)
    real_desc = embed_images(np.stack(reals), DEFAULT_MODEL, DEFAULT_CALIBRATION, progress=False)
    sim = sample_desc.reshape(len(reals), args.seeds, -1) @ real_desc.T  # [caption, seed, real]
    matched = np.mean([sim[i, :, i].mean() for i in range(len(reals))])
    mismatched = np.mean([sim[i, :, j].mean() for i in range(len(reals)) for j in range(len(reals)) if i != j])
    wins = np.mean([(sim[i, :, i][:, None] > np.delete(sim[i], i, axis=1)).mean() for i in range(len(reals))])
    fidelity = {"captions": chosen["caption"].tolist(), "matched_mean_sscd": float(matched),
                "mismatched_mean_sscd": float(mismatched), "matched_beats_mismatched_share": float(wins),
                "sampler": f"DDIM {args.steps} steps, CFG {args.cfg}, seeds 0..{args.seeds - 1}",
                "sscd": f"{DEFAULT_MODEL} + {DEFAULT_CALIBRATION}"}
    save_json(out / "caption_fidelity.json", fidelity)
    print(json.dumps(fidelity, indent=2))


if __name__ == "__main__":
    main()
