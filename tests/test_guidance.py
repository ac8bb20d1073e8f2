"""The guidance arithmetic against hand-computed values."""
import pytest
import torch

from finextract.attack import guidance
from finextract.attack.sampling import combine, method_requests
from finextract.attack.model_pair import FINETUNED, PRETRAINED


def test_model_guided_eps_hand_computed():
    ft = torch.tensor([1.0, -2.0])
    pre = torch.tensor([0.5, 1.0])
    # ε = ft + (w-1)(ft - pre) + k pre with w = 3, k = -0.02
    expected = torch.tensor([1.0 + 2 * 0.5 - 0.02 * 0.5, -2.0 + 2 * (-3.0) - 0.02 * 1.0])
    assert torch.allclose(guidance.model_guided_eps(ft, pre, 3.0, -0.02), expected)


def test_w_one_k_zero_reduces_to_direct():
    ft, pre = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    assert torch.equal(guidance.model_guided_eps(ft, pre, 1.0, 0.0), guidance.direct_eps(ft))


def test_k_term_is_linear_in_pretrained_prediction():
    ft, pre = torch.randn(5), torch.randn(5)
    diff = guidance.model_guided_eps(ft, pre, 2.0, 0.1) - guidance.model_guided_eps(ft, pre, 2.0, 0.0)
    assert torch.allclose(diff, 0.1 * pre, atol=1e-6)


def test_cfg_hand_computed():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert torch.allclose(guidance.cfg_eps(cond, uncond, 3.0), torch.tensor([4.0]))
    assert torch.equal(guidance.cfg_eps(cond, uncond, 1.0), cond)


def test_uncond_model_guidance_eq6():
    ft, pre = torch.tensor([1.0]), torch.tensor([0.25])
    assert torch.allclose(guidance.uncond_model_guided_eps(ft, pre, 5.0), torch.tensor([1.0 + 4 * 0.75]))


@pytest.mark.parametrize("method,models", [
    ("direct", [FINETUNED]), ("cfg", [FINETUNED, FINETUNED]),
    ("finextract", [FINETUNED, PRETRAINED]), ("finextract_uncond", [FINETUNED, PRETRAINED])])
def test_each_method_asks_the_right_models(method, models):
    requests = method_requests(method, "c", "u")
    assert [r.model for r in requests] == models
    if method == "finextract":
        assert [r.cond for r in requests] == ["c", "u"]  # fine-tuned conditional, pretrained unconditional


def test_combine_dispatches_to_guidance():
    a, b = torch.tensor([1.0]), torch.tensor([3.0])
    assert torch.allclose(combine("finextract", [a, b], 3.0, -0.02), guidance.model_guided_eps(a, b, 3.0, -0.02))
    with pytest.raises(ValueError, match="unknown sampling method"):
        method_requests("nope", None, None)


def test_batch_rows_are_shared_out_per_method():
    from finextract.attack.model_pair import LoraPair, SingleModel, TwoUNetPair
    from finextract.attack.sampling import images_per_batch

    two = TwoUNetPair.__new__(TwoUNetPair)  # rows_per_image needs no weights
    one, lora = SingleModel.__new__(SingleModel), LoraPair.__new__(LoraPair)
    assert images_per_batch(one, "direct", 64) == 64 and images_per_batch(one, "cfg", 64) == 32
    assert images_per_batch(lora, "finextract", 64) == 32  # one forward holds both rows of an image
    assert images_per_batch(two, "finextract", 64) == 64  # one row per image in each UNet's forward
    assert images_per_batch(two, "cfg", 64) == 32 and images_per_batch(two, "cfg", 1) == 1
    with pytest.raises(ValueError, match="rows"):
        images_per_batch(one, "direct", 0)
