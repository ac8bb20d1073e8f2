"""The defences (the paper's Table 3): augmentations, fine-tuning with them, and the quality figures."""
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import SCHEMAS, emoji_like_images, load_test_config, make_tiny_backbone
from finextract.training.augment import augmenter
from finextract.workflow.config import ConfigError, validate_config
from finextract.experiments.defences import point_labels, write_defences_summary
from finextract.training.finetune import finetune
from finextract.workflow.attack_steps import finetune_config
from finextract.reporting.image_quality import checkerboard_energy, sharpness


@pytest.mark.parametrize("name", ["cutout", "randaugment"])
def test_augmentations_are_seeded_in_range_and_leave_the_global_rng_alone(name):
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    apply = augmenter(name)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = apply(images, 7)
    assert torch.rand(1) == before  # the training's random stream is not consumed
    assert torch.equal(first, apply(images, 7)) and not torch.equal(first, apply(images, 8))
    assert first.shape == images.shape and first.min() >= -1 and first.max() <= 1
    assert not torch.equal(first, images)


def test_cutout_makes_one_grey_square_of_half_the_side():
    images = torch.full((1, 3, 32, 32), 1.0)  # white
    out = augmenter("cutout")(images, 0)
    hole = (out[0] == 0).all(dim=0)  # mid grey is 0 in [-1, 1]
    assert hole.sum() == 16 * 16
    rows, cols = torch.nonzero(hole, as_tuple=True)
    assert rows.max() - rows.min() == 15 and cols.max() - cols.min() == 15
    assert augmenter("none") is None
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        augmenter("mixup")


def test_fine_tuning_with_a_defence_is_deterministic_and_differs_from_none(tmp_path):
    images = emoji_like_images(2)
    weights = {}
    for run, augment in (("none", "none"), ("cutout", "cutout"), ("cutout-again", "cutout")):
        cfg = finetune_config(method="dreambooth", lr=1e-3, steps_per_image=2, augment=augment)
        finetune(make_tiny_backbone(), images, "art style of test", cfg, tmp_path / run, progress=False)
        weights[run] = load_file(str(tmp_path / run / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(weights["cutout"][k], weights["cutout-again"][k]) for k in weights["cutout"])
    assert any(not torch.equal(weights["cutout"][k], weights["none"][k]) for k in weights["none"])


def test_quality_figures():
    flat = np.full((2, 16, 16, 3), 128, np.uint8)
    checker = flat.copy()
    checker[:, ::2, ::2] = 255
    assert checkerboard_energy(flat).tolist() == [0.0, 0.0] and (checkerboard_energy(checker) > 100).all()
    assert sharpness(flat).tolist() == [0.0, 0.0] and (sharpness(checker) > 0).all()


def test_defences_config_is_checked_and_summarised(tmp_path):
    config = load_test_config()
    config["defences"] = {"augments": ["none", "blur"]}
    with pytest.raises(ConfigError, match=r"defences.augments.1: 'blur' is not one of"):
        validate_config(config, SCHEMAS)
    config = load_test_config()
    config["defences"] = {"methods": ["finextract_uncond"]}
    with pytest.raises(ConfigError, match="defences.methods: finextract_uncond not in sampling.methods"):
        validate_config(config, SCHEMAS)
    config = load_test_config()
    config["finetune"]["lora"]["augment"] = "cutmix"
    with pytest.raises(ConfigError, match="finetune.lora.augment"):
        validate_config(config, SCHEMAS)

    points, qualities = [], []
    for augment, drop in (("none", 0.0), ("cutout", 0.1)):
        for method, base in (("direct", 0.5), ("finextract", 0.45)):
            path = tmp_path / "defences" / augment / "points" / "s" / "dreambooth" / f"{method}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame([{"AS": base - drop, "A-ESR@0.6": 0.2, "L2-ESR": 0.1}]).to_csv(path, index=False)
            points.append(str(path))
        quality = tmp_path / f"q-{augment}.csv"
        pd.DataFrame([{"augment": augment, "set": "s", "ft": "dreambooth", "fidelity": 0.6 - drop,
                       "checkerboard": 10.0, "sharpness": 5.0}]).to_csv(quality, index=False)
        qualities.append(str(quality))
    assert point_labels(points[0]) == {"augment": "none", "set": "s", "ft": "dreambooth", "method": "direct"}
    wide = write_defences_summary(points, qualities, tmp_path / "summary")
    assert wide["augment"].tolist() == ["none", "cutout"]
    assert wide["AS direct"].tolist() == pytest.approx([0.5, 0.4]) and wide["fidelity"].tolist() == pytest.approx([0.6, 0.5])
    assert (tmp_path / "summary" / "defences.png").stat().st_size > 0
