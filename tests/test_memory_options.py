"""DreamBooth memory options (finextract.attack.dreambooth_memory.PatchedUNetPair / reduce_memory) on tiny SD-shaped models.

θ' is θ with every tensor perturbed (a full-UNet fine-tune) or only some layers (a partial one); the
options must give TwoUNetPair's predictions exactly (``delta``) or within the stated tolerances.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from finextract.backbones.sd import SDBackbone
from finextract.backbones.sdxl import SDXLBackbone
from finextract.attack.dreambooth_memory import PatchedUNetPair, reduce_memory
from finextract.attack.model_pair import FINETUNED, PRETRAINED, EpsRequest, TwoUNetPair
from finextract.attack.sampling import sample_batch

from sd_fixtures import build_sd_pipeline, build_sdxl_pipeline

# Error on θ's prediction, relative to how far θ' moved it (max |ε_θ − ε_θ'|): what guidance amplifies.
# Measured on these models: int8 0.0057, fp16 0.00027, bf16 delta 0.0021, bf16 copy of θ 0.086.
TOLERANCE = {"delta-int8": 0.02, "delta-fp16": 0.002, "delta-bf16": 0.01, "pretrained-bf16": 0.25}


def _finetuned(unet: torch.nn.Module, scale: float = 0.05, only: tuple[str, ...] | None = None, seed: int = 1):
    """θ' = θ + noise of ``scale`` × each tensor's std (all tensors, or those whose name contains ``only``)."""
    gen = torch.Generator().manual_seed(seed)
    ft = copy.deepcopy(unet)
    with torch.no_grad():
        for name, p in ft.named_parameters():
            if only is not None and not any(o in name for o in only):
                continue
            std = p.std() if p.numel() > 1 else p.abs()
            p.add_(torch.randn(p.shape, generator=gen) * scale * (std + 1e-3))
    return ft.eval()


_PIPELINES: dict = {}


pytestmark = pytest.mark.usefixtures("one_thread")


def _backbone(tmp_path, kind: str = "sd"):
    """A fresh backbone over copies of one tiny pipeline per kind (built once per session)."""
    if kind not in _PIPELINES:
        build = build_sd_pipeline if kind == "sd" else build_sdxl_pipeline
        _PIPELINES[kind] = build(tmp_path / "tok")
    pipe = copy.deepcopy(_PIPELINES[kind])
    return (SDBackbone if kind == "sd" else SDXLBackbone).from_pipeline(pipe)


def _inputs(backbone, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn((2, *backbone.latent_shape()), generator=gen)
    cond, uncond = backbone.encode_captions(["a dog"]), backbone.unconditional(1)
    return latents, torch.tensor(501), [EpsRequest(FINETUNED, cond), EpsRequest(PRETRAINED, uncond)]


def _pairs(tmp_path, memory: str, kind: str = "sd", **ft):
    """(reference TwoUNetPair, pair with the memory option) over identical θ, θ'."""
    ref_bb, test_bb = _backbone(tmp_path / "a", kind), _backbone(tmp_path / "b", kind)
    reference = TwoUNetPair(ref_bb, _finetuned(ref_bb.unet, **ft))
    option = reduce_memory(TwoUNetPair(test_bb, _finetuned(test_bb.unet, **ft)), memory)
    return reference, option


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_exact_delta_gives_the_two_unet_predictions_bit_for_bit(tmp_path, kind):
    reference, option = _pairs(tmp_path, "delta", kind)
    assert isinstance(option, PatchedUNetPair)
    latents, t, requests = _inputs(reference.backbone)
    finetuned_before = {k: v.clone() for k, v in option.backbone.unet.state_dict().items()}
    with torch.no_grad():
        want, got = reference.predict(latents, t, requests), option.predict(latents, t, requests)
    assert not torch.equal(want[0], want[1])  # θ and θ' do differ
    for w, g in zip(want, got):
        assert torch.equal(w, g)
    after = option.backbone.unet.state_dict()
    assert all(torch.equal(finetuned_before[k], after[k]) for k in after)  # θ' restored after θ's forward


