"""Stable Diffusion / SDXL backends on tiny in-memory pipelines: loaders, LoRA formats, sampling.

Every model here is built by tests/sd_fixtures.py with the real diffusers/transformers classes
and saved to disk, so the loaders run their real code paths (from_pretrained, from_single_file,
diffusers' LoRA conversion) without any model hub.
"""
import copy

import numpy as np
import pytest
import torch

from finextract.backbones.loading import (check_pickle, load_backbone, load_dreambooth_unet, load_lora,
                                          resolution_of, resolve_dtype, save_lora)
from finextract.backbones.sd import FINETUNED, PRETRAINED, SDBackbone
from finextract.backbones.sdxl import SDXLBackbone
from finextract.attack.model_pair import EpsRequest, LoraPair, TwoUNetPair, lora_layers
from finextract.attack.sampling import sample_batch
from sd_fixtures import (ATTN_TARGETS, build_sd_pipeline, build_sdxl_pipeline, clip_to_ldm, save_pipeline,
                         save_sd_single_file, tiny_sd_unet, tiny_sdxl_unet, tiny_text_encoder, unet_to_ldm,
                         vae_to_ldm, write_kohya_lora)

CAPTION = "art style of a cat"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    return {"root": root, "sd": save_pipeline(build_sd_pipeline(root), root / "sd"),
            "sdxl": save_pipeline(build_sdxl_pipeline(root), root / "sdxl")}


def probe(backbone, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, *backbone.latent_shape(), generator=gen), torch.tensor(500)


def eps(backbone, unet=None, cond=None):
    latents, t = probe(backbone)
    cond = cond if cond is not None else backbone.encode_captions([CAPTION])
    with torch.no_grad():
        return backbone.predict_eps(unet if unet is not None else backbone.unet, latents, t, cond)


def add_trained_like_lora(unet, rank=4, alpha=4.0, seed=0):
    """A LoRA as training leaves it: Gaussian A and a *nonzero* B (peft initialises B to zero)."""
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                target_modules=list(ATTN_TARGETS)), adapter_name=FINETUNED)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    unet.eval()


# --- base models ----------------------------------------------------------------------------
def test_sd_backbone_from_diffusers_folder(models):
    bb = load_backbone(models["sd"], latent_sampling="mean")
    assert isinstance(bb, SDBackbone) and bb.dtype == torch.float32
    assert bb.resolution == 16 and bb.latent_shape() == (4, 8, 8) == (4, *[bb.unet.config.sample_size] * 2)
    assert resolution_of(models["sd"]) == 16
    cond = bb.encode_captions([CAPTION, ""])
    assert cond.states.shape == (2, 77, 32) and not cond.added
    assert torch.equal(bb.unconditional(3).states, cond.states[1:].expand(3, -1, -1))
    assert bb.scheduler_config["prediction_type"] == "epsilon"
    ddim = bb.sampling_scheduler()
    assert not ddim.config.clip_sample and ddim.config.timestep_spacing == "leading" and ddim.config.steps_offset == 1
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = bb.to_latents(images)
        expected = bb.vae.encode(images).latent_dist.mean * bb.vae.config.scaling_factor
        assert torch.allclose(latents, expected, atol=1e-6)
        assert bb.to_images(latents).shape == images.shape


def test_sdxl_backbone_conditioning(models):
    bb = load_backbone(models["sdxl"])
    assert isinstance(bb, SDXLBackbone) and bb.resolution == 16
    cond = bb.encode_captions([CAPTION])
    assert cond.states.shape == (1, 77, 64)  # penultimate states of both encoders, concatenated
    assert cond.added["text_embeds"].shape == (1, 32)
    assert cond.added["time_ids"].tolist() == [[16.0, 16.0, 0.0, 0.0, 16.0, 16.0]]
    uncond = bb.unconditional(2)  # force_zeros_for_empty_prompt, as the SDXL pipeline does
    assert uncond.states.shape == (2, 77, 64) and not uncond.states.any() and not uncond.added["text_embeds"].any()
    assert eps(bb, cond=bb.unconditional(1)).shape == (1, 4, 8, 8)
    assert not bb.sampling_scheduler().config.clip_sample  # DDIM's default would clip SDXL latents
    with pytest.raises(ValueError, match="SDXL checkpoint but kind='sd'"):
        load_backbone(models["sdxl"], kind="sd")


