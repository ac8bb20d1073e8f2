"""Tiny Stable Diffusion and SDXL pipelines built in memory, for tests that never reach a model hub.

The components have the real classes and the real key layout (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel/-WithProjection, a CLIP BPE tokenizer), only with a few thousand
parameters, so every loader code path that works here works on the real checkpoints.
Also writers for the two foreign formats the loaders must read: an original (LDM / A1111)
single-file checkpoint and a kohya-ss LoRA file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from safetensors.torch import save_file
from finextract.backbones.offline_tokenizer import offline_clip_tokenizer
from finextract.backbones.offline_tokenizer import write_clip_tokenizer_files as _write_clip_tokenizer_files
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

WORDS = ["art", "style", "of", "a", "cat", "dog", "sks", "yarn"]


# --- tokenizer --------------------------------------------------------------------------
def write_clip_tokenizer_files(folder: Path) -> Path:
    return _write_clip_tokenizer_files(folder, WORDS)


def tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    return offline_clip_tokenizer(folder, WORDS)


# --- components -------------------------------------------------------------------------
def tiny_text_encoder(tokenizer: CLIPTokenizer, hidden: int = 32, projection: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=37,
                            num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                            projection_dim=hidden, hidden_act="gelu",
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


def tiny_vae(scaling_factor: float = 0.18215, force_upcast: bool = False, seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=4, layers_per_block=1, norm_num_groups=32, sample_size=16,
                         scaling_factor=scaling_factor, force_upcast=force_upcast).eval()


def tiny_sd_unet(seed: int = 0) -> UNet2DConditionModel:
    """SD-1.x-shaped: attention in the first (high-resolution) block, cross-attention width 32."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32).eval()


def tiny_sdxl_unet(seed: int = 0, pooled_dim: int = 32) -> UNet2DConditionModel:
    """SDXL-shaped: no attention in the first block, text_time added embedding, cross-attention width 64."""
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(32, 64),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                cross_attention_dim=64, attention_head_dim=(2, 4), norm_num_groups=32,
                                use_linear_projection=True, addition_embed_type="text_time",
                                addition_time_embed_dim=8,
                                projection_class_embeddings_input_dim=6 * 8 + pooled_dim).eval()


def sd_scheduler(prediction_type: str = "epsilon") -> PNDMScheduler:
    return PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1,
                         set_alpha_to_one=False, prediction_type=prediction_type)


def build_sd_pipeline(workdir: Path, seed: int = 0, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    tokenizer = tiny_tokenizer(workdir / "tokenizer-src")
    return StableDiffusionPipeline(vae=tiny_vae(seed=seed), text_encoder=tiny_text_encoder(tokenizer, seed=seed),
                                   tokenizer=tokenizer, unet=tiny_sd_unet(seed), scheduler=sd_scheduler(prediction_type),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def build_sdxl_pipeline(workdir: Path, seed: int = 0) -> StableDiffusionXLPipeline:
    tokenizer = tiny_tokenizer(workdir / "tokenizer-src")
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=tiny_vae(scaling_factor=0.13025, force_upcast=True, seed=seed),
        text_encoder=tiny_text_encoder(tokenizer, seed=seed),
        text_encoder_2=tiny_text_encoder(tokenizer, projection=True, seed=seed + 1),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=tiny_sdxl_unet(seed), scheduler=scheduler)


def save_pipeline(pipe, folder: Path) -> Path:
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# --- original (LDM) single-file layout ----------------------------------------------------
_RESNET_TO_LDM = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                  ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
_VAE_ATTN_TO_LDM = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def _swap_prefix(key: str, old: str, new: str, renames: list[tuple[str, str]] = ()) -> str:
    rest = key[len(old):]
    for a, b in renames:
        rest = rest.replace(f".{a}.", f".{b}.") if rest.startswith(".") else rest
    return new + rest


def unet_ldm_names(unet: UNet2DConditionModel) -> dict[str, str]:
    """Diffusers UNet state-dict key → original (LDM/SGM) key without the ``model.diffusion_model.`` prefix.

    The inverse of diffusers' single-file converter; kohya-ss SDXL LoRA files name layers this way too.
    """
    cfg, lpb = unet.config, unet.config.layers_per_block
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
             "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1",
             "mid_block.resnets.1": "middle_block.2"}
    up_has_attn = ["CrossAttn" in t for t in cfg.up_block_types]
    out: dict[str, str] = {}
    for key in unet.state_dict():
        parts = key.split(".")
        new = None
        for old, ldm in fixed.items():
            if key.startswith(old + "."):
                renames = _RESNET_TO_LDM if "resnets" in old else []
                new = _swap_prefix(key, old, ldm, renames)
        if new is None and parts[0] in ("down_blocks", "up_blocks"):
            b, kind = int(parts[1]), parts[2]
            base = 1 + b * (lpb + 1) if parts[0] == "down_blocks" else b * (lpb + 1)
            blocks = "input_blocks" if parts[0] == "down_blocks" else "output_blocks"
            if kind in ("resnets", "attentions"):
                layer = int(parts[3])
                old = ".".join(parts[:4])
                slot = 0 if kind == "resnets" else 1
                new = _swap_prefix(key, old, f"{blocks}.{base + layer}.{slot}",
                                   _RESNET_TO_LDM if kind == "resnets" else [])
            elif kind == "downsamplers":
                new = _swap_prefix(key, ".".join(parts[:5]), f"input_blocks.{base + lpb}.0.op")
            elif kind == "upsamplers":
                slot = 2 if up_has_attn[b] else 1
                new = _swap_prefix(key, ".".join(parts[:5]), f"output_blocks.{base + lpb}.{slot}.conv")
        if new is None:
            raise KeyError(f"no LDM name for UNet key {key}")
        out[key] = new
    return out


