"""N sweep: prefixes of one long sampling run stand for shorter runs, and each point is scored."""
import numpy as np
import pytest

from finextract.experiments.nsweep import prefix_rows, seed_of, sweep_point


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def test_prefix_rows_select_seeds_not_positions():
    files = [f"out/shard/seed_{s:06d}.png" for s in (5, 0, 3, 1, 2, 4)]
    assert seed_of(files[0]) == 5
    assert sorted(prefix_rows(files, 3)) == [1, 3, 4]  # seeds 0, 1, 2 wherever they sit
    assert sorted(prefix_rows(files, 2, seed_offset=3)) == [2, 5]  # seeds 3, 4
    with pytest.raises(ValueError, match="found 6 of them"):
        prefix_rows(files, 7)
    with pytest.raises(ValueError, match="seed_<number>.png"):
        seed_of("out/shard/perf.csv")


def test_sweep_point_finds_the_private_images_once_enough_are_generated():
    rng = np.random.default_rng(0)
    private = _unit(rng.standard_normal((4, 64)))
    # every generation is a noisy copy of a private image; image 3 is generated only from seed 100 on
    which = np.where(np.arange(200) < 100, np.arange(200) % 3, np.arange(200) % 4)
    generated = _unit(private[which] + 0.05 * rng.standard_normal((200, 64)))
    files = [f"seed_{s:06d}.png" for s in range(200)]
    small = sweep_point(generated, files, private, 8)  # image 3 not generated yet
    large = sweep_point(generated, files, private, 200)
    assert small["n_generated"] == 8 and large["n_per_image"] == 50
    assert large["AS"] > 0.9 and large["A-ESR@0.7"] == 1.0
    assert small["upper_A-ESR@0.7"] == 0.75 and small["A-ESR@0.7"] <= 0.75
    for point in (small, large):
        assert point["AS"] <= point["upper_AS"] + 1e-6
    again = sweep_point(generated, files, private, 200)
    assert (again["AS"], again["threshold"]) == (large["AS"], large["threshold"])  # deterministic
    floored = sweep_point(generated, files, private, 200, min_threshold=0.6)
    assert floored["min_threshold"] == 0.6 and floored["threshold"] >= 0.6
    assert "paper_rule_AS" in floored and "paper_rule_AS" not in large  # both rules, side by side