def test_precision_strings():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype("fp16", "cuda") == torch.float16
    with pytest.raises(ValueError, match="fp16 on CPU"):
        resolve_dtype("fp16", "cpu")


def test_single_file_checkpoint_loads_with_local_configs(models, tmp_path):
    file = save_sd_single_file(build_sd_pipeline(models["root"]), tmp_path / "model.safetensors")
    from_folder = load_backbone(models["sd"])
    from_file = load_backbone(file, config=models["sd"])
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(from_folder, name).state_dict(), getattr(from_file, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # equal weights; outputs agree to float rounding (the loaded storage differs, so may BLAS paths)
    assert torch.allclose(eps(from_folder), eps(from_file), atol=1e-5)
    with pytest.raises(ValueError, match="config="):  # offline, nothing to take the configs from
        load_backbone(file, local_files_only=True)


def test_pickle_checkpoints_need_opt_in(models, tmp_path):
    pipe = build_sd_pipeline(models["root"])
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **clip_to_ldm(pipe.text_encoder)}},
               ckpt)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_backbone(ckpt)
    bb = load_backbone(ckpt, allow_pickle=True, config=models["sd"])
    assert torch.allclose(eps(bb), eps(load_backbone(models["sd"])), atol=1e-5)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        check_pickle(tmp_path / "lora.bin", allow_pickle=False, what="LoRA file")
    pipe.save_pretrained(tmp_path / "pipeline_bin", safe_serialization=False)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_backbone(tmp_path / "pipeline_bin")
    assert isinstance(load_backbone(tmp_path / "pipeline_bin", allow_pickle=True), SDBackbone)
    unet_dir = tmp_path / "db_unet_bin"
    tiny_sd_unet(seed=1).save_pretrained(unet_dir, safe_serialization=False)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_dreambooth_unet(unet_dir, bb)


# --- LoRA -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_our_lora_file_round_trips_and_diffusers_reads_it(models, tmp_path, kind):
    trained = load_backbone(models[kind])
    base_eps = eps(trained)
    add_trained_like_lora(trained.unet, rank=4, alpha=2.0)  # alpha != rank: scale must survive the file
    trained_eps = eps(trained)
    trained.save_lora(trained.unet, tmp_path / "lora", rank=4, targets=list(ATTN_TARGETS))
    assert (tmp_path / "lora" / "pytorch_lora_weights.safetensors").exists()

    fresh = load_backbone(models[kind])
    info = load_lora(fresh, tmp_path / "lora")
    assert info.unet_layers == len(lora_layers(fresh.unet)) > 0 and info.ranks == [4]
    assert torch.equal(eps(fresh), trained_eps) and not torch.equal(trained_eps, base_eps)

    if kind == "sd":  # the same file through diffusers' own pipeline loader
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(models["sd"], safety_checker=None)
        pipe.load_lora_weights(tmp_path / "lora", adapter_name="x")
        assert torch.equal(eps(fresh, unet=pipe.unet), trained_eps)


def test_kohya_lora_with_text_encoder_layers(models, tmp_path):
    bb = load_backbone(models["sd"])
    reference_unet = copy.deepcopy(bb.unet)
    original_cond = bb.encode_captions([CAPTION])
    expected = write_kohya_lora(bb.unet, tmp_path / "civitai.safetensors", rank=4, alpha=2.0,
                                text_encoder=bb.text_encoder)
    info = load_lora(bb, tmp_path / "civitai.safetensors")
    assert info.source_format == "kohya" and info.unet_layers == len(expected) and info.text_encoder_layers > 0

    # UNet: W + (alpha / rank) · up @ down, merged by hand, gives the same noise prediction
    modules = dict(reference_unet.named_modules())
    with torch.no_grad():
        for name, (down, up, scale) in expected.items():
            modules[name].weight += scale * up @ down
    assert torch.allclose(eps(bb, cond=original_cond), eps(bb, reference_unet, original_cond), atol=1e-5)
    assert not torch.allclose(eps(bb, cond=original_cond), eps(load_backbone(models["sd"])), atol=1e-4)

    # text encoder: θ' encodes the caption with its LoRA, θ (and the empty caption) without
    assert bb.has_finetuned_text
    assert not torch.allclose(bb.encode_captions([CAPTION]).states, original_cond.states, atol=1e-4)
    assert torch.equal(bb.encode_captions([CAPTION], model=PRETRAINED).states, original_cond.states)
    assert torch.equal(bb.unconditional().states,
                       load_backbone(models["sd"]).unconditional().states)


