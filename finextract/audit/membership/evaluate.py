"""How well a score separates known members from non-members: ROC AUC and TPR at low FPR, each
with a percentile bootstrap interval (members and non-members resampled separately, so every
resample keeps the folder's counts)."""
from __future__ import annotations

import numpy as np

from finextract.audit.roc import roc_auc, tpr_at_fpr

FIGURES = ("AUC", "TPR@1%FPR", "TPR@0.1%FPR")


def roc_figures(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"AUC": roc_auc(scores, labels), "TPR@1%FPR": tpr_at_fpr(scores, labels, 0.01),
            "TPR@0.1%FPR": tpr_at_fpr(scores, labels, 0.001)}


def bootstrap_roc(scores: np.ndarray, labels: np.ndarray, resamples: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict[str, float]:
    """The figures and, for each, ``<figure>_lo`` / ``<figure>_hi``: the central ``level`` interval."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    row = roc_figures(scores, labels)
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(resamples) for name in FIGURES}
    both = np.r_[np.ones(len(pos), int), np.zeros(len(neg), int)]
    for i in range(resamples):
        resampled = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        for name, value in roc_figures(resampled, both).items():
            draws[name][i] = value
    tail = (1 - level) / 2
    for name in FIGURES:
        row[f"{name}_lo"], row[f"{name}_hi"] = (float(v) for v in np.quantile(draws[name], [tail, 1 - tail]))
    return row
