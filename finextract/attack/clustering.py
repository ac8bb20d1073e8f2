"""Choosing N0 extracted images out of N generated ones by clique clustering (paper Sec. 4.3).

The paper: connect two generated images when the cosine similarity of their SSCD descriptors is
>= phi, raise phi until the graph holds exactly N0 cliques, and return each clique's central image
(the member with the highest mean similarity to the clique). "Cliques" are, as in the authors'
code, a greedy partition of the graph: take a largest clique, remove its vertices, repeat until no
vertex is left; singletons count.

What K = N0 means in practice: singletons count, so N images fit in N0 cliques only when the
graph is dense. With N = 50 N0, the chosen phi sits where one clique holds most images and the other
N0 - 1 are small. That is the paper's rule, kept as is; ``benchmarks/bench_clustering.py`` measures what
it costs in AS (docs/benchmarks.md, section 2).

Where and why this module differs from the authors' code (see
``docs/reference-implementation.md``; ``benchmarks/authors_clustering.py`` is a
faithful re-implementation kept for comparison):

* **Which phi.** The authors start at the 25th percentile of 1,000 *unseeded* random entries, step
  +0.01, and stop at the first phi with K >= N0, so they never reach K = N0 when the start already
  has more cliques (the usual case), and timeouts push phi further up. We search the whole range.
  Among the thresholds with exactly N0 cliques (usually an interval) ``pick="highest"`` (default)
  takes the highest, where cliques are tightest; ``pick="lowest"`` takes the lowest, the literal
  "raise phi until N0". On well-separated clusters the lowest merges unrelated images into cliques
  while the highest recovers the clusters (see the tests).
* **How phi is found.** K is not monotone in phi (a greedy partition can gain or lose cliques when
  one edge goes), so plain bisection can land on a side bump. We scan phi in 0.01 steps from the
  top (from the bottom for "lowest"), like the authors' stepping, and bisect over the sorted
  distinct similarities only inside the one step where the count crossed, because the graph changes
  only at those values: the result is an exact data value, reproducible, found in a few dozen
  evaluations. Two shortcuts keep that cheap: a greedy independent set of size N0 + 1 proves
  K > N0 for *any* clique partition and stays valid at every higher phi, so the high end is
  settled by bisection on it; and the scan and bisection use greedy cliques, with the exact count
  (below) only confirming the final pair of thresholds, galloping outwards where the two disagree.
* **Exactly N0 clusters.** The authors keep every clique at their phi, so their runs keep more than N0
  images, which inflates AS (docs/reference-implementation.md). When K jumps past N0 (no phi has exactly N0), we take the
  phi just past the jump and keep its N0 largest cliques; ties go to the higher mean internal
  similarity, then to the smallest image index.
* **A floor under phi** (``min_threshold``; the workflow's ``clustering.min_threshold``, default
  0.6 = the paper's lower success threshold tau). With singletons counted, N images fit in N0
  cliques only when the graph is dense, so as N grows the paper's phi falls and one clique swallows
  most of the images; more samples then extract *less* (docs/benchmarks.md, section 2). With the floor, phi is the paper's phi when that is above the floor, else the
  floor, keeping the N0 largest cliques there: a clique never joins images less alike than a
  copy at tau. ``benchmarks/threshold_choice.py`` and the N sweep measure both rules.
* **Largest clique.** The authors enumerate *all* maximal cliques (``nx.find_cliques``) at every
  step, which explodes when samples collapse onto a few modes (near-duplicates with a few missing
  edges have exponentially many maximal cliques). We need only *one* maximum clique: a branch and
  bound with a greedy-colouring bound (Tomita's MCQ, San Segundo's bitset form, vertices in
  degeneracy order) seeded with a greedy clique. Ties between maximum cliques go to the first one
  found in that order (ties: smallest index), not to networkx's enumeration order.
* **Per-threshold cap.** The authors give each threshold 30 s of wall clock in a subprocess and skip
  the threshold on timeout. We cap the branch and bound by a deterministic *work* budget
  (``work_cap``, bitset words touched while colouring) and by ``time_cap_s`` of CPU time
  (not wall clock, so a busy machine does not change the answer) as a safety net. When a cap is hit,
  the rest of that threshold's partition uses the best clique found so far (at least the greedy
  one) and the trials table says so (``exact`` False; ``timed_out`` for the CPU-time cap, the only
  way two runs can differ). At N >> 50 N0 the search is usually capped: cliques are then greedy ones.
* **Central image.** Paper definition (argmax of mean similarity to the other members, ties to the
  smallest index). The authors take the member closest (L2) to the mean descriptor, which is the same
  image for L2-normalised descriptors.
* float32 similarities throughout (SSCD descriptors are float32; it halves the N x N traffic).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from finextract.attack.clique_search import ThresholdSearch, choose_threshold, clock

#: Work budget per threshold, in bitset words touched while colouring (benchmarks/bench_clustering.py times
#: it). Deterministic, unlike a clock.
DEFAULT_WORK_CAP = 60_000_000

_BLOCK = 512  # rows per block when touching an N x N matrix and its transpose


@dataclass(frozen=True)
class ClusterResult:
    """N0 clusters of generated images and how the threshold was found.

    ``trials`` has one row per threshold evaluation: ``stage`` ("screen": greedy cliques,
    "search": exact count, "final": the chosen threshold's full partition), ``threshold``,
    ``n_cliques`` (a lower bound unless ``complete``: partitions stop once the answer is known, and
    for ``decided_by == "independent set"`` it is the size of the independent set found),
    ``exact`` (every clique proven largest), ``timed_out`` (the CPU-time cap hit), ``work``,
    ``seconds`` (wall clock) and ``cpu_seconds``.
    """

    centers: np.ndarray  # (n_clusters,) image indices, one per kept clique, in cluster order
    labels: np.ndarray  # (N,) cluster id 0..n_clusters-1, or -1 when the image's clique was not kept
    threshold: float  # phi: edge i-j when similarity >= phi
    trials: pd.DataFrame  # one row per threshold evaluated
    members: tuple[np.ndarray, ...]  # image indices of each kept clique, ascending
    mean_similarity: np.ndarray  # (N,) mean similarity to the other clique members; NaN if none
    n_cliques_at_threshold: int  # cliques in the partition at phi (> n_clusters when it jumped past)
    exact: bool  # every kept clique was proven a largest clique of what was left

    def assignments(self) -> pd.DataFrame:
        """Per-image table: which kept clique it is in, and whether it is that clique's centre."""
        is_center = np.zeros(len(self.labels), dtype=bool)
        is_center[self.centers] = True
        sizes = np.array([len(m) for m in self.members], dtype=np.int64)
        clique_size = np.where(self.labels >= 0, sizes[np.maximum(self.labels, 0)] if len(sizes) else 0, 0)
        return pd.DataFrame({
            "image": np.arange(len(self.labels)),
            "cluster": self.labels,
            "is_center": is_center,
            "clique_size": clique_size,
            "mean_similarity": self.mean_similarity,
        })


# --------------------------------------------------------------------------- input checks


def _checked_similarity(similarity: np.ndarray, n_clusters: int) -> np.ndarray:
    """Validate; return an exactly symmetric float32 matrix (upper triangle mirrored, diagonal 0).

    float32 because SSCD descriptors are float32 anyway and it halves the N x N memory traffic;
    the diagonal is never read as an edge.
    """
    sim = np.asarray(similarity)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square matrix, got shape {sim.shape}")
    if not (np.issubdtype(sim.dtype, np.floating) or np.issubdtype(sim.dtype, np.integer)):
        raise ValueError(f"similarity must be numeric, got dtype {sim.dtype}")
    n = sim.shape[0]
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {n_clusters!r}")
    if n < n_clusters:
        raise ValueError(f"cannot extract n_clusters={n_clusters} images from N={n} generated images (N < N0)")
    finite = np.isfinite(sim)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        what = "NaN" if np.isnan(sim[i, j]) else "an infinite value"
        raise ValueError(f"similarity matrix contains {what} at ({i}, {j}); "
                         f"{int((~finite).sum())} non-finite entries in all")
    sim32 = sim.astype(np.float32)  # always a copy: the caller's matrix is never modified
    asymmetry = 0.0
    # Row blocks against column blocks: a plain S - S.T walks memory column-wise (2x slower at N = 5000).
    for start in range(0, n, _BLOCK):
        rows, cols = sim32[start:start + _BLOCK], sim32[:, start:start + _BLOCK].T
        asymmetry = max(asymmetry, float(np.max(np.abs(rows - cols))))
        if asymmetry > 1e-4:
            raise ValueError(f"similarity matrix is not symmetric (max |S - S^T| = {asymmetry:.3g})")
    upper = np.triu(sim32, 1)
    for start in range(0, n, _BLOCK):  # mirror the upper triangle: exactly symmetric
        sim32[start:start + _BLOCK] = upper[start:start + _BLOCK] + upper[:, start:start + _BLOCK].T
    return sim32  # diagonal 0


# --------------------------------------------------------------------------- the clusters


def _clique_order(cliques: list[np.ndarray], similarity: np.ndarray) -> list[int]:
    """Rank cliques: larger first, then higher mean internal similarity, then smallest member.

    The mean is computed only for cliques that tie in size with another (an N x N block otherwise).
    """
    sizes = np.array([len(c) for c in cliques])
    tied = np.isin(sizes, np.flatnonzero(np.bincount(sizes) > 1))

    def key(i: int) -> tuple[int, float, int]:
        mean = _mean_internal(similarity, cliques[i]) if tied[i] else 0.0
        return (-int(sizes[i]), -mean, int(cliques[i].min()))
    return sorted(range(len(cliques)), key=key)


def _mean_internal(similarity: np.ndarray, members: np.ndarray) -> float:
    if len(members) < 2:
        return float("-inf")
    block = similarity[np.ix_(members, members)]
    return float(block.sum(dtype=np.float64) / (len(members) * (len(members) - 1)))  # the diagonal is 0


def _center_of(similarity: np.ndarray, members: np.ndarray) -> tuple[int, np.ndarray]:
    """Paper's central image: argmax of mean similarity to the other members (ties: smallest index)."""
    if len(members) == 1:
        return int(members[0]), np.array([np.nan])
    block = similarity[np.ix_(members, members)]
    mean = block.sum(axis=1, dtype=np.float64) / (len(members) - 1)
    return int(members[int(np.argmax(mean))]), mean


def _result_at(sim: np.ndarray, search: ThresholdSearch, chosen: int, n_clusters: int,
               exact: bool = True) -> ClusterResult:
    """The N0 largest cliques of the partition at ``search.thresholds[chosen]`` and their centres."""
    n = len(sim)
    start = clock()
    final = search.partition(chosen, exact=exact)
    final.take(n)  # the whole partition: every image gets a clique and the count is exact
    search.record("final", chosen, len(final.cliques), True, "partition", final, start)

    cliques = list(final.cliques)
    ranked = _clique_order(cliques, sim)[:n_clusters]
    labels = np.full(n, -1, dtype=np.int64)
    mean_similarity = np.full(n, np.nan)
    centers = np.empty(len(ranked), dtype=np.int64)
    for cluster, i in enumerate(ranked):
        members = cliques[i]
        centers[cluster], mean = _center_of(sim, members)
        labels[members] = cluster
        mean_similarity[members] = mean
    return ClusterResult(
        centers=centers,
        labels=labels,
        threshold=float(final.threshold),
        trials=pd.DataFrame(search.rows),
        members=tuple(cliques[i] for i in ranked),
        mean_similarity=mean_similarity,
        n_cliques_at_threshold=len(cliques),
        exact=exact and all(final.proven[i] for i in ranked),
    )


def clusters_at_threshold(similarity: np.ndarray, n_clusters: int, threshold: float, *, exact: bool = True,
                          time_cap_s: float = 30.0, work_cap: int | None = DEFAULT_WORK_CAP) -> ClusterResult:
    """The ``n_clusters`` largest cliques at a fixed phi (no search), e.g. Carlini et al.'s fixed threshold.

    ``exact=False`` uses greedy cliques (fast, for scanning many thresholds). Fewer than
    ``n_clusters`` centres come back only when the graph has fewer vertices than that.
    """
    sim = _checked_similarity(similarity, n_clusters)
    search = ThresholdSearch(sim, n_clusters, work_cap, time_cap_s)
    chosen = int(np.searchsorted(search.thresholds, np.float32(threshold), side="left"))
    return _result_at(sim, search, min(chosen, search.top), n_clusters, exact)


def extract_clusters(similarity: np.ndarray, n_clusters: int, *, time_cap_s: float = 30.0,
                     work_cap: int | None = DEFAULT_WORK_CAP,
                     pick: Literal["highest", "lowest"] = "highest",
                     min_threshold: float | None = None) -> ClusterResult:
    """Exactly ``n_clusters`` central images from an N x N cosine-similarity matrix.

    ``pick`` chooses among thresholds with exactly N0 cliques: "highest" (default, tightest
    cliques) or "lowest" (the paper's "raise phi until N0"); see the module docstring.
    ``min_threshold``: phi never goes below it; where N0 cliques would need a lower phi, the N0
    largest cliques at ``min_threshold`` are kept (None: the paper's rule, no floor).
    ``work_cap`` (deterministic) and ``time_cap_s`` (CPU seconds) bound the exact clique search at
    each threshold; ``work_cap=None`` leaves only the CPU-time cap.
    """
    sim = _checked_similarity(similarity, n_clusters)
    if min_threshold is not None and not -1.0 <= min_threshold <= 1.0:
        raise ValueError(f"min_threshold must be a cosine similarity in [-1, 1] or None, got {min_threshold!r}")
    search, chosen = choose_threshold(sim, n_clusters, pick, work_cap, time_cap_s, min_threshold)
    return _result_at(sim, search, chosen, n_clusters)
