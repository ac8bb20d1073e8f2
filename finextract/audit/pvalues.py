"""p-values and multiple-testing corrections, shared by the extraction audit and the membership test."""
from __future__ import annotations

import numpy as np


def empirical_p(scores: np.ndarray, null: np.ndarray) -> np.ndarray:
    """(1 + #{null ≥ score}) / (1 + size of the null): never 0, exact under exchangeability."""
    flat = np.sort(np.asarray(null, dtype=np.float64).ravel())
    at_least = len(flat) - np.searchsorted(flat, np.asarray(scores, dtype=np.float64), side="left")
    return (1.0 + at_least) / (1.0 + len(flat))


def bonferroni_min(p_values: dict[str, np.ndarray]) -> np.ndarray:
    """Smallest p over methods, times the number of methods, at most 1."""
    stacked = np.stack(list(p_values.values()))
    return np.minimum(1.0, stacked.min(axis=0) * len(stacked))


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """q-values: the smallest false-discovery rate at which each candidate would be called used."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(q)
    out[order] = np.minimum(q, 1.0)
    return out