def test_delta_keeps_only_the_layers_that_differ(tmp_path):
    reference, option = _pairs(tmp_path, "delta", only=("attn2.to_k", "attn2.to_v"))
    changed = [n for n, p in reference.backbone.unet.named_parameters()
               if not torch.equal(p, dict(reference.finetuned_unet.named_parameters())[n])]
    assert changed and all("attn2.to_" in n for n in changed)
    assert option.patched_tensors == len(changed)
    params = dict(reference.backbone.unet.named_parameters())
    assert option.stored_bytes == sum(params[n].numel() * 4 for n in changed)
    latents, t, requests = _inputs(reference.backbone)
    with torch.no_grad():
        for w, g in zip(reference.predict(latents, t, requests), option.predict(latents, t, requests)):
            assert torch.equal(w, g)


@pytest.mark.parametrize("memory", sorted(TOLERANCE))
def test_compressed_options_stay_within_tolerance(tmp_path, memory):
    reference, option = _pairs(tmp_path, memory)
    latents, t, requests = _inputs(reference.backbone)
    with torch.no_grad():
        (ft_want, pre_want), (ft_got, pre_got) = reference.predict(latents, t, requests), option.predict(latents, t, requests)
    assert torch.equal(ft_want, ft_got)  # θ' is never approximated
    moved = (ft_want - pre_want).abs().max()
    error = (pre_got - pre_want).abs().max()
    assert 0 < error <= TOLERANCE[memory] * moved, (memory, float(error), float(moved))
    full = sum(p.numel() * 4 for p in reference.backbone.unet.parameters())
    expected_share = {"delta-int8": 0.25, "delta-fp16": 0.5, "delta-bf16": 0.5, "pretrained-bf16": 0.5}[memory]
    assert option.stored_bytes <= (expected_share + 0.1) * full


def test_images_direct_cfg_without_theta_and_finextract(tmp_path):
    ref_bb, test_bb = _backbone(tmp_path / "a"), _backbone(tmp_path / "b")
    reference = TwoUNetPair(ref_bb, _finetuned(ref_bb.unet))
    no_theta = reduce_memory(TwoUNetPair(test_bb, _finetuned(test_bb.unet)), "delta-int8", needs_pretrained=False)
    assert no_theta.stored_bytes == 0
    for method in ("direct", "cfg"):
        assert (sample_batch(reference, "a dog", [3, 4], method, 2, 3.0) ==
                sample_batch(no_theta, "a dog", [3, 4], method, 2, 3.0)).all()
    with pytest.raises(RuntimeError, match="needs_pretrained=False"):
        sample_batch(no_theta, "a dog", [3], "finextract", 2, 3.0, -0.02)
    exact_bb = _backbone(tmp_path / "c")
    exact = reduce_memory(TwoUNetPair(exact_bb, _finetuned(exact_bb.unet)), "delta")
    assert (sample_batch(reference, "a dog", [3, 4], "finextract", 2, 3.0, -0.02) ==
            sample_batch(exact, "a dog", [3, 4], "finextract", 2, 3.0, -0.02)).all()


def test_a_failing_forward_leaves_theta_prime_intact(tmp_path):
    _, option = _pairs(tmp_path, "delta-int8")
    before = {k: v.clone() for k, v in option.backbone.unet.state_dict().items()}
    latents, t, _ = _inputs(option.backbone)
    bad = EpsRequest(PRETRAINED, option.backbone.unconditional(1))
    bad = EpsRequest(PRETRAINED, type(bad.cond)(bad.cond.states[..., :-1]))  # wrong width: the forward raises
    with torch.no_grad(), pytest.raises(RuntimeError):
        option.predict(latents, t, [bad])
    after = option.backbone.unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after)


def test_unknown_mode_and_non_dreambooth_pairs(tmp_path):
    reference, _ = _pairs(tmp_path, "delta")
    with pytest.raises(ValueError, match="memory must be one of"):
        reduce_memory(reference, "delta-int4")
    assert reduce_memory(reference, "two-unets") is reference
    with pytest.raises(ValueError, match="delta modes"):
        reduce_memory(reference, "pretrained-bf16", storage_device="cpu")


