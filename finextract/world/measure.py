"""Measure the world criteria W1–W3 of a tiny-world base model (docs/tiny-world.md).

Samples are drawn with the workflow's own sampler (DDIM, trailing spacing, the steps of the default config)
and embedded with the workflow's default similarity instrument; the real images come from the broad corpus
folder (``snakemake corpus_broad``): its images (the pretraining styles) and its held-out concepts.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from finextract.world.corpus.broad import caption
from finextract.world.corpus.build import image_grid
from finextract.io import save_csv, save_json, save_npy, save_png
from finextract.attack.model_pair import SingleModel
from finextract.attack.load_models import load_base
from finextract.attack.sampling import sample_batch
from finextract.attack.similarity import embed_images
from finextract.world import criteria

UNSEEN_VENDOR_CAPTION = "art style of openmoji"  # the control row's situation: a style name never trained on
N_NEW = 256            # unconditional samples and unseen-vendor samples
PCA_FIT = 1024         # real corpus images used only to fit the projection
PCA_DIMS = 64


def draw(backbone, captions: list[str], seeds: list[int], steps: int, w: float, batch_size: int = 64) -> np.ndarray:
    """One image per (caption, seed), CFG ``w`` on θ itself (w = 1: plain text-to-image)."""
    pair = SingleModel(backbone)
    method = "direct" if w == 1.0 else "cfg"
    out = []
    for start in range(0, len(seeds), batch_size):
        out.append(sample_batch(pair, captions[start:start + batch_size], seeds[start:start + batch_size],
                                method, steps, w))
    return np.concatenate(out)


def real_splits(n_corpus: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Disjoint index sets of the corpus: the projection's fit set, the real set, and two floor halves."""
    order = np.random.default_rng(seed).permutation(n_corpus)
    sizes = {"fit": PCA_FIT, "real": N_NEW, "floor_a": N_NEW, "floor_b": N_NEW}
    need = sum(sizes.values())
    if n_corpus < need:
        raise ValueError(f"the world criteria need {need} corpus images, the corpus has {n_corpus}")
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = np.sort(order[start:start + size])
        start += size
    return splits


