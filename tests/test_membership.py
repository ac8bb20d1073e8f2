"""The white-box membership score (θ vs θ' loss gap) and its calibration."""
import copy

import numpy as np
import pytest
from scipy import stats

from conftest import emoji_like_images, make_tiny_backbone
from finextract.audit.membership.calibrate import (calibrate, empirical_null_p, reference_p, set_test_against_reference,
                                             simes_test)
from finextract.audit.membership.evaluate import bootstrap_roc
from finextract.audit.membership.score import (PAIRED_VARIANTS, LossGrid, images_to_latents, paired_losses,
                                         score_variants)
from finextract.attack.model_pair import LoraPair, TwoUNetPair

CAPTION = "art style of test"


def test_loss_grid_checks_and_is_reproducible():
    with pytest.raises(ValueError, match="K .* and M .* must be >= 1"):
        LossGrid(0, 4)
    with pytest.raises(ValueError, match="must be >= 1"):
        LossGrid(4, -1)
    grid = LossGrid(4, 3, seed=7)
    assert grid.timestep_values(1000).tolist() == [125, 375, 625, 875]
    assert grid.noise((2, 3)).shape == (4, 3, 2, 3) and (grid.noise((2, 3)) == grid.noise((2, 3))).all()


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_the_gap_is_exactly_zero_when_the_fine_tuned_model_is_the_base(prediction_type):
    backbone = make_tiny_backbone(prediction_type=prediction_type)
    pair = TwoUNetPair(backbone, copy.deepcopy(backbone.unet))
    latents = images_to_latents(backbone, emoji_like_images(3))
    losses = paired_losses(pair, latents, CAPTION, LossGrid(3, 2), batch_rows=8)
    assert losses.shape == (3, 2, 2, 3, 2) and (losses > 0).all()
    assert np.array_equal(losses[:, 0], losses[:, 1])  # the same noisy inputs, the same weights
    scores = score_variants(losses)
    for name in PAIRED_VARIANTS:
        assert (scores[name] == 0).all(), name


def test_the_gap_is_exactly_zero_for_a_lora_that_changes_nothing():
    """peft initialises B = 0: the adapter is on for θ''s rows and off for θ''s, and adds nothing."""
    from finextract.training.finetune import lora_config

    backbone = make_tiny_backbone()
    config = lora_config(4, ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"])
    config.init_lora_weights = True
    backbone.unet.add_adapter(config, adapter_name="finetuned")
    backbone.unet.eval()
    pair = LoraPair(backbone, "finetuned")
    losses = paired_losses(pair, images_to_latents(backbone, emoji_like_images(2)), CAPTION, LossGrid(2, 2))
    assert np.array_equal(losses[:, 0], losses[:, 1])


def finetuned_pair(tmp_path, method, images, steps_per_image):
    from finextract.training.finetune import finetune
    from finextract.workflow.attack_steps import finetune_config
    from finextract.attack.load_models import load_pair

    lora = {"rank": 8, "targets": ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]} \
        if method == "lora" else {}
    cfg = finetune_config(method=method, lr=2e-3 if method == "lora" else 5e-4, steps_per_image=steps_per_image,
                         batch_size=1, seed=0, **lora)
    finetune(make_tiny_backbone(), images, CAPTION, cfg, tmp_path / method, progress=False)
    return load_pair(make_tiny_backbone(), method, tmp_path / method)


@pytest.mark.parametrize("method", ["dreambooth", "lora"])
def test_the_gap_ranks_the_one_fine_tuned_image_first(tmp_path, method):
    images = emoji_like_images(12, seed=3)
    trained = 5
    pair = finetuned_pair(tmp_path, method, images[trained:trained + 1], 60)
    losses = paired_losses(pair, images_to_latents(pair.backbone, images), CAPTION, LossGrid(8, 4), batch_rows=64)
    scores = score_variants(losses)
    for name in ("gap", "log_ratio"):
        assert int(np.argmax(scores[name])) == trained, (name, scores[name])
        assert scores[name][trained] > 0


def test_reference_p_values_are_uniform_under_the_null():
    """Candidate and reference drawn from one distribution: P(p <= a) <= a, and close to it."""
    rng = np.random.default_rng(0)
    p = np.concatenate([reference_p(rng.gumbel(size=20), rng.gumbel(size=99)) for _ in range(500)])
    for alpha in (0.01, 0.05, 0.1, 0.5):
        share = (p <= alpha).mean()
        assert share <= alpha + 3 * np.sqrt(alpha / len(p)) and share >= alpha - 3 * np.sqrt(alpha / len(p)) - 0.01
    assert p.min() == pytest.approx(1 / 100)


def test_empirical_null_p_values_are_uniform_under_a_normal_null_and_ignore_a_few_members():
    rng = np.random.default_rng(1)
    p, centre, spread = empirical_null_p(rng.normal(3.0, 2.0, size=5000))
    assert centre == pytest.approx(3.0, abs=0.1) and spread == pytest.approx(2.0, abs=0.1)
    assert stats.kstest(p, "uniform").pvalue > 0.01
    # 10 % members far above: the non-members' false-positive rate stays near alpha, members are found
    null = rng.normal(size=900)
    p, _, _ = empirical_null_p(np.r_[null, rng.normal(6.0, 1.0, size=100)])
    assert (p[:900] <= 0.05).mean() < 0.07 and (p[900:] <= 0.05).mean() > 0.9