def test_sample_stage_with_a_memory_option_writes_the_same_images(tmp_path):
    """The ``finextract sample --memory`` path (workflow.attack_steps.run_sample) on a saved SD-shaped pipeline + DreamBooth UNet."""
    from PIL import Image

    from finextract.workflow.attack_steps import run_sample
    from sd_fixtures import save_pipeline

    pipe = copy.deepcopy(_PIPELINES.get("sd") or build_sd_pipeline(tmp_path / "tok"))
    base = save_pipeline(pipe, tmp_path / "base")
    _finetuned(pipe.unet).save_pretrained(tmp_path / "db", safe_serialization=True)
    images = {}
    for memory in ("two-unets", "delta", "delta-int8"):
        out = tmp_path / memory
        run_sample(str(base), str(tmp_path / "db"), "dreambooth", None, "a dog", "finextract", 3.0, -0.02, 2,
                   "0-1", 4, out, threads=1, memory=memory, precision="fp32", device="cpu")
        images[memory] = [torch.from_numpy(np.array(Image.open(p))).int()
                          for p in sorted(out.glob("seed_*.png"))]
        assert len(images[memory]) == 2 and (out / "perf.csv").exists()
    for a, b in zip(images["two-unets"], images["delta"]):
        assert torch.equal(a, b)
    for a, b in zip(images["two-unets"], images["delta-int8"]):
        assert (a - b).abs().max() <= 2  # uint8 levels


@pytest.mark.parametrize("memory", ["delta", "delta-int8"])
def test_streaming_from_a_folder_equals_the_in_memory_conversion(tmp_path, memory, monkeypatch):
    import finextract.attack.dreambooth_memory as dreambooth_memory
    from finextract.attack.dreambooth_memory import PatchedUNetPair

    monkeypatch.setattr(dreambooth_memory, "_DROP_AT_LEAST", 0)  # hand back the pages of every tensor ≥ 1 page of θ

    ref_bb, test_bb = _backbone(tmp_path / "a"), _backbone(tmp_path / "b")
    finetuned = _finetuned(ref_bb.unet)
    finetuned.save_pretrained(tmp_path / "ckpt" / "unet", safe_serialization=True)  # as finetune.save_checkpoint
    reference = reduce_memory(TwoUNetPair(ref_bb, finetuned), memory)
    streamed = PatchedUNetPair.from_folder(test_bb, tmp_path / "ckpt", memory)
    assert streamed is not None and streamed.patched_tensors == reference.patched_tensors
    assert streamed.stored_bytes == reference.stored_bytes
    latents, t, requests = _inputs(ref_bb)
    with torch.no_grad():
        for w, g in zip(reference.predict(latents, t, requests), streamed.predict(latents, t, requests)):
            assert torch.equal(w, g)
    # where it cannot stream it says so, and the caller loads the usual way
    assert PatchedUNetPair.from_folder(_backbone(tmp_path / "c"), tmp_path / "ckpt", "pretrained-bf16") is None
    (tmp_path / "ckpt" / "text_encoder").mkdir()
    assert PatchedUNetPair.from_folder(_backbone(tmp_path / "d"), tmp_path / "ckpt", memory) is None
    with pytest.raises(ValueError, match="does not match the base"):
        PatchedUNetPair.from_folder(_backbone(tmp_path / "e", "sdxl"), tmp_path / "ckpt" / "unet", memory)


def test_the_sampling_memory_key_reaches_dreambooth_sampling_only(tmp_path):
    """`sampling.memory` from the config to the sample command: DreamBooth jobs get `--memory`, LoRA and the
    control row do not, the default writes nothing (so runs made before the key keep their params), and a mode
    that does not exist fails before any job with the key named."""
    import yaml

    from conftest import load_test_config
    from test_workflow import snakemake

    def commands(memory):
        config = load_test_config()
        config["results"] = str(tmp_path / "results")
        if memory is not None:
            config["sampling"]["memory"] = memory
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        result = snakemake("-n", "-p", "--configfile", str(tmp_path / "config.yaml"))
        return result, [line for line in result.stdout.splitlines() if " sample --base" in line]

    _, default = commands(None)
    assert default and not any("--memory" in c for c in default)
    _, held = commands("delta-int8")
    dreambooth = [c for c in held if "--ft-method dreambooth" in c]
    others = [c for c in held if "--ft-method dreambooth" not in c]
    assert dreambooth and others
    assert all("--memory delta-int8" in c for c in dreambooth) and not any("--memory" in c for c in others)
    # what the Snakefile runs before the DAG, in-process (a third dry run would only add its start-up)
    from conftest import REPO
    from finextract.workflow.config import ConfigError, validate_config

    config = load_test_config()
    config["sampling"]["memory"] = "delta-int4"
    with pytest.raises(ConfigError, match="sampling.memory"):
        validate_config(config, REPO / "workflow" / "schemas")
