"""Loading real Stable Diffusion checkpoints: the base model θ, and the one import point for θ' loaders.

The attack needs θ (a published base) and θ' (someone's fine-tune of it). Both come in several
shapes: a hub id or a local diffusers folder, a single ``.safetensors``/``.ckpt`` file as
A1111/Civitai ship them, a DreamBooth UNet or whole pipeline, a LoRA in diffusers or
kohya-ss format. By concern:

- :mod:`.kinds` — what a spec names (SD or SDXL, resolution) without loading weights, and the
  pickle policy (no unpickling unless ``allow_pickle=True``);
- :mod:`.pipelines` — reading a diffusers pipeline under that policy;
- this module — device and precision, and θ as a
  :class:`~finextract.backbones.sd.LatentDiffusionBackbone`;
- :mod:`.dreambooth` — θ' as a second UNet; :mod:`.lora` — θ' as peft LoRA layers on θ's UNet.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from finextract.backbones.device import resolve_device, resolve_dtype
from finextract.backbones.dreambooth import check_unet_fits, load_dreambooth_unet
from finextract.backbones.kinds import (PICKLE_SUFFIXES, SINGLE_FILE_SUFFIXES, Kind, check_pickle, detect_kind, is_single_file,
                    resolution_of)
from finextract.backbones.lora import LORA_WEIGHT_NAME, LoraInfo, check_lora_fits, load_lora, save_lora
from finextract.backbones.pipelines import PIPELINES, load_pipeline
from finextract.backbones.sd import LatentDiffusionBackbone, SDBackbone
from finextract.backbones.sdxl import SDXLBackbone
from finextract.backbones.altdiffusion import AltDiffusionBackbone

__all__ = ["PICKLE_SUFFIXES", "SINGLE_FILE_SUFFIXES", "LORA_WEIGHT_NAME", "Kind", "LoraInfo", "check_lora_fits",
           "check_pickle", "check_unet_fits", "detect_kind", "is_single_file", "load_backbone",
           "load_dreambooth_unet", "load_lora", "resolution_of", "resolve_device", "resolve_dtype", "save_lora"]
BACKBONES: dict[str, type[LatentDiffusionBackbone]] = {"sd": SDBackbone, "sdxl": SDXLBackbone,
                                                       "altdiffusion": AltDiffusionBackbone}


def load_backbone(spec: str | Path, kind: Kind | Literal["auto"] = "auto", dtype: str | torch.dtype = "auto",
                  device: str | torch.device = "auto", allow_pickle: bool = False, *,
                  config: str | Path | None = None, variant: str | None = None, resolution: int | None = None,
                  local_files_only: bool = False, latent_sampling: Literal["sample", "mean"] = "sample",
                  vae_batch_size: int = 1, precision: str | torch.dtype | None = None,
                  ) -> LatentDiffusionBackbone:
    """Load θ from a hub id, a local diffusers folder, or a single-file checkpoint (not for AltDiffusion).

    ``dtype`` (alias ``precision``, as the workflow config calls it): "auto" (fp16 on CUDA,
    fp32 on CPU), "fp32", "fp16", "bf16" or a torch dtype. ``config`` (single files only)
    names a local diffusers folder or hub id whose component configs match the checkpoint: a
    single file carries weights but no configs, so without it diffusers fetches the configs of
    the architecture it guesses from the hub.
    """
    spec = str(spec)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(precision if precision is not None else dtype, device)
    if kind == "altdiffusion" and is_single_file(spec):
        raise ValueError(f"{spec}: AltDiffusion loads from a diffusers folder or hub id (e.g. BAAI/AltDiffusion); "
                         "single-file checkpoints are not supported for it")
    found = detect_kind(spec, allow_pickle=allow_pickle, local_files_only=local_files_only)
    if kind == "auto":
        kind = found
    elif kind != found:
        raise ValueError(f"{spec} is an {found.upper()} checkpoint but kind={kind!r} was asked for")
    if kind not in PIPELINES:
        raise ValueError(f"kind must be 'sd', 'sdxl', 'altdiffusion' or 'auto', not {kind!r}")
    pipe = load_pipeline(kind, spec, torch_dtype, allow_pickle, config=config, variant=variant,
                          local_files_only=local_files_only)
    if torch_dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16; diffusers upcasts it the same way
    config_source = str(config) if config is not None else (None if is_single_file(spec) else spec)
    backbone = BACKBONES[kind].from_pipeline(pipe, source=spec, config_source=config_source,
                                             resolution=resolution, latent_sampling=latent_sampling,
                                             vae_batch_size=vae_batch_size)
    for module in backbone.modules():
        module.eval()
    return backbone.to(device)
