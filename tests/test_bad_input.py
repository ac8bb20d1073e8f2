"""Bad input fails early with an error that names the file or key and what was expected."""
import pytest
from PIL import Image

from conftest import SCHEMAS, emoji_like_images, load_test_config, make_tiny_backbone, write_private_set
from finextract.workflow.config import ConfigError, validate_config
from finextract.private_set import PrivateSetError, load_private_set
from finextract.training.finetune import finetune
from finextract.workflow.attack_steps import finetune_config


def base_config(folder):
    config = load_test_config()
    config["private_sets"] = {"mine": {"folder": str(folder)}}
    return config


def check_config(config):
    return validate_config(config, SCHEMAS)


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(PrivateSetError, match="does not exist"):
        load_private_set("x", tmp_path / "nope", 32)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    with pytest.raises(PrivateSetError, match="no images"):
        load_private_set("x", tmp_path / "empty", 32)


def test_corrupt_image_is_named(tmp_path):
    folder = write_private_set(tmp_path / "set", emoji_like_images(3))
    (folder / "images" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(PrivateSetError, match="broken.png"):
        load_private_set("x", folder, 32)


def test_mixed_sizes_are_resized_with_a_note(tmp_path):
    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    Image.new("RGB", (80, 50), "white").save(folder / "images" / "wide.png")
    private = load_private_set("x", folder, 32)
    assert private.images.shape == (3, 32, 32, 3)
    assert any("mixed sizes" in note for note in private.notes)


def test_missing_caption_and_single_image(tmp_path):
    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    (folder / "caption.txt").unlink()
    with pytest.raises(PrivateSetError, match="caption"):
        load_private_set("x", folder, 32)
    assert load_private_set("x", folder, 32, caption="given in config").caption == "given in config"
    single = write_private_set(tmp_path / "one", emoji_like_images(1))
    with pytest.raises(PrivateSetError, match="N0 = 1"):
        load_private_set("x", single, 32)


def test_config_checks_name_the_key(tmp_path):
    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    config = base_config(folder)
    config["sampling"]["methods"]["finextract"]["w"] = {"dreambooth": 0.0, "lora": 5.0}
    with pytest.raises(ConfigError, match=r"sampling.methods.finextract.w.dreambooth: 0.0 is less than or equal to the minimum"):
        check_config(config)
    config = base_config(folder)
    config["sscd"]["model"] = str(tmp_path / "missing_sscd.pt")
    with pytest.raises(ConfigError, match="sscd.model.*missing_sscd.pt"):
        check_config(config)
    config = base_config(tmp_path / "absent")
    with pytest.raises(ConfigError, match="private_sets.mine"):
        check_config(config)


def test_finetuned_checkpoint_must_match_the_base(tmp_path):
    small = make_tiny_backbone(channels=(16, 32, 32))
    other = make_tiny_backbone(channels=(32, 64, 64))
    cfg = finetune_config(method="dreambooth", lr=1e-4, steps_per_image=1)
    finetune(other, emoji_like_images(2), "c", cfg, tmp_path / "db", progress=False)
    with pytest.raises(ValueError, match="does not match the base"):
        small.load_dreambooth_unet(tmp_path / "db")
    lora = finetune_config(method="lora", lr=1e-3, steps_per_image=1, rank=4)
    finetune(make_tiny_backbone(channels=(32, 64, 64)), emoji_like_images(2), "c", lora, tmp_path / "lora",
             progress=False)
    with pytest.raises(ValueError, match="lora.safetensors"):
        small.load_lora(tmp_path / "lora")