def test_mismatched_lora_fails_before_anything_is_loaded(models, tmp_path):
    xl = load_backbone(models["sdxl"])
    add_trained_like_lora(xl.unet)
    xl_file = save_lora(xl, tmp_path / "xl_lora.safetensors")  # a backbone and a file name work too
    sd = load_backbone(models["sd"])
    with pytest.raises(ValueError) as err:
        load_lora(sd, xl_file)
    message = str(err.value)
    assert "xl_lora" in message and str(models["sd"]) in message and "SDXL LoRA" in message
    assert not lora_layers(sd.unet)  # nothing half-loaded

    write_kohya_lora(sd.unet, tmp_path / "sd15.safetensors")
    with pytest.raises(ValueError, match="does not fit the base model"):
        load_lora(xl, tmp_path / "sd15.safetensors", adapter_name="other")


# --- DreamBooth ------------------------------------------------------------------------------------
def test_dreambooth_unet_folder_and_pipeline_with_trained_text_encoder(models, tmp_path):
    bb = load_backbone(models["sd"])
    ft_unet = tiny_sd_unet(seed=1)
    ft_unet.save_pretrained(tmp_path / "db_unet")
    unet = load_dreambooth_unet(tmp_path / "db_unet", bb)
    # weights are exact; outputs of in-memory vs file-backed tensors differ by ~1e-6 (storage alignment)
    assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), ft_unet.state_dict().values()))
    assert torch.allclose(eps(bb, unet), eps(bb, ft_unet), atol=1e-5)
    assert not torch.allclose(eps(bb, unet), eps(bb), atol=1e-3)
    assert not bb.has_finetuned_text

    pipe = build_sd_pipeline(models["root"])
    pipe.unet, pipe.text_encoder = ft_unet, tiny_text_encoder(pipe.tokenizer, seed=7)
    save_pipeline(pipe, tmp_path / "db_pipeline")
    fresh = load_backbone(models["sd"])
    pre = fresh.encode_captions([CAPTION]).states
    unet2 = fresh.load_dreambooth_unet(tmp_path / "db_pipeline")
    assert torch.allclose(eps(fresh, unet2), eps(fresh, unet), atol=1e-5)
    assert fresh.has_finetuned_text
    assert not torch.allclose(fresh.encode_captions([CAPTION]).states, pre)
    assert torch.equal(fresh.encode_captions([CAPTION], model=PRETRAINED).states, pre)

    tiny_sdxl_unet().save_pretrained(tmp_path / "xl_unet")
    with pytest.raises(ValueError, match="does not match the base model"):
        load_dreambooth_unet(tmp_path / "xl_unet", bb)


