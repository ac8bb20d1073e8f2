"""Extraction scores (paper Sec. 3): Average Similarity (Eq. 1) and A-ESR (Eq. 2).

All functions take descriptor matrices with one L2-normalised row per image (SSCD outputs), so a
dot product is the cosine similarity. Rows that are not unit length are rejected rather than
silently scored: an unnormalised matrix would inflate or deflate every number here.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

_NORM_TOLERANCE = 1e-2  # loose enough for float16 descriptors, tight enough to catch raw features


def _descriptors(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n_images, dim) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    worst = int(np.argmax(np.abs(norms - 1.0)))
    if abs(norms[worst] - 1.0) > _NORM_TOLERANCE:
        raise ValueError(f"{name} rows must be L2-normalised; row {worst} has norm {norms[worst]:.4g}")
    return x


def similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities, shape (len(a), len(b))."""
    a, b = _descriptors(a, "a"), _descriptors(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptor dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return a @ b.T


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine of two sets of stored (L2-normalised, float32) descriptors, unchecked: the clustering
    graph's edge weights, computed as the embed step stored them."""
    return np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32).T


def best_match(private: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each private image, the highest similarity to any generated image, and which one (first on ties)."""
    sims = similarity_matrix(private, generated)
    best = sims.argmax(axis=1)
    return sims[np.arange(len(sims)), best], best


def average_similarity(private: np.ndarray, extracted: np.ndarray) -> float:
    """AS (Eq. 1): mean over private images of the best similarity to an extracted image."""
    return float(best_match(private, extracted)[0].mean())


def extraction_success_rate(private: np.ndarray, extracted: np.ndarray, tau: float) -> float:
    """A-ESR (Eq. 2): share of private images whose best match is *strictly* above ``tau``."""
    return float((best_match(private, extracted)[0] > tau).mean())


def _pixels(images: np.ndarray, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, H, W, C) image array, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 images, got {images.dtype}")
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def pixel_l2_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised ℓ2 of Carlini et al. (2023) between a[i] and b[i]: √(mean (a − b)²), pixels in [0, 1]."""
    x, y = _pixels(a, "a"), _pixels(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"image arrays differ in shape: {np.shape(a)} vs {np.shape(b)}")
    return np.sqrt(((x - y) ** 2).mean(axis=1))


def pixel_l2_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised ℓ2 between every image of ``a`` and every image of ``b``, shape (len(a), len(b))."""
    x, y = _pixels(a, "a"), _pixels(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"images differ in size: {np.shape(a)[1:]} vs {np.shape(b)[1:]}")
    squared = (x ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None, :] - 2 * x @ y.T
    return np.sqrt(np.maximum(squared, 0.0) / x.shape[1])


def nearest_l2(private: np.ndarray, extracted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each private image, the smallest ℓ2 to an extracted image and that image's index."""
    distances = pixel_l2_matrix(private, extracted)
    return distances.min(axis=1), distances.argmin(axis=1)


def score_l2(private: np.ndarray, extracted: np.ndarray, delta: float,
             generated: np.ndarray | Iterable[np.ndarray] | None = None) -> dict[str, float]:
    """The pixel-space criterion beside AS / A-ESR: ``L2`` is the mean over private images of the
    smallest ℓ2 to an extracted image, ``L2-ESR`` the share of private images closer than ``delta``;
    with ``generated`` (an image array, or chunks of one: SD-sized images do not fit in memory at once),
    the same over all generated images (the no-clustering bound)."""
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"the l2 threshold delta must be a finite number > 0, got {delta}")
    nearest, _ = nearest_l2(private, extracted)
    scores = {"L2": float(nearest.mean()), "L2-ESR": float((nearest < delta).mean())}
    if generated is not None:
        upper = np.full(len(private), np.inf)
        for chunk in ([generated] if isinstance(generated, np.ndarray) else generated):
            upper = np.minimum(upper, pixel_l2_matrix(private, chunk).min(axis=1))
        scores.update({"upper_L2": float(upper.mean()), "upper_L2-ESR": float((upper < delta).mean())})
    return scores


def _tau_key(tau: float) -> str:
    return f"A-ESR@{tau:g}"


def score_extraction(private: np.ndarray, extracted: np.ndarray, generated: np.ndarray | None = None,
                     taus: Sequence[float] = (0.6, 0.7)) -> dict[str, float]:
    """AS and A-ESR of an extracted set; with ``generated``, also the no-clustering upper bound.

    The upper bound scores *all* generated images as if clustering had picked, for every private
    image, its best generated match: no choice of N0 images from ``generated`` can beat it, so the
    gap to it is what clustering loses.
    """
    scores: dict[str, float] = {"AS": average_similarity(private, extracted)}
    scores.update({_tau_key(tau): extraction_success_rate(private, extracted, tau) for tau in taus})
    if generated is not None:
        scores["upper_AS"] = average_similarity(private, generated)
        scores.update({f"upper_{_tau_key(tau)}": extraction_success_rate(private, generated, tau) for tau in taus})
    scores["n_extracted"] = int(np.asarray(extracted).shape[0])
    return scores