def unet_to_ldm(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """Diffusers UNet weights under ``model.diffusion_model.*`` names (original single-file layout)."""
    state = unet.state_dict()
    return {"model.diffusion_model." + ldm: state[key] for key, ldm in unet_ldm_names(unet).items()}


def vae_to_ldm(vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    n_up = len(vae.config.up_block_types)
    out: dict[str, torch.Tensor] = {}
    for key, value in vae.state_dict().items():
        new = key.replace("conv_norm_out", "norm_out")
        for side in ("encoder", "decoder"):
            new = new.replace(f"{side}.mid_block.resnets.0.", f"{side}.mid.block_1.")
            new = new.replace(f"{side}.mid_block.resnets.1.", f"{side}.mid.block_2.")
            if f"{side}.mid_block.attentions.0." in new:
                new = new.replace(f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.")
                for a, b in _VAE_ATTN_TO_LDM:
                    new = new.replace(f".attn_1.{a}.", f".attn_1.{b}.")
                if value.ndim == 2:
                    value = value[:, :, None, None]
        parts = new.split(".")
        if parts[0] == "encoder" and parts[1] == "down_blocks":
            i = parts[2]
            if parts[3] == "resnets":
                new = ".".join(["encoder", "down", i, "block", *parts[4:]])
            else:  # downsamplers.0.conv
                new = ".".join(["encoder", "down", i, "downsample", *parts[5:]])
        if parts[0] == "decoder" and parts[1] == "up_blocks":
            i = str(n_up - 1 - int(parts[2]))
            if parts[3] == "resnets":
                new = ".".join(["decoder", "up", i, "block", *parts[4:]])
            else:  # upsamplers.0.conv
                new = ".".join(["decoder", "up", i, "upsample", *parts[5:]])
        out["first_stage_model." + new.replace("conv_shortcut", "nin_shortcut")] = value
    return out


def clip_to_ldm(text_encoder: CLIPTextModel) -> dict[str, torch.Tensor]:
    prefix = "cond_stage_model.transformer." + ("" if hasattr(text_encoder, "text_model") else "text_model.")
    return {prefix + k: v for k, v in text_encoder.state_dict().items()}


def save_sd_single_file(pipe: StableDiffusionPipeline, path: Path) -> Path:
    """An SD-1.x checkpoint as A1111/Civitai ship them (one safetensors file, LDM key names)."""
    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **clip_to_ldm(pipe.text_encoder)}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


# --- LoRA writers -------------------------------------------------------------------------
ATTN_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def attention_module_names(unet: UNet2DConditionModel) -> list[str]:
    return [name for name, _ in unet.named_modules() if name.endswith(tuple("." + t for t in ATTN_TARGETS))]


def write_kohya_lora(unet: UNet2DConditionModel, path: Path, rank: int = 4, alpha: float = 2.0,
                     text_encoder: torch.nn.Module | None = None, seed: int = 0, *,
                     text_encoder_2: torch.nn.Module | None = None, sgm_names: bool = False) -> dict[str, tuple]:
    """A kohya-ss/Civitai LoRA (``lora_unet_*``/``lora_te_*``, lora_down/lora_up/alpha) with random factors.

    SD 1.x files name UNet layers as diffusers does (``lora_unet_down_blocks_0_...``); kohya's SDXL files
    use the original SGM names (``lora_unet_input_blocks_4_1_...``, ``sgm_names=True``) and
    ``lora_te1_``/``lora_te2_`` for the two text encoders (pass ``text_encoder_2``).
    Returns {module path: (down, up, scale)} for the UNet, so a test can merge the expected weights by hand.
    """
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    expected: dict[str, tuple] = {}
    modules = dict(unet.named_modules())
    ldm = unet_ldm_names(unet) if sgm_names else {}

    def add(key: str, layer: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        down = torch.randn(rank, layer.in_features, generator=gen) * 0.1
        up = torch.randn(layer.out_features, rank, generator=gen) * 0.1
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
        state[f"{key}.alpha"] = torch.tensor(alpha)
        return down, up

    for name in attention_module_names(unet):
        unet_name = ldm[name + ".weight"].removesuffix(".weight") if sgm_names else name
        down, up = add("lora_unet_" + unet_name.replace(".", "_"), modules[name])
        expected[name] = (down, up, alpha / rank)
    encoders = {"lora_te_": text_encoder} if text_encoder_2 is None else \
        {"lora_te1_": text_encoder, "lora_te2_": text_encoder_2}
    for prefix, encoder in encoders.items():
        if encoder is None:
            continue
        for name, layer in encoder.named_modules():
            if name.endswith(("_proj", ".fc1", ".fc2")) and ".layers." in name:  # q/k/v/out_proj, mlp
                full = name if name.startswith("text_model.") else "text_model." + name
                add(prefix + full.replace(".", "_"), layer)
    save_file(state, str(path))
    return expected
