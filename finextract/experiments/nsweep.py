"""How extraction improves with the number of generated images N (the paper's Fig. 4b, extended).

One sampling run at the largest N serves every smaller N: seeds are deterministic, so the first
n seeds of a long run are exactly the images a run with N = n would have generated. Each sweep
point clusters that prefix of the SSCD matrix and scores the N0 extracted images.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from finextract.attack.clustering import extract_clusters
from finextract.io import atomic_path, read_rgb
from finextract.attack.metrics import cosine_matrix, score_extraction, score_l2

_SEED = re.compile(r"seed_(\d+)\.png$")


def seed_of(file: str) -> int:
    match = _SEED.search(str(file))
    if match is None:
        raise ValueError(f"not a generated image name (seed_<number>.png): {file}")
    return int(match.group(1))


def prefix_rows(files: list[str], n_images: int, seed_offset: int = 0) -> np.ndarray:
    """Rows of the images whose seeds are the first ``n_images`` of the run (seed_offset ...)."""
    seeds = np.array([seed_of(f) for f in files])
    rows = np.flatnonzero((seeds >= seed_offset) & (seeds < seed_offset + n_images))
    if len(rows) != n_images:
        raise ValueError(f"need seeds {seed_offset}..{seed_offset + n_images - 1}, "
                         f"found {len(rows)} of them among {len(files)} images")
    return rows


def sweep_point(generated: np.ndarray, files: list[str], private: np.ndarray, n_images: int,
                taus: tuple[float, ...] = (0.6, 0.7), seed_offset: int = 0,
                time_cap_s: float = 30.0, min_threshold: float | None = None,
                private_images: np.ndarray | None = None, l2_delta: float | None = None) -> dict:
    return clustered_point(generated, files, private, n_images, taus, seed_offset, time_cap_s, min_threshold,
                           private_images, l2_delta)[0]


def clustered_point(generated: np.ndarray, files: list[str], private: np.ndarray, n_images: int,
                    taus: tuple[float, ...] = (0.6, 0.7), seed_offset: int = 0,
                    time_cap_s: float = 30.0, min_threshold: float | None = None,
                    private_images: np.ndarray | None = None, l2_delta: float | None = None):
    """:func:`sweep_point`, plus the clustering and the similarity matrix it was made from.

    Cluster the first ``n_images`` generations into N0 = len(private) and score them.

    The main columns use the workflow's rule (``min_threshold`` as configured); with a floor set,
    ``paper_rule_*`` columns score the paper's rule without it on the same images. With
    ``private_images`` and ``l2_delta`` the extracted images are also scored by pixel ℓ2.
    """
    n0 = len(private)
    rows = prefix_rows(files, n_images, seed_offset)
    descriptors = generated[rows]
    similarity = cosine_matrix(descriptors, descriptors)
    start = time.perf_counter()
    result = extract_clusters(similarity, n0, time_cap_s=time_cap_s, min_threshold=min_threshold)
    seconds = time.perf_counter() - start
    scores = score_extraction(private, descriptors[result.centers], generated=descriptors, taus=taus)
    if private_images is not None and l2_delta is not None:
        extracted = np.stack([read_rgb(files[rows[i]]) for i in result.centers])
        scores.update(score_l2(private_images, extracted, l2_delta))
    point = {"n_generated": n_images, "n_per_image": n_images / n0, "n0": n0, **scores,
             "threshold": result.threshold, "min_threshold": min_threshold,
             "largest_clique": int(max(len(m) for m in result.members)), "cluster_seconds": round(seconds, 3)}
    if min_threshold is not None:
        paper = extract_clusters(similarity, n0, time_cap_s=time_cap_s)
        paper_scores = score_extraction(private, descriptors[paper.centers], taus=taus)
        point.update({f"paper_rule_{key}": value for key, value in paper_scores.items() if key != "n_extracted"})
        point.update({"paper_rule_threshold": paper.threshold,
                      "paper_rule_largest_clique": int(max(len(m) for m in paper.members))})
    return point, result, similarity


def plot_n_sweep(table: pd.DataFrame, out: Path, taus: tuple[float, ...] = (0.6, 0.7)) -> None:
    """AS and A-ESR against N / N0, one colour per (set, fine-tuning, method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["AS"] + [f"A-ESR@{tau:g}" for tau in taus] + (["L2-ESR"] if "L2-ESR" in table else [])
    groups = list(table.groupby(["set", "ft", "method"], sort=True))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, ((set_name, ft, method), rows) in enumerate(groups):
            rows = rows.sort_values("n_per_image")
            colour = f"C{i}"
            ax.plot(rows["n_per_image"], rows[metric], "o-", color=colour, label=f"{set_name} {ft} {method}")
            if f"upper_{metric}" in rows:
                ax.plot(rows["n_per_image"], rows[f"upper_{metric}"], ":", color=colour, alpha=0.6)
            if f"paper_rule_{metric}" in rows:
                ax.plot(rows["n_per_image"], rows[f"paper_rule_{metric}"], "x--", color=colour, alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("N / N0 (generated images per training image)")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Extraction vs N. Solid: the workflow's clustering; dashed x: the paper's rule without a floor "
                 "under phi; dotted: best match among all N images (no clustering)", fontsize=8)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