def test_set_level_tests_on_synthetic_scores():
    rng = np.random.default_rng(2)
    same = [set_test_against_reference(rng.normal(size=30), rng.normal(size=100)).p for _ in range(400)]
    assert 0.02 < np.mean(np.array(same) <= 0.05) < 0.08  # calibrated when the folder looks like the reference
    shifted = set_test_against_reference(np.r_[rng.normal(size=15), rng.normal(2.5, 1, size=15)], rng.normal(size=100))
    assert shifted.p < 1e-3 and shifted.statistic > 0.7  # half the folder used, and well fitted
    assert simes_test(np.r_[1e-5, rng.uniform(size=49)]).p <= 50 * 1e-5
    assert simes_test(rng.uniform(size=50)).p > 0.05


def test_calibrate_picks_the_null_and_q_is_at_least_p():
    rng = np.random.default_rng(3)
    scores, reference = rng.normal(size=40), rng.normal(size=60)
    with_reference = calibrate(scores, reference)
    assert with_reference.null == "reference" and (with_reference.q >= with_reference.p - 1e-12).all()
    assert with_reference.p.min() >= 1 / 61
    alone = calibrate(scores)
    assert alone.null == "empirical-null" and alone.set_test.test.startswith("Simes")


def test_bootstrap_roc_brackets_the_figures():
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(10, int), np.zeros(100, int)]
    scores = np.r_[rng.normal(2, 1, 10), rng.normal(0, 1, 100)]
    row = bootstrap_roc(scores, labels, resamples=200)
    for name in ("AUC", "TPR@1%FPR", "TPR@0.1%FPR"):
        assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"]
    perfect = bootstrap_roc(np.r_[np.full(10, 5.0), rng.normal(size=100)], labels, resamples=50)
    assert perfect["AUC"] == perfect["AUC_lo"] == 1.0


def test_a_caption_the_text_encoder_cuts_gets_a_note_before_any_model_loads():
    from conftest import REPO
    from finextract.audit.membership.run import tiny_caption_note

    base = str(REPO / "resources" / "base")
    assert tiny_caption_note(base, "a drake burner") is None
    note = tiny_caption_note(base, "a drake burner " * 8)
    assert note and "the text encoder sees the first 16" in note


@pytest.fixture(scope="module")
def sd_models(tmp_path_factory):
    from sd_fixtures import build_sd_pipeline, build_sdxl_pipeline, save_pipeline
    from test_altdiffusion import build_alt_pipeline

    root = tmp_path_factory.mktemp("membership-sd")
    return {"sd": save_pipeline(build_sd_pipeline(root), root / "sd"),
            "sd-v": save_pipeline(build_sd_pipeline(root, prediction_type="v_prediction"), root / "sd-v"),
            "sdxl": save_pipeline(build_sdxl_pipeline(root), root / "sdxl"),
            "altdiffusion": save_pipeline(build_alt_pipeline(), root / "alt")}


@pytest.mark.parametrize("kind", ["sd", "sd-v", "sdxl", "altdiffusion"])
def test_the_gap_on_every_latent_backbone_for_dreambooth_and_lora(sd_models, tmp_path, kind):
    """VAE latents, ε or v, SDXL's added conditioning, AltDiffusion's text tower: θ' = θ gives 0 exactly,
    a changed UNet (DreamBooth) or a trained-like LoRA file (switched per row) a finite, nonzero gap."""
    import torch

    from finextract.backbones.loading import load_backbone
    from finextract.attack.load_models import load_pair
    from sd_fixtures import ATTN_TARGETS
    from test_sd_backbones import add_trained_like_lora

    torch.set_num_threads(1)
    backbone = load_backbone(sd_models[kind])
    assert backbone.prediction_type == ("v_prediction" if kind == "sd-v" else "epsilon")
    images = np.random.default_rng(0).integers(0, 256, (2, backbone.resolution, backbone.resolution, 3), np.uint8)
    latents = images_to_latents(backbone, images)
    assert torch.equal(latents, images_to_latents(backbone, images))  # the posterior mean: no random draw
    grid = LossGrid(2, 2)
    same = paired_losses(TwoUNetPair(backbone, copy.deepcopy(backbone.unet)), latents, CAPTION, grid)
    assert np.array_equal(same[:, 0], same[:, 1])
    changed = copy.deepcopy(backbone.unet)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    dreambooth = score_variants(paired_losses(TwoUNetPair(backbone, changed), latents, CAPTION, grid))
    donor = load_backbone(sd_models[kind])
    add_trained_like_lora(donor.unet)
    donor.save_lora(donor.unet, tmp_path / "lora", rank=4, targets=list(ATTN_TARGETS))
    pair = load_pair(load_backbone(sd_models[kind]), "lora", tmp_path / "lora")
    lora = score_variants(paired_losses(pair, images_to_latents(pair.backbone, images), CAPTION, grid))
    for scores in (dreambooth, lora):
        for name in PAIRED_VARIANTS:
            assert np.isfinite(scores[name]).all() and (scores[name] != 0).all(), name


def test_the_cli_offers_exactly_the_paired_score_variants():
    from finextract.workflow.commands.audit import MEMBERSHIP_SCORES
    from finextract.audit.membership.score import PAIRED_VARIANTS

    assert MEMBERSHIP_SCORES == PAIRED_VARIANTS
