"""The authors' clustering, re-implemented from its description, as a baseline to compare against.

Behaviour (from docs/reference-implementation.md; no code of theirs was seen or used):

* cosine matrix with the diagonal set to 0;
* phi starts at the 25th percentile of 1,000 random matrix entries (diagonal included) and rises
  by 0.01; the graph has an edge i-j when similarity >= phi;
* "cliques" are a greedy partition: enumerate all maximal cliques with ``networkx.find_cliques``,
  take the largest (ties: the first enumerated), remove its nodes, repeat until the graph is empty;
  singletons count;
* each threshold's partition runs in a subprocess limited to 30 s; on timeout phi += 0.01;
* it stops at the first phi with #cliques >= N0 and keeps *all* of those cliques;
* a clique's central image is the member with the smallest L2 distance to the clique's mean
  descriptor. For L2-normalised descriptors this equals the member with the largest summed cosine
  similarity to the clique (||x - m||^2 = 1 - 2 x.m + ||m||^2), so the similarity matrix suffices
  when no descriptors are given.

One deliberate difference: the original draws its 1,000 entries *unseeded*, so two runs can start
at different phi; here ``seed`` makes the benchmark reproducible.
"""
from __future__ import annotations

import multiprocessing as mp
import resource
import time
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class AuthorsResult:
    centers: np.ndarray  # one central image per kept clique (often more than N0)
    cliques: tuple[np.ndarray, ...]
    threshold: float
    trials: pd.DataFrame  # threshold, n_cliques (NaN on timeout), seconds, timed_out
    finished: bool  # False when total_timeout_s ran out before a threshold was accepted
    seconds: float  # wall clock
    cpu_seconds: float  # this process and its (reaped) subprocesses


def starting_threshold(similarity: np.ndarray, seed: int | None) -> float:
    """25th percentile of 1,000 random entries of the (zero-diagonal) matrix."""
    rng = np.random.default_rng(seed)
    flat = similarity.reshape(-1)
    return float(np.percentile(flat[rng.integers(0, flat.size, 1000)], 25))


def greedy_clique_partition(graph: nx.Graph) -> list[list[int]]:
    """Take the largest maximal clique (first enumerated among equals), remove it, repeat."""
    graph = graph.copy()
    cliques = []
    while graph.number_of_nodes():
        largest = max(nx.find_cliques(graph), key=len)  # max keeps the first of equal length
        cliques.append(sorted(largest))
        graph.remove_nodes_from(largest)
    return cliques


def _partition_child(graph: nx.Graph, conn) -> None:
    conn.send(greedy_clique_partition(graph))
    conn.close()


def _partition_with_timeout(graph: nx.Graph, timeout_s: float) -> list[list[int]] | None:
    """The partition computed in a forked subprocess, or None when it overruns ``timeout_s``."""
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_partition_child, args=(graph, send), daemon=True)
    child.start()
    send.close()
    result = receive.recv() if receive.poll(timeout_s) else None
    if result is None:
        child.terminate()
    child.join()
    receive.close()
    return result


def _threshold_graph(similarity: np.ndarray, phi: float) -> nx.Graph:
    graph = nx.Graph()
    graph.add_nodes_from(range(len(similarity)))
    i, j = np.nonzero(np.triu(similarity >= phi, 1))
    graph.add_edges_from(zip(i.tolist(), j.tolist()))
    return graph


def authors_clustering(similarity: np.ndarray, n_clusters: int, *, features: np.ndarray | None = None,
                       seed: int | None = 0, step: float = 0.01, time_cap_s: float = 30.0,
                       total_timeout_s: float | None = None) -> AuthorsResult:
    """Run the authors' procedure; ``total_timeout_s`` stops a benchmark that would run for hours."""
    start = time.perf_counter()
    cpu_start = _cpu_seconds()
    sim = np.array(similarity, dtype=np.float64, copy=True)
    np.fill_diagonal(sim, 0.0)
    phi0 = starting_threshold(sim, seed)
    rows = []
    cliques: list[list[int]] = []
    phi = phi0
    finished = False
    for k in range(10_000):
        phi = phi0 + k * step
        elapsed = time.perf_counter() - start
        if total_timeout_s is not None and elapsed >= total_timeout_s:
            break
        cap = time_cap_s if total_timeout_s is None else min(time_cap_s, total_timeout_s - elapsed)
        t0 = time.perf_counter()
        found = _partition_with_timeout(_threshold_graph(sim, phi), cap)
        rows.append({"threshold": phi, "n_cliques": np.nan if found is None else len(found),
                     "seconds": time.perf_counter() - t0, "timed_out": found is None})
        if found is not None and len(found) >= n_clusters:
            cliques, finished = found, True
            break
    members = tuple(np.array(c, dtype=np.int64) for c in cliques)
    centers = np.array([_center_l2(c, sim, features) for c in members], dtype=np.int64)
    return AuthorsResult(centers=centers, cliques=members, threshold=float(phi),
                         trials=pd.DataFrame(rows, columns=["threshold", "n_cliques", "seconds", "timed_out"]),
                         finished=finished, seconds=time.perf_counter() - start,
                         cpu_seconds=_cpu_seconds() - cpu_start)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _center_l2(members: np.ndarray, sim: np.ndarray, features: np.ndarray | None) -> int:
    """Member closest (L2) to the clique's mean descriptor."""
    if features is not None:
        block = features[members]
        return int(members[np.argmin(np.linalg.norm(block - block.mean(axis=0), axis=1))])
    block = sim[np.ix_(members, members)] + np.eye(len(members))  # unit descriptors: self-similarity 1
    return int(members[np.argmax(block.sum(axis=1))])
