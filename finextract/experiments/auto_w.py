"""Choosing w' without the private images (`w: auto`).

The paper picks w' per model as "the value that achieves the highest AS" — with the private images
in hand. An attacker has θ, θ', the caption and what they generate. What memorisation looks like
from there: the N generated images fall into N0 tight groups (repeated copies of each training
image), and the groups are distinct from each other. Too small a w' leaves the samples diffuse
(loose cliques); too large a w' collapses them onto fewer modes or artefacts (cliques that resemble
each other). The separation score rewards the first and penalises the second:

    separation = mean over kept cliques of the centre's mean similarity to its clique
                 − mean similarity between distinct centres

A singleton clique scores 0 cohesion (no repetition seen). The w' with the highest separation wins;
ties go to the smaller w' (fewer artefacts for the same evidence). The criterion was fixed before
the guidance study ran (docs/guidance-study.md); its regret against the oracle w' is measured there.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from finextract.attack.clustering import ClusterResult


def clique_cohesion(similarity: np.ndarray, result: ClusterResult) -> np.ndarray:
    """Per kept clique: the centre's mean similarity to the other members (0 for a singleton)."""
    out = np.zeros(len(result.members))
    for i, (centre, members) in enumerate(zip(result.centers, result.members)):
        others = members[members != centre]
        if len(others):
            out[i] = float(similarity[centre, others].mean())
    return out


def centre_overlap(similarity: np.ndarray, result: ClusterResult) -> float:
    """Mean similarity between distinct centres (0 with fewer than two)."""
    centres = np.asarray(result.centers)
    if len(centres) < 2:
        return 0.0
    block = similarity[np.ix_(centres, centres)]
    off_diagonal = block[~np.eye(len(centres), dtype=bool)]
    return float(off_diagonal.mean())


def separation(similarity: np.ndarray, result: ClusterResult) -> float:
    """The `w: auto` score of one sampling run's clustering (higher: looks more like N0 extracted copies)."""
    return float(clique_cohesion(similarity, result).mean() - centre_overlap(similarity, result))


def choose_w(scores: Mapping[float, float]) -> float:
    """The w' with the highest separation score; ties (within 1e-9) go to the smaller w'."""
    if not scores:
        raise ValueError("choose_w needs at least one candidate w'")
    best = max(scores.values())
    return min(w for w, score in scores.items() if score >= best - 1e-9)