def measure_world(model: str | Path, corpus_dir: str | Path, out_dir: str | Path, steps: int = 20,
                  cfg_scale: float = 3.0, threads: int = 2, log=print, full: bool = True) -> pd.DataFrame:
    """Write ``criteria.csv``, ``w3.csv``, ``summary.json`` and one sample grid per criterion into ``out_dir``.

    ``full=False`` (the scaling probe) measures only W1 and W2(a): no unseen-vendor or CFG samples, no W3."""
    torch.set_num_threads(threads)
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    images = np.load(corpus_dir / "images.npy")
    heldout_images = np.load(corpus_dir / "heldout.npy")
    heldout = pd.read_csv(corpus_dir / "heldout.csv")
    backbone = load_base(str(model))
    seeds = list(range(N_NEW))
    heldout_seeds = list(range(len(heldout)))
    heldout_captions = [caption("concept_style", r.concept, r.style) for r in heldout.itertuples()]

    log("sampling: unconditional, unseen vendor, held-out concepts at w' = 1 and CFG")
    samples = {
        "W1 unconditional": draw(backbone, [""] * N_NEW, seeds, steps, 1.0),
        "W2 held-out concepts": draw(backbone, heldout_captions, heldout_seeds, steps, 1.0),
    }
    if full:
        samples["W2 unseen vendor"] = draw(backbone, [UNSEEN_VENDOR_CAPTION] * N_NEW, seeds, steps, 1.0)
        samples["W3 held-out concepts, CFG"] = draw(backbone, heldout_captions, heldout_seeds, steps, cfg_scale)
    for name, batch in samples.items():
        save_png(out_dir / f"{name.split()[0]}-{name.split(' ', 1)[1].replace(' ', '-').replace(',', '')}.png",
                 image_grid(batch[:64], columns=16))

    log("embedding samples and real images")
    corpus_descriptors_file = corpus_dir / "descriptors.npy"
    if corpus_descriptors_file.exists():
        corpus_desc = np.load(corpus_descriptors_file)
    else:
        corpus_desc = embed_images(images, threads=threads)
        save_npy(corpus_descriptors_file, corpus_desc)
    heldout_desc = embed_images(heldout_images, threads=threads, progress=False)
    desc = {name: embed_images(batch, threads=threads, progress=False) for name, batch in samples.items()}

    splits = real_splits(len(images))
    projection = criteria.fit_projection(corpus_desc[splits["fit"]], PCA_DIMS)
    real, floor_a, floor_b = (corpus_desc[splits[k]] for k in ("real", "floor_a", "floor_b"))
    # the held-out comparison has its own n: a floor of the same size from the corpus
    n_held = len(heldout)
    rest = np.setdiff1d(np.arange(len(images)), splits["fit"])
    pick = np.random.default_rng(1).permutation(rest)[:2 * n_held]
    bounds = criteria.Bounds()
    rows = [criteria.figures("W1 unconditional", desc["W1 unconditional"], real, floor_a, floor_b, projection,
                             corpus_desc)]
    margins = [bounds.pairwise_margin_new]
    if full:
        rows.append(criteria.figures("W2 unseen vendor", desc["W2 unseen vendor"], real, floor_a, floor_b,
                                     projection, corpus_desc))
        margins.append(bounds.pairwise_margin_heldout)
    rows.append(criteria.figures("W2 held-out concepts", desc["W2 held-out concepts"], heldout_desc,
                                 corpus_desc[pick[:n_held]], corpus_desc[pick[n_held:]], projection, corpus_desc))
    margins.append(bounds.pairwise_margin_heldout)
    table = pd.DataFrame([{**asdict(r), "fd_ratio": r.fd_ratio} for r in rows])
    table["passes"] = [r.passes(bounds, m) for r, m in zip(rows, margins)]
    save_csv(out_dir / "criteria.csv", table)
    if not full:
        return table

    own_w1 = (desc["W2 held-out concepts"] * heldout_desc).sum(axis=1)
    own_cfg = (desc["W3 held-out concepts, CFG"] * heldout_desc).sum(axis=1)
    w3 = pd.DataFrame({"concept": heldout["concept"], "style": heldout["style"],
                       "similarity_w1": own_w1, f"similarity_cfg{cfg_scale:g}": own_cfg})
    save_csv(out_dir / "w3.csv", w3)
    low, high, helps = criteria.cfg_helps(own_w1, own_cfg)
    save_json(out_dir / "summary.json", {
        "model": str(model), "steps": steps, "cfg_scale": cfg_scale, "bounds": asdict(bounds),
        "criteria": table.to_dict(orient="records"),
        "W3": {"similarity_w1": low, f"similarity_cfg{cfg_scale:g}": high, "passes": helps},
    })
    return table


@torch.no_grad()
def heldout_loss(model: str | Path, corpus_dir: str | Path, draws: int = 4, min_snr_gamma: float = 5.0,
                 threads: int = 2) -> float:
    """The pretraining objective on the held-out concepts' real images (captioned ``{concept}, {style} style``),
    averaged over ``draws`` fixed draws of timesteps and noise: how well θ models images it never saw."""
    from finextract.training.losses import diffusion_loss
    from finextract.backbones.base import images_to_tensor

    torch.set_num_threads(threads)
    corpus_dir = Path(corpus_dir)
    heldout = pd.read_csv(corpus_dir / "heldout.csv")
    backbone = load_base(str(model))
    latents = backbone.to_latents(images_to_tensor(np.load(corpus_dir / "heldout.npy")))
    cond = backbone.encode_captions([caption("concept_style", r.concept, r.style) for r in heldout.itertuples()])
    losses = [diffusion_loss(backbone, backbone.unet, latents, cond,
                             torch.Generator().manual_seed(draw), min_snr_gamma).item() for draw in range(draws)]
    return float(np.mean(losses))