# --- sampling ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_sampling_with_lora_and_dreambooth_pairs(models, tmp_path, kind):
    from finextract.attack.load_models import load_base, load_pair

    bb = load_base(str(models[kind]), precision="fp32", device="cpu")
    donor = load_backbone(models[kind])
    add_trained_like_lora(donor.unet)
    donor.save_lora(donor.unet, tmp_path / "lora")
    (tiny_sd_unet if kind == "sd" else tiny_sdxl_unet)(seed=1).save_pretrained(tmp_path / "db" / "unet")
    pairs = {"lora": load_pair(bb, "lora", tmp_path / "lora"),
             "dreambooth": load_pair(bb, "dreambooth", tmp_path / "db")}
    assert isinstance(pairs["lora"], LoraPair) and isinstance(pairs["dreambooth"], TwoUNetPair)
    methods = ["direct", "cfg", "finextract"] if kind == "sd" else ["finextract"]
    outputs = {}
    for ft, pair in pairs.items():
        for method in methods:
            images = sample_batch(pair, CAPTION, [0, 1], method, steps=2, w=3.0, k=-0.02)
            assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
            outputs[ft, method] = images
    assert not np.array_equal(outputs["lora", "finextract"], outputs["dreambooth", "finextract"])


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_one_pass_lora_pair_equals_two_forwards(models, kind):
    """LoraPair's mixed-adapter batch routes each row exactly as a plain forward would.

    Bit-for-bit against the same 4-row batch run twice with the adapter on / off for all rows;
    against two separate 2-row forwards only to float rounding (max abs diff ~1.5e-6 here), the
    same size as batching one model differently (2 rows vs 1 row gives ~1.6e-6 too).
    """
    from finextract.backbones.base import Conditioning

    bb = load_backbone(models[kind])
    add_trained_like_lora(bb.unet)
    pair = LoraPair(bb)
    latents = torch.randn(2, *bb.latent_shape(), generator=torch.Generator().manual_seed(1))
    t = torch.tensor(700)
    cond, uncond = bb.encode_captions([CAPTION]), bb.unconditional(1)
    stacked = Conditioning.cat([cond.repeat(2), uncond.repeat(2)])
    with torch.no_grad():
        ft_cond, pre_uncond = pair.predict(latents, t, [EpsRequest(FINETUNED, cond), EpsRequest(PRETRAINED, uncond)])
        all_ft = bb.predict_eps(bb.unet, latents.repeat(2, 1, 1, 1), t, stacked)
        separate_ft = bb.predict_eps(bb.unet, latents, t, cond.repeat(2))
        bb.unet.disable_adapters()
        all_pre = bb.predict_eps(bb.unet, latents.repeat(2, 1, 1, 1), t, stacked)
        separate_pre = bb.predict_eps(bb.unet, latents, t, uncond.repeat(2))
        bb.unet.enable_adapters()
    assert not torch.allclose(ft_cond, pre_uncond, atol=1e-3)
    assert torch.equal(ft_cond, all_ft[:2]) and torch.equal(pre_uncond, all_pre[2:])
    assert (ft_cond - separate_ft).abs().max() < 1e-5
    assert (pre_uncond - separate_pre).abs().max() < 1e-5


def test_reduced_precision_path_runs(models, tmp_path):
    """bf16 on CPU stands in for fp16 on a GPU: LoRA layers, added SDXL inputs and the VAE follow the dtype."""
    donor = load_backbone(models["sdxl"])
    add_trained_like_lora(donor.unet)
    donor.save_lora(donor.unet, tmp_path / "lora")
    bb = load_backbone(models["sdxl"], dtype="bf16")
    load_lora(bb, tmp_path / "lora")
    assert {p.dtype for p in bb.unet.parameters()} == {torch.bfloat16}
    images = sample_batch(LoraPair(bb), CAPTION, [0], "finextract", steps=2, w=5.0, k=-0.02)
    assert images.shape == (1, 16, 16, 3)


# --- fine-tuning loop integration ------------------------------------------------------------------------
def test_lead_finetune_loop_writes_a_lora_our_loader_reads(models, tmp_path):
    from finextract.training.finetune import finetune
    from finextract.workflow.attack_steps import finetune_config
    from finextract.attack.load_models import load_pair

    bb = load_backbone(models["sd"])
    images = np.random.default_rng(0).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    cfg = finetune_config(method="lora", lr=1e-2, steps_per_image=1, rank=4)
    finetune(bb, images, CAPTION, cfg, tmp_path / "ft", progress=False)
    fresh = load_backbone(models["sd"])
    pair = load_pair(fresh, "lora", tmp_path / "ft")
    assert torch.equal(eps(fresh), eps(bb))  # same adapter, same predictions
    assert sample_batch(pair, CAPTION, [0], "finextract", steps=2, w=5.0, k=0.0).shape == (1, 16, 16, 3)


# --- perf recorder ---------------------------------------------------------------------------------------
def test_perf_recorder_rows(tmp_path):
    from finextract.reporting.perf import COLUMNS, PerfRecorder

    recorder = PerfRecorder(device="cpu")
    with recorder:
        torch.ones(100).sum()
    row = recorder.row(method="cfg", ft="lora", images=4)
    assert list(row)[:len(COLUMNS)] == COLUMNS
    assert row["memory_kind"] == "cpu_peak_rss_process" and row["peak_memory_gb"] > 0
    assert row["seconds_per_image"] == pytest.approx(row["seconds"] / 4, abs=1e-3)
    path = tmp_path / "perf.csv"
    recorder.append_csv(path, method="cfg", ft="lora", images=4)
    recorder.append_csv(path, method="finextract", ft="lora", images=4)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 3
