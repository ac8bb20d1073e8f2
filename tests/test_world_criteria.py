"""The world criteria on toy descriptors: what a prior, a lookup table and a collapsed model look like."""
import numpy as np
import pytest

from finextract.world import criteria


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cloud(rng, n, centre, spread=1.0, dims=32):
    return unit(centre + spread * rng.standard_normal((n, dims)))


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 8))
    assert criteria.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert criteria.frechet_distance(a, a + 0.5) == pytest.approx(8 * 0.25, rel=1e-6)


def test_frechet_distance_matches_the_closed_form_for_gaussians_with_diagonal_covariances():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((200_000, 2)) * [1.0, 2.0]
    b = rng.standard_normal((200_000, 2)) * [3.0, 2.0]
    # (σa − σb)² summed over axes: (1 − 3)² + 0
    assert criteria.frechet_distance(a, b) == pytest.approx(4.0, rel=0.02)


def test_a_prior_passes_while_a_lookup_table_and_a_collapsed_model_fail():
    rng = np.random.default_rng(2)
    dims, n = 32, 256
    centre = np.zeros(dims)
    fit, real, floor_a, floor_b, corpus = (cloud(rng, n, centre, dims=dims) for _ in range(5))
    projection = criteria.fit_projection(fit, dims=16)
    bounds = criteria.Bounds()
    prior = criteria.figures("prior", cloud(rng, n, centre, dims=dims), real, floor_a, floor_b, projection, corpus)
    # a lookup table: every sample is one of 8 corpus images
    lookup = criteria.figures("lookup", corpus[rng.integers(0, 8, n)], real, floor_a, floor_b, projection, corpus)
    # mode collapse: samples crowd around one point away from the data
    collapsed = criteria.figures("collapsed", cloud(rng, n, centre + 1.5, spread=0.2, dims=dims), real,
                                 floor_a, floor_b, projection, corpus)
    assert prior.passes(bounds, bounds.pairwise_margin_new) and prior.copy_share < 0.2
    assert lookup.copy_share == 1.0 and not lookup.passes(bounds, bounds.pairwise_margin_new)
    assert not collapsed.passes(bounds, bounds.pairwise_margin_heldout) and collapsed.pairwise > 0.8


def test_sizes_must_match_and_projection_needs_enough_rows():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 4))
    with pytest.raises(ValueError, match="one sample size"):
        criteria.figures("x", x, x[:9], x, x, criteria.fit_projection(x, 2))
    with pytest.raises(ValueError, match="principal axes"):
        criteria.fit_projection(x, dims=11)


def test_cfg_helps_compares_means():
    assert criteria.cfg_helps(np.array([0.2, 0.4]), np.array([0.5, 0.3]))[2]
    assert not criteria.cfg_helps(np.array([0.5, 0.5]), np.array([0.2, 0.3]))[2]
