"""Choosing N0 extracted images out of N generated ones by clique clustering (paper Sec. 4.3).

The paper: connect two generated images when the cosine similarity of their SSCD descriptors is
>= phi, raise phi until the graph holds exactly N0 cliques, and return each clique's central image
(the member with the highest mean similarity to the clique). "Cliques" are, as in the authors'
code, a greedy partition of the graph: take a largest clique, remove its vertices, repeat until no
vertex is left; singletons count.

Where and why this module differs from the authors' code (see
``/work/shared/notes/reference-implementation.md``; ``benchmarks/authors_clustering.py`` is a
faithful re-implementation kept for comparison):

* **Threshold search.** The authors start phi at the 25th percentile of 1,000 *unseeded* random
  entries and step +0.01. We bisect over the sorted distinct off-diagonal similarities, because the
  graph only changes at those values: the answer is exact, needs ~log2(N^2/2) evaluations instead
  of up to 100, and is reproducible. The invariant is K(lo) < N0 <= K(hi), where K is the number of
  cliques in the partition; the search starts from the complete graph (K = 1) and the empty graph
  (K = N). K is monotone in phi only "almost" (a greedy partition can lose a clique when an edge
  disappears), so bisection returns *a* crossing, deterministically; when K is monotone it is the
  same phi as the paper's "raise phi until K = N0".
* **Exactly N0 clusters.** The authors stop at K >= N0 and keep every clique (demo runs kept 12 to 99
  images for N0 = 10, which inflates AS). When K jumps past N0 at the chosen phi, we keep the N0
  largest cliques; ties go to the higher mean internal similarity, then to the smallest image index.
* **Largest clique.** The authors enumerate *all* maximal cliques (``nx.find_cliques``) at every
  step, which explodes when samples collapse onto a few modes (many near-duplicates with a few
  missing edges have exponentially many maximal cliques). We need only *one* maximum clique, so we
  use a branch and bound with a greedy-colouring bound (Tomita's MCQ/MCS family, in San Segundo's
  bitset form) seeded with a greedy clique. Ties between maximum cliques go to the first one the
  search finds in a degeneracy order of the graph (ties: smallest index), not to networkx's
  enumeration order.
* **Per-threshold cap.** The authors give each threshold 30 s in a subprocess and skip the
  threshold on timeout. We cap the branch and bound by a *work* budget (colouring steps, weighted by
  bitset size), which is deterministic, plus the wall-clock ``time_cap_s`` as a safety net. When the
  cap is hit the rest of that threshold's partition uses the best clique found so far (at least the
  greedy one), and the trials table says so (``exact`` False, ``timed_out`` for the wall clock).
  Only a wall-clock timeout can make two runs differ.
* **Central image.** Paper definition (argmax of mean similarity within the clique), not the authors'
  minimum L2 distance to the mean descriptor; ties go to the smallest index.
* **Cheap certificates.** A greedy independent set of size N0 proves K >= N0 for *any* clique
  partition, so most thresholds above the answer are decided without a clique search.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

#: Work budget per threshold, in bitset words touched while colouring (~1-3 s of CPU on the
#: 2-core reference machine). Deterministic, unlike a wall-clock limit.
DEFAULT_WORK_CAP = 60_000_000

#: Increment of the coarse threshold scan, as in the authors' code; the crossing is then refined
#: exactly over the distinct similarity values inside the one step where the count crossed N0.
SCAN_STEP = 0.01

_CLOCK_CHECK_EVERY = 32
_BLOCK = 512  # rows per block when touching an N x N matrix and its transpose  # branch-and-bound nodes between wall-clock checks


@dataclass(frozen=True)
class ClusterResult:
    """N0 clusters of generated images and how the threshold was found."""

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


# --------------------------------------------------------------------------- one threshold


class _CliqueSearch:
    """Largest cliques of one threshold graph.

    Callers speak in positions (rows of ``adjacency``). The branch and bound works on Python-int
    bitsets whose bit order is a degeneracy order of this graph (most-connected core first), which
    keeps the greedy colouring bound tight: measured 5-12x less work than degree order at N = 500.
    """

    def __init__(self, adjacency: np.ndarray, work_cap: int | None, time_cap_s: float):
        self.adjacency = adjacency  # bool, no self loops
        self.words = max(1, (len(adjacency) + 63) // 64)
        self._rows: list[int] | None = None
        self.bit_order = np.arange(len(adjacency))
        self.work_left = float("inf") if work_cap is None else float(work_cap)
        self.time_left = time_cap_s  # spent only while this threshold is being worked on
        self.deadline = float("inf")
        self.timed_out = False
        self.capped = False  # the work or time cap stopped a search: later cliques are greedy ones
        self.work_done = 0

    @property
    def rows(self) -> list[int]:
        """Adjacency as Python ints: bit j of rows[i] is the edge between bits i and j (built lazily)."""
        if self._rows is None:
            self.bit_order = _degeneracy_order(self.adjacency)  # bit -> position
            permuted = self.adjacency[np.ix_(self.bit_order, self.bit_order)]
            packed = np.packbits(permuted, axis=1, bitorder="little")
            self._rows = [int.from_bytes(row.tobytes(), "little") for row in packed]
        return self._rows

    def to_bits(self, positions_mask: np.ndarray) -> int:
        _ = self.rows
        return int.from_bytes(np.packbits(positions_mask[self.bit_order], bitorder="little").tobytes(), "little")

    def to_positions(self, bits: int) -> np.ndarray:
        out = []
        while bits:
            low = bits & -bits
            out.append(low.bit_length() - 1)
            bits ^= low
        return np.sort(self.bit_order[np.array(out, dtype=np.int64)])

    def greedy_clique(self, candidates: np.ndarray, degree: np.ndarray) -> np.ndarray:
        """Repeatedly add the candidate with most neighbours among the candidates (ties: first position).

        Candidates adjacent to all others would be picked next anyway, so they are added in bulk;
        that keeps near-complete graphs (N >> N0) linear instead of one numpy pass per member.
        """
        adjacency = self.adjacency
        pool = candidates.copy()
        deg = degree.astype(np.int64, copy=True)  # neighbours within the pool
        clique: list[np.ndarray] = []
        while True:
            positions = np.flatnonzero(pool)
            if not len(positions):
                break
            pool_deg = deg[positions]
            universal = positions[pool_deg == len(positions) - 1]
            if len(universal):
                clique.append(universal)
                pool[universal] = False
                deg -= len(universal)  # every pool member was adjacent to each of them
                continue
            v = int(positions[np.argmax(pool_deg)])
            clique.append(np.array([v]))
            dropped = pool & ~adjacency[v]
            pool &= adjacency[v]
            deg -= np.count_nonzero(adjacency[dropped], axis=0)
        return np.sort(np.concatenate(clique)) if clique else np.empty(0, dtype=np.int64)

    def _colour_classes(self, candidates: int, min_colour: int) -> tuple[list[int], list[int]]:
        """Greedy sequential colouring in bit order; only vertices with colour >= min_colour are kept."""
        rows = self.rows
        verts: list[int] = []
        colours: list[int] = []
        uncoloured = candidates
        colour = 0
        count = 0
        while uncoloured:
            colour += 1
            avail = uncoloured
            while avail:
                low = avail & -avail
                v = low.bit_length() - 1
                avail = (avail ^ low) & ~rows[v]
                uncoloured ^= low
                count += 1
                if colour >= min_colour:
                    verts.append(v)
                    colours.append(colour)
        self.work_done += count * self.words
        self.work_left -= count * self.words
        return verts, colours

    def max_clique(self, candidates: int, incumbent: int) -> int:
        """Branch and bound with a colouring bound (MCQ); returns the best clique found when capped."""
        best, best_size = incumbent, incumbent.bit_count()
        if self.capped:
            return best
        rows = self.rows
        verts, colours = self._colour_classes(candidates, best_size + 1)
        # frame: [clique bits, clique size, candidate bits, branch vertices, their colours, next index]
        stack = [[0, 0, candidates, verts, colours, len(verts) - 1]]
        nodes = 0
        while stack:
            frame = stack[-1]
            i = frame[5]
            if i < 0:
                stack.pop()
                continue
            frame[5] = i - 1
            clique, size = frame[0], frame[1]
            if size + frame[4][i] <= best_size:
                stack.pop()  # colours ascend along the list, so every remaining vertex is bounded too
                continue
            v = frame[3][i]
            bit = 1 << v
            sub = frame[2] & rows[v]
            frame[2] &= ~bit
            if not sub:
                if size + 1 > best_size:
                    best, best_size = clique | bit, size + 1
                continue
            nodes += 1
            if nodes % _CLOCK_CHECK_EVERY == 0 and time.perf_counter() > self.deadline:
                self.timed_out = True
            if self.work_left <= 0 or self.timed_out:
                self.capped = True
                return best
            sub_verts, sub_colours = self._colour_classes(sub, best_size - size)
            if sub_verts:
                stack.append([clique | bit, size + 1, sub, sub_verts, sub_colours, len(sub_verts) - 1])
        return best


class _Partition:
    """The greedy clique partition of one threshold graph, grown lazily (callers often need only N0 parts).

    ``exact=False`` takes the greedy clique at every step (used to screen thresholds cheaply);
    ``exact=True`` improves it to a largest clique by branch and bound, within the caps.
    """

    def __init__(self, adjacency: np.ndarray, threshold: float, exact: bool, work_cap: int | None,
                 time_cap_s: float):
        self.threshold = threshold
        self.exact_search = exact
        self.search = _CliqueSearch(adjacency, work_cap, time_cap_s)
        self.remaining = np.ones(len(adjacency), dtype=bool)
        self.degree = np.count_nonzero(adjacency, axis=0)  # degree within `remaining`
        self.cliques: list[np.ndarray] = []  # positions, ascending, in the order they were taken
        self.proven: list[bool] = []  # whether each clique is a proven largest clique of what was left
        self.seconds = 0.0

    @property
    def complete(self) -> bool:
        return not self.remaining.any()

    def take(self, n: int) -> None:
        """Extend the partition to ``n`` cliques, or until every vertex is covered."""
        start = time.perf_counter()
        self.search.deadline = start + self.search.time_left
        while len(self.cliques) < n and self.remaining.any():
            self._take_one()
        elapsed = time.perf_counter() - start
        self.search.time_left -= elapsed
        self.seconds += elapsed

    def _take_one(self) -> None:
        positions = np.flatnonzero(self.remaining)
        if self.degree[positions].max() == 0:  # no edges left: every vertex is a singleton
            self.cliques.extend(np.array([p]) for p in positions)
            self.proven.extend([True] * len(positions))
            self.remaining[:] = False
            return
        clique = self.search.greedy_clique(self.remaining, self.degree)
        proven = False
        if self.exact_search:
            # A clique larger than the greedy one needs members of degree >= its size.
            pool = self.remaining & (self.degree >= len(clique))
            incumbent = np.zeros(len(pool), dtype=bool)
            incumbent[clique] = True
            best = self.search.max_clique(self.search.to_bits(pool), self.search.to_bits(incumbent))
            clique = self.search.to_positions(best)
            proven = not self.search.capped
        self.cliques.append(clique)
        self.proven.append(proven)
        self.remaining[clique] = False
        self.degree -= np.count_nonzero(self.search.adjacency[clique], axis=0)


def _degeneracy_order(adjacency: np.ndarray) -> np.ndarray:
    """Smallest-last vertex order, reversed: the densest core first (ties: first position)."""
    n = len(adjacency)
    degree = np.count_nonzero(adjacency, axis=0).astype(np.int64)
    removed_mark = 2 * n + 1  # stays above any live degree after later subtractions
    removal = np.empty(n, dtype=np.int64)
    for k in range(n):
        v = int(np.argmin(degree))
        removal[k] = v
        degree -= adjacency[v]
        degree[v] = removed_mark
    return removal[::-1].copy()


def _independent_set_size(adjacency: np.ndarray, enough: int) -> int:
    """Greedy min-degree independent set, stopped at ``enough`` vertices.

    Every clique partition has at least as many parts as any independent set has vertices, and an
    independent set stays independent when phi rises, so this certificate is monotone in phi.
    """
    live = np.ones(len(adjacency), dtype=bool)
    degree = np.count_nonzero(adjacency, axis=0)
    found = 0
    while found < enough and live.any():
        positions = np.flatnonzero(live)
        v = int(positions[np.argmin(degree[positions])])
        found += 1
        dropped = live & adjacency[v]
        dropped[v] = True
        live &= ~dropped
        degree -= np.count_nonzero(adjacency[dropped], axis=0)
    return found


# --------------------------------------------------------------------------- choosing the threshold


def _distinct_thresholds(similarity: np.ndarray) -> np.ndarray:
    """Sorted distinct off-diagonal similarities, plus one value above them all (the empty graph)."""
    n = len(similarity)
    upper = np.concatenate([similarity[i, i + 1:] for i in range(n - 1)]) if n > 1 else similarity[:0, 0]
    values = np.unique(upper)
    top = np.nextafter(values[-1], np.inf) if len(values) else np.inf
    return np.append(values, top).astype(similarity.dtype)


def _bisect(lo: int, hi: int, reaches: Callable[[int], bool]) -> tuple[int, int]:
    """Narrow a bracket with not reaches(lo) and reaches(hi) down to adjacent indices."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


