"""The samplers behind sampling.scheduler: each deterministic, each its own images, unknown names refused."""
import numpy as np
import pytest

from finextract.backbones.base import SAMPLING_SCHEDULERS
from finextract.attack.model_pair import SingleModel
from finextract.attack.sampling import sample_batch


@pytest.mark.parametrize("kind", sorted(SAMPLING_SCHEDULERS))
def test_each_scheduler_gives_the_same_images_twice(tiny_backbone, kind):
    pair = SingleModel(tiny_backbone)
    first = sample_batch(pair, "a test", [0, 1], "cfg", 4, 2.0, scheduler_kind=kind)
    again = sample_batch(pair, "a test", [0, 1], "cfg", 4, 2.0, scheduler_kind=kind)
    assert first.shape == (2, 32, 32, 3) and np.array_equal(first, again)


def test_schedulers_differ_and_unknown_ones_are_refused(tiny_backbone):
    pair = SingleModel(tiny_backbone)
    images = {k: sample_batch(pair, "a test", [0], "direct", 4, 1.0, scheduler_kind=k) for k in SAMPLING_SCHEDULERS}
    assert not np.array_equal(images["ddim"], images["dpmsolver++"])
    assert not np.array_equal(images["ddim"], images["unipc"])
    with pytest.raises(ValueError, match="unknown sampling scheduler 'euler'"):
        tiny_backbone.sampling_scheduler("euler")
