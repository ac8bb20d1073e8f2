"""Clique clustering: exactly N0 centres, one per true cluster, deterministic, and clear errors."""
import itertools

import networkx as nx
import numpy as np
import pytest

from finextract.attack.clustering import ClusterResult, clusters_at_threshold, extract_clusters


def clustered_descriptors(sizes, dim=64, noise=0.25, n_background=0, seed=0):
    """Unit descriptors: tight groups around random modes (label = group), background label -1."""
    rng = np.random.default_rng(seed)
    modes = rng.standard_normal((len(sizes), dim))
    rows, labels = [], []
    for k, size in enumerate(sizes):
        rows.append(modes[k] / np.linalg.norm(modes[k]) + noise * rng.standard_normal((size, dim)) / np.sqrt(dim))
        labels += [k] * size
    if n_background:
        rows.append(rng.standard_normal((n_background, dim)))
        labels += [-1] * n_background
    x = np.concatenate(rows)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    perm = rng.permutation(len(x))
    return x[perm], np.array(labels)[perm]


def block_similarity(groups, within, cross):
    """A similarity matrix with a constant value inside each group and ``cross`` between groups."""
    n = sum(len(g) for g in groups)
    sim = np.full((n, n), cross, dtype=np.float64)
    for members, value in zip(groups, within):
        sim[np.ix_(members, members)] = value
    np.fill_diagonal(sim, 1.0)
    return sim


def test_one_center_per_true_cluster():
    x, truth = clustered_descriptors([14, 11, 9, 7, 5, 4])
    result = extract_clusters(x @ x.T, 6)
    assert isinstance(result, ClusterResult)
    assert len(result.centers) == 6
    assert sorted(truth[result.centers]) == list(range(6))
    assert result.n_cliques_at_threshold == 6
    assert result.exact
    # Clusters come largest first, and labels agree with the kept cliques.
    assert [len(m) for m in result.members] == [14, 11, 9, 7, 5, 4]
    for cluster, members in enumerate(result.members):
        assert (result.labels[members] == cluster).all()
        assert result.centers[cluster] in members


def test_center_is_the_member_with_highest_mean_similarity():
    x, _ = clustered_descriptors([10, 8, 6], seed=3)
    sim = x @ x.T
    result = extract_clusters(sim, 3)
    for members, center in zip(result.members, result.centers):
        block = sim[np.ix_(members, members)]
        mean_to_others = (block.sum(axis=1) - np.diag(block)) / (len(members) - 1)
        assert center == members[np.argmax(mean_to_others)]
        assert np.allclose(result.mean_similarity[members], mean_to_others)


def test_background_noise_still_gives_exactly_n0_distinct_centres():
    x, truth = clustered_descriptors([30, 25, 20, 15, 10], n_background=40, seed=1)
    result = extract_clusters(x @ x.T, 5)
    assert len(result.centers) == len(set(result.centers.tolist())) == 5
    assert (result.labels >= -1).all() and set(result.labels[result.centers]) == set(range(5))