class _ThresholdSearch:
    """Brackets the count K(phi) of the greedy clique partition around a target, recording every evaluation.

    ``reaches(i)`` answers "K(thresholds[i]) >= target?"; bisection on it returns adjacent indices
    lo < hi with K(lo) < target <= K(hi).
    """

    def __init__(self, similarity_ordered: np.ndarray, target: int, work_cap: int | None, time_cap_s: float):
        self.similarity = similarity_ordered
        self.target = target
        self.work_cap = work_cap
        self.time_cap_s = time_cap_s
        self.thresholds = _distinct_thresholds(similarity_ordered)
        self.partitions: dict[tuple[int, bool], _Partition] = {}
        self.lowest_certified = self.top  # K >= target proven here and at every higher index
        self.highest_uncertified = 0  # the greedy independent set fell short here
        self.rows: list[dict] = []

    @property
    def top(self) -> int:
        return len(self.thresholds) - 1  # above every similarity: no edges, K = N

    def adjacency(self, index: int) -> np.ndarray:
        adjacency = self.similarity >= self.thresholds[index]
        np.fill_diagonal(adjacency, False)
        return adjacency

    def partition(self, index: int, exact: bool, adjacency: np.ndarray | None = None) -> _Partition:
        key = (index, exact)
        if key not in self.partitions:
            adjacency = self.adjacency(index) if adjacency is None else adjacency
            self.partitions[key] = _Partition(adjacency, float(self.thresholds[index]), exact, self.work_cap,
                                              self.time_cap_s)
        return self.partitions[key]

    def certify(self, index: int, stage: str = "screen") -> bool:
        """Does a greedy independent set prove K(thresholds[index]) >= target?

        A set found at one threshold stays independent at every higher one, so success there
        answers all higher indices; below a failure we do not try again (the partition decides).
        """
        if index >= self.lowest_certified:
            return True
        if index <= self.highest_uncertified:
            return False
        start = time.perf_counter()
        size = _independent_set_size(self.adjacency(index), self.target)
        if size >= self.target:
            self.lowest_certified = index
        else:
            self.highest_uncertified = index
        self.record(stage, index, size, False, "independent set", None, time.perf_counter() - start)
        return size >= self.target

    def reaches(self, index: int, exact: bool) -> bool:
        """Is K(thresholds[index]) >= target? The certificate first, then the partition."""
        if index == self.top:
            return len(self.similarity) >= self.target
        if index == 0:  # the lowest threshold keeps every edge: one clique
            return self.target <= 1
        stage = "search" if exact else "screen"
        if self.certify(index, stage):
            return True
        start = time.perf_counter()
        part = self.partition(index, exact)
        part.take(self.target)
        self.record(stage, index, len(part.cliques), part.complete, "partition", part,
                    time.perf_counter() - start)
        return len(part.cliques) >= self.target

    def record(self, stage: str, index: int, n_cliques: int, complete: bool, decided_by: str,
               part: _Partition | None, seconds: float) -> None:
        search = part.search if part is not None else None
        self.rows.append({
            "stage": stage,
            "threshold": float(self.thresholds[index]),
            "n_cliques": int(n_cliques),  # a lower bound unless `complete`
            "complete": bool(complete),
            "decided_by": decided_by,
            "exact": bool(part is not None and part.exact_search and all(part.proven)),
            "timed_out": bool(search is not None and search.timed_out),
            "work": int(search.work_done) if search is not None else 0,
            "seconds": float(seconds),
        })

    def grid(self, step: float) -> np.ndarray:
        """Indices of the thresholds that a scan in ``step`` increments of phi would visit (plus both ends)."""
        values = self.thresholds[:-1]
        if not len(values):
            return np.array([0])
        n_steps = int(np.ceil((float(values[-1]) - float(values[0])) / step))
        phis = float(values[-1]) - step * np.arange(n_steps + 1)
        indices = np.searchsorted(values, phis.astype(values.dtype), side="left")  # graph at phi = graph there
        return np.unique(np.concatenate([[0, self.top], indices]))

    def bracket(self, descending: bool, step: float) -> tuple[int, int]:
        """Adjacent lo < hi with K(lo) < target <= K(hi) for the capped exact count.

        K is not monotone, so the bracket is found by scanning phi in ``step`` increments from the
        top (``descending``) or the bottom, like the authors' 0.01 steps, and then bisecting the one
        interval where the scan crossed the target. The scan and bisection use greedy cliques (cheap);
        the exact count then confirms the bracket, galloping outwards only where the two disagree.
        """
        screen = lambda i: self.reaches(i, exact=False)  # noqa: E731
        exact = lambda i: self.reaches(i, exact=True)  # noqa: E731
        grid = self.grid(step)
        if descending:
            # Certificates are monotone in phi, so bisect for the lowest certified grid point
            # first; every grid point above it is certified, and the scan starts there.
            j = int(_bisect(0, len(grid) - 1, lambda g: self.certify(int(grid[g])))[1])
            while j > 0 and screen(int(grid[j - 1])):
                j -= 1
            lo, hi = int(grid[j - 1]), int(grid[j])
        else:
            j = 0
            while j < len(grid) - 1 and not screen(int(grid[j + 1])):
                j += 1
            lo, hi = int(grid[j]), int(grid[j + 1])
        lo, hi = _bisect(lo, hi, screen)
        if not exact(hi):
            lo, hi = self._gallop_up(hi, exact)
            lo, hi = _bisect(lo, hi, exact)
        elif exact(lo):
            lo, hi = self._gallop_down(lo, exact)
            lo, hi = _bisect(lo, hi, exact)
        return lo, hi

    def _gallop_up(self, lo: int, reaches: Callable[[int], bool]) -> tuple[int, int]:
        step = 1
        while True:
            hi = min(lo + step, self.top)
            if reaches(hi):
                return lo, hi
            lo, step = hi, step * 2

    def _gallop_down(self, hi: int, reaches: Callable[[int], bool]) -> tuple[int, int]:
        step = 1
        while True:
            lo = max(hi - step, 0)
            if not reaches(lo):
                return lo, hi
            hi, step = lo, step * 2


