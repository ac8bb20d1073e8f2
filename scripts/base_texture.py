#!/usr/bin/env python
"""Measure the 2×2 checkerboard texture and caption fidelity of base-model checkpoints.

    .venv/bin/python scripts/base_texture.py --models resources/base results/pretrain/ckpt-4000 ... \
        --corpus results/corpus --out results/base-texture.csv

Checkerboard energy: the projection of an image (pixels in [0, 1]) onto the three patterns of period
two — (−1)^(i+j), (−1)^i, (−1)^j — as mean |coefficient| per channel, summed, ×1000. The pixel-unshuffle
puts every pixel of a 2×2 block in its own UNet channel, so an error that differs between those channels
shows up exactly at this period. Corpus images score the floor; samples above it carry the texture.
Caption fidelity: like scripts/base_model_card.py, with the workflow's default similarity.
Where the texture comes from (``x0_t300``, ``x0_t600``): the checkerboard energy of the model's one-step
estimate of x0 from 64 corpus images noised to t = 300 and 600 (seed 0) — no sampler involved. The corpus
row gives each Haar band's standard deviation (finextract/backbones/haar.py). ``--x0-only`` skips sampling.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]

from base_model_card import concept_style_captions, pick_captions

import torch.nn.functional as F

from finextract.backbones.haar import BAND_NAMES, unit_variance_scales
from finextract.backbones.tiny import load_tiny as load_base
from finextract.backbones.base import images_to_tensor
from finextract.reporting.image_quality import checkerboard_energy
from finextract.attack.model_pair import SingleModel
from finextract.attack.sampling import sample_batch
from finextract.attack.similarity import DEFAULT_CALIBRATION, DEFAULT_MODEL, embed_images


@torch.no_grad()
def one_step_x0_energy(backbone, images: np.ndarray, captions: list[str], t: int) -> float:
    latents = backbone.to_latents(images_to_tensor(images))
    abar = backbone._alphas_cumprod("cpu")[t]
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    noisy = abar.sqrt() * latents + (1 - abar).sqrt() * noise
    v = backbone.predict(backbone.unet, noisy, torch.tensor(t), backbone.encode_captions(captions))
    x0 = backbone.to_images(abar.sqrt() * noisy - (1 - abar).sqrt() * v).clamp(-1, 1)
    return float(checkerboard_energy(((x0 + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--corpus", default=str(REPO / "results/corpus"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=2.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "results/base-texture.csv"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--x0-only", action="store_true", help="only the one-step x0 columns (fast)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    captions = concept_style_captions(Path(args.corpus))
    corpus = np.load(Path(args.corpus) / "images.npy")
    chosen = pick_captions(captions)
    reals = np.stack([corpus[int(r["index"])] for _, r in chosen.iterrows()])
    real_desc = embed_images(reals, DEFAULT_MODEL, DEFAULT_CALIBRATION, progress=False)
    band_std = [1 / s for s in unit_variance_scales(F.pixel_unshuffle(images_to_tensor(corpus), 2))]
    rows = [{"model": "corpus images", "step": None, "checkerboard": float(checkerboard_energy(reals).mean()),
             "checkerboard_all_corpus": float(checkerboard_energy(corpus).mean()),
             **{f"band_std_{name}": round(v, 4) for name, v in zip(BAND_NAMES, band_std)}}]
    probe = corpus[:: len(corpus) // 64][:64]
    probe_captions = captions["caption"].tolist()[:: len(corpus) // 64][:64]
    for model in args.models:
        backbone = load_base(model)
        step_file = Path(model) / "training_step.txt"
        step = int(step_file.read_text()) if step_file.exists() else None
        x0 = {f"x0_t{t}": one_step_x0_energy(backbone, probe, probe_captions, t) for t in (300, 600)}
        if args.x0_only:
            rows.append({"model": model, "step": step, "band_basis": bool(backbone.band_scales), **x0})
            print(rows[-1], flush=True)
            continue
        pair = SingleModel(backbone)
        samples = np.concatenate([sample_batch(pair, r["caption"], list(range(args.seeds)), "cfg", args.steps,
                                               args.cfg) for _, r in chosen.iterrows()])
        desc = embed_images(samples, DEFAULT_MODEL, DEFAULT_CALIBRATION, progress=False)
        sim = desc.reshape(len(reals), args.seeds, -1) @ real_desc.T
        n = len(reals)
        matched = float(np.mean([sim[i, :, i].mean() for i in range(n)]))
        mismatched = float(np.mean([sim[i, :, j].mean() for i in range(n) for j in range(n) if i != j]))
        rows.append({"model": model, "step": step, "band_basis": bool(backbone.band_scales),
                     "checkerboard": float(checkerboard_energy(samples).mean()),
                     "fidelity_matched": matched, "fidelity_mismatched": mismatched, **x0})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["sampler"] = f"DDIM {args.steps} trailing, CFG {args.cfg}, seeds 0..{args.seeds - 1}, 16 captions"
    table["similarity"] = f"{DEFAULT_MODEL} + {DEFAULT_CALIBRATION}"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
