"""The world criteria (docs/tiny-world.md): is the base model θ a generative prior, or a lookup table?

Everything here works on image descriptors (rows L2-normalised, cosine = dot product), so it can be tested
on toy vectors. Fréchet distances are computed after a PCA fitted on a third set of real images that
neither side of any comparison contains, at matched sample sizes: the Fréchet distance of finite samples
is biased upwards by roughly d/n, so a sample-vs-real figure is only compared with a real-vs-real floor of
the same n.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray        # [D]
    components: np.ndarray  # [D, k]

    def apply(self, descriptors: np.ndarray) -> np.ndarray:
        return (np.asarray(descriptors, np.float64) - self.mean) @ self.components


def fit_projection(descriptors: np.ndarray, dims: int = 64) -> Projection:
    """Principal axes of ``descriptors`` (the fit set, used for nothing else)."""
    x = np.asarray(descriptors, np.float64)
    if dims > min(x.shape):
        raise ValueError(f"cannot fit {dims} principal axes on {x.shape[0]} descriptors of {x.shape[1]} dims")
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return Projection(mean, vt[:dims].T)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + Tr(Σa + Σb − 2(ΣaΣb)^½) of two descriptor sets (rows are samples)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((Σa Σb)^½) = Σ √λ of the symmetric Σa^½ Σb Σa^½ (same eigenvalues), stable for PSD matrices
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    trace_root = np.sqrt(np.linalg.eigvalsh(root_a @ cov_b @ root_a).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_root)


def mean_pairwise_similarity(descriptors: np.ndarray) -> float:
    """Mean cosine over all distinct pairs: near 1 when every sample is the same image (mode collapse)."""
    x = np.asarray(descriptors, np.float64)
    n = len(x)
    if n < 2:
        raise ValueError("pairwise similarity needs at least two descriptors")
    gram = x @ x.T
    return float((gram.sum() - np.trace(gram)) / (n * (n - 1)))


def near_copy_share(samples: np.ndarray, corpus: np.ndarray, threshold: float = 0.6) -> float:
    """Share of samples whose most similar corpus image scores ≥ ``threshold`` (a copy, not a new image)."""
    best = (np.asarray(samples, np.float32) @ np.asarray(corpus, np.float32).T).max(axis=1)
    return float((best >= threshold).mean())


@dataclass(frozen=True)
class Bounds:
    """The thresholds of W1 and W2, fixed in docs/tiny-world.md before the first long training run."""
    fd_ratio: float = 2.0              # FD(samples, real) ≤ fd_ratio × FD(real, other real)
    pairwise_margin_new: float = 0.10  # W1: pairwise similarity ≤ the real images' + this
    pairwise_margin_heldout: float = 0.15  # W2
    copy_share_aim: float = 0.20       # W1: reported, aimed at


@dataclass(frozen=True)
class Figures:
    """One row of the criteria table: samples of one kind against real images."""
    name: str
    n: int
    fd: float
    fd_floor: float
    pairwise: float
    pairwise_real: float
    copy_share: float | None = None

    @property
    def fd_ratio(self) -> float:
        return self.fd / self.fd_floor

    def passes(self, bounds: Bounds, margin: float) -> bool:
        return self.fd_ratio <= bounds.fd_ratio and self.pairwise <= self.pairwise_real + margin


def figures(name: str, samples: np.ndarray, real: np.ndarray, floor_a: np.ndarray, floor_b: np.ndarray,
            projection: Projection, corpus: np.ndarray | None = None, copy_threshold: float = 0.6) -> Figures:
    """FD of ``samples`` to ``real`` beside the floor FD(``floor_a``, ``floor_b``), all four sets of equal size."""
    sizes = {len(samples), len(real), len(floor_a), len(floor_b)}
    if len(sizes) != 1:
        raise ValueError(f"Fréchet distances are compared at one sample size; got sizes {sorted(sizes)}")
    return Figures(
        name=name, n=len(samples),
        fd=frechet_distance(projection.apply(samples), projection.apply(real)),
        fd_floor=frechet_distance(projection.apply(floor_a), projection.apply(floor_b)),
        pairwise=mean_pairwise_similarity(samples), pairwise_real=mean_pairwise_similarity(real),
        copy_share=None if corpus is None else near_copy_share(samples, corpus, copy_threshold))


def cfg_helps(similarity_w1: np.ndarray, similarity_w3: np.ndarray) -> tuple[float, float, bool]:
    """W3: mean similarity of a sample to its caption's real image at CFG w' = 3 ≥ at w' = 1 (same seeds)."""
    low, high = float(np.mean(similarity_w1)), float(np.mean(similarity_w3))
    return low, high, high >= low