def _choose_threshold(similarity_ordered: np.ndarray, n_clusters: int, pick: str, work_cap: int | None,
                      time_cap_s: float) -> tuple[_ThresholdSearch, int]:
    """The search object (holding partitions and trials) and the index of the chosen threshold."""
    if pick not in ("highest", "lowest"):
        raise ValueError(f"pick must be 'highest' or 'lowest', got {pick!r}")
    n = len(similarity_ordered)
    # lowest: the first phi (going up) with K >= N0.  highest: the last phi with K <= N0, found as
    # the crossing of K >= N0 + 1; if K jumps past N0 there, fall back to the phi just above.
    target = n_clusters if pick == "lowest" else n_clusters + 1
    search = _ThresholdSearch(similarity_ordered, target, work_cap, time_cap_s)
    if target <= 1 or search.top == 0:
        return search, 0
    if target > n:
        return search, search.top
    lo, hi = search.bracket(descending=(pick == "highest"), step=SCAN_STEP)
    if pick == "lowest":
        return search, hi
    if lo == 0:
        return search, (0 if n_clusters == 1 else hi)
    below = search.partition(lo, exact=True)
    below.take(n_clusters + 1)
    return search, (lo if len(below.cliques) == n_clusters else hi)


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


def extract_clusters(similarity: np.ndarray, n_clusters: int, *, time_cap_s: float = 30.0,
                     work_cap: int | None = DEFAULT_WORK_CAP, pick: str = "highest") -> ClusterResult:
    """Exactly ``n_clusters`` central images from an N x N cosine-similarity matrix.

    ``pick`` chooses among thresholds with exactly N0 cliques: "highest" (default, tightest
    cliques) or "lowest" (the paper's "raise phi until N0"); see the module docstring.
    ``time_cap_s`` (wall clock) and ``work_cap`` (deterministic) bound the clique search at each
    threshold; ``work_cap=None`` leaves only the wall clock.
    """
    sim = _checked_similarity(similarity, n_clusters)
    n = len(sim)
    search, chosen = _choose_threshold(sim, n_clusters, pick, work_cap, time_cap_s)

    start = time.perf_counter()
    final = search.partition(chosen, exact=True)
    final.take(n)  # the whole partition: every image gets a clique and the count is exact
    search.record("final", chosen, len(final.cliques), True, "partition", final, time.perf_counter() - start)

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
        exact=all(final.proven[i] for i in ranked),
    )
