"""Bad input a new user would try: each fails before the first job naming the key or file and what was
expected, or is handled (converted, noted). docs/reliability.md lists every case with the test that pins it.

All config checks run in-process through finextract.workflow.config.validate_config, the function the Snakefile
calls while it builds the DAG (schema with its defaults, then the file-system checks).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, SCHEMAS, absolute_paths, emoji_like_images, load_test_config, write_private_set
from finextract.workflow import config as fxconfig
from finextract.workflow import config_file, model_checks
from finextract.workflow.config import ConfigError, validate_config
from finextract.private_set import PrivateSetError, load_private_set


def validate(config):
    return validate_config(config, SCHEMAS)


def set_key(config, key, value):
    node = config
    *parents, last = key.split(".")
    for parent in parents:
        node = node.setdefault(parent, {})
    node[last] = value
    return config


@pytest.fixture
def smoke():
    config = load_test_config()
    for section in ("audit", "study"):  # they name the smoke sets, which several tests here replace
        config.pop(section)
    return config


def fails(config, *patterns):
    with pytest.raises(ConfigError) as info:
        validate(config)
    message = str(info.value)
    for pattern in patterns:
        assert pattern in message, message
    return message


# --- numbers: non-finite, out of range, wrong type ---------------------------------------------
@pytest.mark.parametrize("key, value, expected", [
    ("sampling.methods.finextract.w", float("nan"), "sampling.methods.finextract.w = nan: expected a finite number"),
    ("sampling.methods.finextract.w", float("inf"), "sampling.methods.finextract.w = inf: expected a finite"),
    ("sampling.methods.finextract.k", float("-inf"), "sampling.methods.finextract.k = -inf"),
    ("sampling.methods.finextract.k", 1e6, "sampling.methods.finextract.k"),
    ("sampling.methods.finextract.w", 1e6, "sampling.methods.finextract.w"),
    ("sampling.methods.cfg.w", 0.0, "sampling.methods.cfg.w"),
    ("sampling.methods.cfg.w", {"dreambooth": 3.0, "lora": -1.0}, "sampling.methods.cfg.w.lora"),
    ("finetune.dreambooth.lr", float("nan"), "finetune.dreambooth.lr = nan"),
    ("finetune.lora.lr", 0, "finetune.lora.lr"),
    ("sampling.steps", 0, "sampling.steps: 0 is less than the minimum of 1"),
    ("sampling.n_per_image", 2.5, "sampling.n_per_image: 2.5 is not of type 'integer'"),
    ("sampling.seed_offset", -1, "sampling.seed_offset"),
    ("sampling.seed_offset", 5_000_000_000, "sampling.seed_offset"),
    ("metrics.taus", [], "metrics.taus: [] should be non-empty"),
    ("metrics.taus", [1.5], "metrics.taus.0: 1.5 is greater than the maximum of 1"),
    ("metrics.taus", [0.6, 0.6], "metrics.taus"),
    ("clustering.min_threshold", 2, "clustering.min_threshold"),
    ("clustering.time_cap_s", 0, "clustering.time_cap_s"),
    ("sscd.resolution", 16, "sscd.resolution"),
    ("device", "gpu", "device: 'gpu' does not match"),
    ("precision", "fp8", "precision: 'fp8' is not one of"),
])
def test_bad_numbers_and_enums_name_the_key(smoke, key, value, expected):
    fails(set_key(smoke, key, value), expected)


def test_unknown_and_missing_keys(smoke):
    message = fails(set_key(copy.deepcopy(smoke), "sampling.step", 3), "sampling.step: unknown key")
    assert "steps" in message  # the allowed keys are listed
    del smoke["finetune"]["dreambooth"]["lr"]
    fails(smoke, "finetune.dreambooth.lr: missing")


def test_per_method_value_must_cover_every_enabled_fine_tuning(smoke):
    fails(set_key(smoke, "sampling.methods.finextract.w", {"dreambooth": 3.0}),
          "sampling.methods.finextract.w: no value for lora")


def test_no_fine_tuning_enabled(smoke):
    smoke["finetune"] = {"dreambooth": {"lr": 1e-4, "enabled": False}}
    fails(smoke, "finetune: enable at least one")


def test_blank_caption_and_bad_set_name(smoke):
    folder = smoke["private_sets"]["wesnoth-drake"]["folder"]
    fails(set_key(copy.deepcopy(smoke), "private_sets", {"x": {"folder": folder, "caption": "   "}}),
          "private_sets.x.caption")
    fails(set_key(smoke, "private_sets", {"bad name!": {"folder": folder}}), "private_sets")


def test_large_seed_offset_plans_shards_the_rules_accept(smoke):
    """seed_offset >= 10^6 gives 7-digit shard names; the wildcard constraint accepts them."""
    import re

    smoke["sampling"]["seed_offset"] = 1_234_567
    targets = validate(smoke)
    t = targets["wesnoth-drake"]
    shards = fxconfig.seed_shards(t.sampling["n_per_image"] * t.n0, t.sampling["shard_size"],
                                  t.sampling["seed_offset"])
    assert shards[0] == "1234567-1234576"
    assert all(re.fullmatch(fxconfig.SHARD_PATTERN, s) for s in shards)
    assert fxconfig.shard_seeds(shards[0])[0] == 1_234_567


# --- SSCD ------------------------------------------------------------------------------------
def test_sscd_without_calibration_key_is_rejected(smoke):
    smoke["sscd"] = {}
    fails(smoke, "sscd.calibration: missing")


def test_sscd_calibration_null_is_allowed_with_a_note(smoke, capsys):
    smoke["sscd"]["calibration"] = None
    validate(smoke)
    assert "note: sscd.calibration is null" in capsys.readouterr().err


def test_sscd_calibration_file_must_exist(smoke, tmp_path):
    fails(set_key(smoke, "sscd.calibration", str(tmp_path / "nope.npz")), "sscd.calibration", "does not exist")


def test_random_bytes_named_onnx_are_not_a_model(smoke, tmp_path):
    fake = tmp_path / "sscd.onnx"
    fake.write_bytes(np.random.default_rng(0).bytes(4096))
    fails(set_key(smoke, "sscd.model", str(fake)), "sscd.model", "is not an ONNX model")


def test_a_real_onnx_file_passes_the_structure_check():
    from finextract.attack.similarity import check_descriptor_model

    model_checks.check_onnx_file(check_descriptor_model("distilled").path)  # the shipped model


def test_sscd_model_unknown_suffix_and_missing_file(smoke, tmp_path):
    (tmp_path / "model.h5").write_bytes(b"x")
    fails(set_key(copy.deepcopy(smoke), "sscd.model", str(tmp_path / "model.h5")), "sscd.model", "unknown suffix")
    fails(set_key(smoke, "sscd.model", str(tmp_path / "missing.onnx")), "sscd.model", "does not exist")


# --- config files ----------------------------------------------------------------------------
def test_duplicated_yaml_key_names_file_and_both_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("results: r\nsampling:\n  steps: 3\n  control: true\nsampling:\n  n_per_image: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:5:1: duplicated key 'sampling' \(first given on line 2"):
        config_file.load_config_file(path)
    path.write_text("sampling:\n  steps: 3\n  steps: 4\n")  # nested too
    with pytest.raises(ConfigError, match=rf"{path}:3:3: duplicated key 'steps'"):
        config_file.load_config_file(path)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("results: r\nmetrics:\n  taus: [0.5, 0.6\nclustering: {}\n")
    with pytest.raises(ConfigError, match=rf"{path}:4:\d+: .*expected ',' or ']'"):
        config_file.load_config_file(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected keys at the top level"):
        config_file.load_config_file(path)
    assert "private_sets" in config_file.load_config_file(REPO / "config" / "config.yaml")


# --- paths -----------------------------------------------------------------------------------
def test_results_pointing_at_a_file(smoke, tmp_path):
    (tmp_path / "results.txt").write_text("x")
    fails(set_key(copy.deepcopy(smoke), "results", str(tmp_path / "results.txt")), "results:", "is a file")
    fails(set_key(smoke, "results", str(tmp_path / "results.txt" / "sub")), "results:", "is a file")


def test_base_model_typo_names_the_path_and_a_close_match(smoke, monkeypatch):
    monkeypatch.chdir(REPO)
    message = fails(set_key(smoke, "base_model", "resources/bse"), "base_model: resources/bse does not exist")
    assert "resources/base" in message


def test_base_model_that_is_not_a_model(smoke, tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    fails(set_key(copy.deepcopy(smoke), "base_model", str(tmp_path / "folder")), "base_model", "not a model")
    fails(set_key(smoke, "base_model", str(tmp_path / "notes.txt")), "base_model", "not a checkpoint")


def test_uncached_hub_id_offline_is_noted(smoke, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    model_checks.check_base_model("someone/some-model", "base_model")
    assert "someone/some-model is not a local path and not in the hub cache" in capsys.readouterr().err


def test_cuda_device_on_a_machine_without_one(smoke):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    fails(set_key(smoke, "device", "cuda"), "device = cuda: no CUDA device here")
    smoke = load_test_config()
    set_key(smoke, "device", "cuda")
    validate_config(smoke, SCHEMAS, local_exec=False)  # a cluster's submit host need not have the GPUs


def test_cuda_device_at_job_time_is_a_clear_error():
    from finextract.backbones.device import resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="device 'cuda:0': this machine has 0 CUDA device"):
        resolve_device("cuda:0")


# --- private sets ----------------------------------------------------------------------------
def test_16_bit_grayscale_png_is_rescaled_not_clipped(tmp_path):
    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    ramp = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(ramp).save(folder / "images" / "gray16.png")
    assert Image.open(folder / "images" / "gray16.png").mode.startswith("I")
    private = load_private_set("x", folder, 32)
    gray = private.images[[str(p) for p in private.files].index(str(folder / "images" / "gray16.png"))]
    assert np.abs(gray[..., 0].astype(float) - ramp / 257.0).max() <= 1.0
    assert (gray == 255).mean() < 0.01  # was 98 % white with .convert("RGB")


def test_float_and_32_bit_grayscale_are_rescaled(tmp_path):
    from finextract.private_set import to_8bit

    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert np.asarray(to_8bit(Image.fromarray(ramp, "F"))).max() == 255
    wide = (ramp * 65535).astype(np.int32)
    assert abs(int(np.asarray(to_8bit(Image.fromarray(wide, "I"))).max()) - 255) <= 1


def test_gif_and_tiff_are_loaded_other_files_are_listed(tmp_path):
    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    Image.fromarray(emoji_like_images(1, seed=5)[0]).save(folder / "images" / "anim.gif")
    Image.fromarray(emoji_like_images(1, seed=6)[0]).save(folder / "images" / "scan.tif")
    (folder / "images" / "readme.txt").write_text("x")
    (folder / "images" / "drawing.svg").write_text("<svg/>")
    (folder / "images" / ".DS_Store").write_bytes(b"x")
    private = load_private_set("x", folder, 32)
    assert private.n0 == 4
    unused = [n for n in private.notes if "not used" in n]
    assert unused and "drawing.svg, readme.txt" in unused[0] and ".DS_Store" not in unused[0]


def test_unsupported_files_are_noted_before_the_first_job(smoke, tmp_path, capsys):
    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    (folder / "images" / "photo.heic").write_bytes(b"x")
    set_key(smoke, "private_sets", {"mine": {"folder": str(folder)}})
    validate(smoke)
    assert "note: private_sets.mine:" in capsys.readouterr().err


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32x32 = 1024 > 2 x 100: what a 14000^2 image does
    with pytest.raises(PrivateSetError, match=r"img_00\.png: image too large to open safely"):
        load_private_set("x", folder, 32)


def test_two_sets_with_the_same_folder_get_a_note(smoke, capsys):
    folder = smoke["private_sets"]["wesnoth-drake"]["folder"]
    smoke["private_sets"] = {"a": {"folder": folder}, "b": {"folder": folder, "caption": "another caption"}}
    validate(smoke)
    assert "private_sets.b and private_sets.a use the same folder" in capsys.readouterr().err


def test_over_long_caption_is_noted_with_what_the_model_sees(smoke, capsys):
    folder = smoke["private_sets"]["wesnoth-drake"]["folder"]
    smoke["private_sets"] = {"long": {"folder": folder, "caption": "a drake burner " * 150}}
    validate(smoke)
    err = capsys.readouterr().err
    assert "private_sets.long: the caption has" in err and "sees the first 16" in err


def test_over_long_caption_is_logged_by_the_text_encoder(caplog):
    from finextract.backbones.text_encoder import encode_captions

    with caplog.at_level("WARNING", logger="finextract.backbones.text_encoder"):
        encode_captions(["a drake burner " * 20])
    assert "cut to the text encoder's 16" in caplog.text


# --- real-world mode -------------------------------------------------------------------------
@pytest.fixture
def realworld(tmp_path):
    """A real-world config whose base is a (fake) local diffusers folder: the checks read files, never weights."""
    base = tmp_path / "sd-base"
    base.mkdir()
    (base / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')

    def make(finetuned, **extra):
        return {"targets": [{"name": "t", "pretrained": str(base), "finetuned": finetuned, "caption": "c",
                             "n0": 2, **extra}],
                "sscd": {"model": "distilled", "calibration": None}}
    return make


def save_safetensors(path, keys):
    from safetensors.torch import save_file

    save_file({k: torch.zeros(2, 2) for k in keys}, str(path))
    return path


def test_missing_absolute_lora_path_names_that_path(realworld, tmp_path):
    missing = tmp_path / "loras" / "nope.safetensors"
    fails(realworld(f"lora:{missing}"), f"{missing} does not exist")


def test_relative_lora_path_is_a_local_path_not_a_hub_id(realworld, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fails(realworld("lora:loras/x.safetensors"), "loras/x.safetensors does not exist")


def test_lora_file_without_the_prefix(realworld, tmp_path):
    lora = save_safetensors(tmp_path / "style.safetensors", ["unet.down.lora_A.weight", "unet.down.lora_B.weight"])
    fails(realworld(str(lora)), "is a LoRA file", f"lora:{lora}")


def test_dreambooth_file_with_the_lora_prefix(realworld, tmp_path):
    unet = save_safetensors(tmp_path / "unet.safetensors", ["model.diffusion_model.conv.weight"])
    fails(realworld(f"lora:{unet}"), "is not a LoRA file")


def test_damaged_safetensors_file(realworld, tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 16)
    fails(realworld(f"lora:{tmp_path / 'broken.safetensors'}"), "not a readable .safetensors file")


def test_realworld_pretrained_typo_and_duplicate_names(realworld, tmp_path):
    config = realworld("owner/repo")
    config["targets"][0]["pretrained"] = str(tmp_path / "sd-bsae")
    fails(config, "targets[0].pretrained (t)", "does not exist", "sd-base")
    config = realworld("owner/repo")
    config["targets"].append(dict(config["targets"][0]))
    fails(config, "targets: names must be unique")


def test_realworld_n0_below_two(realworld):
    config = realworld("owner/repo")
    config["targets"][0]["n0"] = 1
    fails(config, "targets.0.n0: 1 is less than the minimum of 2")


def test_lora_loader_names_the_missing_path():
    from finextract.backbones.lora import _lora_location

    with pytest.raises(FileNotFoundError, match="/abs/path/nope.safetensors: no such LoRA file"):
        _lora_location("/abs/path/nope.safetensors", None, False)


# --- the CLI has no defaults of its own for what the workflow passes ----------------------------
@pytest.mark.parametrize("argv, flag", [
    (["cluster", "--embeddings", "e", "--order", "o", "--n0", "2", "--time-cap", "30", "--out", "x"],
     "--min-threshold"),
    (["sample", "--base", "b", "--ft-method", "none", "--method", "direct", "--seeds", "000000-000001",
      "--out", "x", "--base-kind", "auto", "--precision", "auto", "--device", "auto", "--w", "1", "--k", "0",
      "--batch-size", "1", "--threads", "1"], "--steps"),
])
def test_cli_requires_what_the_workflow_passes(argv, flag, capsys):
    from finextract.workflow.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert flag in capsys.readouterr().err


# --- the fuzz test -----------------------------------------------------------------------------
def leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, (*path, key))
    elif path:
        yield path, node


def mutations(value):
    """Wrong types, out-of-range and non-finite values for a leaf of the given kind."""
    if isinstance(value, bool):
        return ["yes", 1, None]
    if isinstance(value, (int, float)):
        bad = ["x", None, True, [value], math.nan, math.inf, -math.inf, -1e12, 1e12]
        return bad + ([2.5] if isinstance(value, int) else [])
    if isinstance(value, str):
        return [1, None, [value], "", True]
    if isinstance(value, list):
        extra = [[math.nan], [-1e12]] if value and isinstance(value[0], (int, float)) else [[None], [1]]
        return ["x", None, [], *extra]
    return [1, "x"]


# (key, repr(value)) mutations that are valid, so validation must pass for them (time_cap_s is written as
# an integer in the default config but is a number of seconds; a study may have no detail seeds).
VALID = {("clustering.min_threshold", "None"), ("sscd.calibration", "None"), ("clustering.time_cap_s", "2.5"),
         ("sscd.prefilter_sigma", "None"), ("study.detail_seeds", "[]"), ("study.detail_seeds", "[1]")}


def test_fuzz_every_key_of_the_default_config():
    base = absolute_paths(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)
    validate(copy.deepcopy(base))  # the default itself is valid
    checked = 0
    for path, value in leaves(base):
        key = ".".join(path)
        for bad in mutations(value):
            config = copy.deepcopy(base)
            node = config
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = bad
            if (key, repr(bad)) in VALID:
                validate(config)
                continue
            with pytest.raises(ConfigError) as info:
                validate(config)
            assert key in str(info.value), f"{key} = {bad!r}: the message does not name the key: {info.value}"
            checked += 1
    assert checked > 250
