"""Receiver-operating figures of a score that should rank positives above negatives."""
from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann–Whitney AUC: P(score of a positive > score of a negative), ties counted half."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if not len(pos) or not len(neg):
        raise ValueError(f"an AUC needs positives and negatives; got {len(pos)} and {len(neg)}")
    values = np.concatenate([pos, neg])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = _average_ranks(values[order])
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(sorted_values: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, len(sorted_values) + 1, dtype=np.float64)
    _, start, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for s, c in zip(start, counts):
        if c > 1:
            ranks[s:s + c] = ranks[s:s + c].mean()
    return ranks


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float = 0.01) -> float:
    """Share of positives above the threshold that lets at most ``fpr`` of the negatives through
    (with fewer than 1/fpr negatives, that threshold is the highest negative score)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    threshold = np.quantile(scores[labels == 0], 1 - fpr, method="higher")
    return float((scores[labels == 1] > threshold).mean())