def test_kept_cliques_are_cliques_and_the_first_is_a_largest_one():
    """Checked against networkx on a small graph at the chosen threshold."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((40, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    result = extract_clusters(sim, 4)
    graph = nx.Graph()
    graph.add_nodes_from(range(len(sim)))
    graph.add_edges_from((i, j) for i, j in itertools.combinations(range(len(sim)), 2)
                         if sim[i, j] >= result.threshold)
    for members in result.members:
        assert all(graph.has_edge(i, j) for i, j in itertools.combinations(members.tolist(), 2))
    assert len(np.unique(np.concatenate(result.members))) == sum(len(m) for m in result.members)
    assert len(result.members[0]) == max(len(c) for c in nx.find_cliques(graph))
    # The threshold is a crossing: one step lower there are fewer than N0 cliques.
    lower = np.max(sim[np.triu(sim < result.threshold, 1)])
    assert extract_clusters(sim, 4).threshold == result.threshold
    assert lower < result.threshold


def test_deterministic():
    x, _ = clustered_descriptors([20, 15, 12, 8, 5], n_background=60, seed=2)
    sim = x @ x.T
    a, b = extract_clusters(sim, 5), extract_clusters(sim.copy(), 5)
    assert np.array_equal(a.centers, b.centers)
    assert np.array_equal(a.labels, b.labels)
    assert a.threshold == b.threshold
    drop = ["seconds", "cpu_seconds"]
    assert a.trials.drop(columns=drop).equals(b.trials.drop(columns=drop))


def test_jump_past_n0_keeps_the_largest_cliques():
    # phi = 0.8 gives cliques {A, B, C} (3); the next distinct value 0.9 breaks B and C into
    # singletons: 6 cliques. With N0 = 4 the count jumps 3 -> 6, and we keep A plus the three
    # singletons with the smallest indices.
    a, b, c = [0, 1, 2, 3, 4], [5, 6, 7], [8, 9]
    sim = block_similarity([a, b, c], [0.9, 0.8, 0.8], cross=0.1)
    result = extract_clusters(sim, 4)
    assert result.threshold == pytest.approx(0.9)
    assert result.n_cliques_at_threshold == 6
    assert result.centers.tolist() == [0, 5, 6, 7]
    assert result.labels.tolist() == [0, 0, 0, 0, 0, 1, 2, 3, -1, -1]


def test_jump_ties_go_to_higher_internal_similarity():
    # Everything is connected at 0.2 (1 clique); at 0.91 there are 4 cliques: A (size 4) and three
    # pairs. N0 = 2 keeps A and the tightest pair.
    a, p1, p2, p3 = [0, 1, 2, 3], [4, 5], [6, 7], [8, 9]
    sim = block_similarity([a, p1, p2, p3], [0.95, 0.91, 0.97, 0.93], cross=0.2)
    result = extract_clusters(sim, 2)
    assert result.threshold == pytest.approx(0.91)
    assert result.n_cliques_at_threshold == 4
    assert result.members[0].tolist() == a and result.members[1].tolist() == p2


def test_n0_equal_to_n_returns_every_image():
    x, _ = clustered_descriptors([3, 3], seed=4)
    result = extract_clusters(x @ x.T, 6)
    assert sorted(result.centers.tolist()) == list(range(6))
    assert sorted(result.labels.tolist()) == list(range(6))
    assert result.threshold > np.max((x @ x.T)[np.triu_indices(6, 1)])


def test_all_identical_images():
    sim = np.ones((8, 8))
    one = extract_clusters(sim, 1)
    assert one.centers.tolist() == [0] and (one.labels == 0).all()
    three = extract_clusters(sim, 3)
    assert three.centers.tolist() == [0, 1, 2]
    assert three.n_cliques_at_threshold == 8


def test_single_image():
    result = extract_clusters(np.ones((1, 1)), 1)
    assert result.centers.tolist() == [0] and result.labels.tolist() == [0]


def test_errors_name_the_problem():
    sim = np.eye(4)
    with pytest.raises(ValueError, match="N < N0"):
        extract_clusters(sim, 5)
    bad = sim.copy()
    bad[1, 2] = bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN at \\(1, 2\\)"):
        extract_clusters(bad, 2)
    with pytest.raises(ValueError, match="square"):
        extract_clusters(np.ones((3, 4)), 2)
    asym = sim.copy()
    asym[0, 1] = 0.5
    with pytest.raises(ValueError, match="not symmetric"):
        extract_clusters(asym, 2)
    with pytest.raises(ValueError, match="positive integer"):
        extract_clusters(sim, 0)


def test_capped_search_still_returns_n0_and_says_so():
    x, _ = clustered_descriptors([20, 15, 12, 8, 5], n_background=60, seed=2)
    sim = x @ x.T
    capped = extract_clusters(sim, 5, work_cap=0)
    assert len(capped.centers) == 5
    assert np.array_equal(capped.centers, extract_clusters(sim, 5, work_cap=0).centers)
    assert set(capped.trials.columns) >= {"threshold", "n_cliques", "seconds", "timed_out", "exact"}


def test_assignments_table():
    x, truth = clustered_descriptors([6, 5, 4], seed=5)
    result = extract_clusters(x @ x.T, 3)
    table = result.assignments()
    assert list(table.columns) == ["image", "cluster", "is_center", "clique_size", "mean_similarity"]
    assert len(table) == 15 and table["is_center"].sum() == 3
    assert table.loc[table["is_center"], "image"].tolist() == sorted(result.centers.tolist())
    assert table.groupby("cluster")["clique_size"].first().tolist() == [6, 5, 4]


def test_lowest_pick_is_the_literal_raise_until_n0():
    """Both picks give N0 cliques; on noisy but separated clusters only the highest recovers them."""
    x, truth = clustered_descriptors([14, 11, 9, 7, 5, 4])
    sim = x @ x.T
    lowest, highest = extract_clusters(sim, 6, pick="lowest"), extract_clusters(sim, 6, pick="highest")
    assert lowest.n_cliques_at_threshold == highest.n_cliques_at_threshold == 6
    assert lowest.threshold < highest.threshold
    assert len(set(truth[lowest.centers])) < 6 == len(set(truth[highest.centers]))
    with pytest.raises(ValueError, match="pick"):
        extract_clusters(sim, 6, pick="middle")


def test_fixed_threshold_keeps_the_largest_cliques_of_that_graph():
    groups = [np.arange(0, 5), np.arange(5, 8), np.arange(8, 10)]
    sim = block_similarity(groups, within=[0.9, 0.8, 0.7], cross=0.1)
    high = clusters_at_threshold(sim, 2, 0.85)  # only group 0 is a clique; the rest are singletons
    assert [sorted(m) for m in high.members][0] == list(range(5)) and len(high.members[1]) == 1
    assert high.n_cliques_at_threshold == 6 and high.threshold == pytest.approx(0.9)
    low = clusters_at_threshold(sim, 3, 0.5, exact=False)
    assert [sorted(m) for m in low.members] == [list(g) for g in groups]
    # at the threshold the search picks, a fixed threshold gives the same answer
    x, _ = clustered_descriptors([9, 7, 5, 4], n_background=3)
    searched = extract_clusters(x @ x.T, 4)
    fixed = clusters_at_threshold(x @ x.T, 4, searched.threshold)
    assert list(fixed.centers) == list(searched.centers)


def test_floor_under_phi_keeps_modes_apart_when_background_forces_a_dense_graph():
    # 4 tight modes plus 60 unrelated images: exactly 4 cliques (singletons count) needs a phi so
    # low that one clique swallows most images; with a floor the 4 largest cliques are the modes.
    x, truth = clustered_descriptors([20, 15, 12, 10], noise=0.3, n_background=60, seed=3)
    sim = x @ x.T
    paper = extract_clusters(sim, 4)
    floored = extract_clusters(sim, 4, min_threshold=0.6)
    assert max(len(m) for m in paper.members) > 57  # a giant clique
    assert paper.threshold < 0.6 and floored.threshold >= 0.6
    assert sorted(truth[floored.centers]) == [0, 1, 2, 3]
    # a floor below the paper's phi changes nothing
    low = extract_clusters(sim, 4, min_threshold=paper.threshold - 0.05)
    assert list(low.centers) == list(paper.centers) and low.threshold == paper.threshold
    with pytest.raises(ValueError, match="min_threshold"):
        extract_clusters(sim, 4, min_threshold=1.5)
