"""Loading θ and θ' from disk into a backbone and a model pair.

The tiny world's base is a folder with ``finextract.json``; anything else is handed to the
Stable Diffusion loaders (hub id, diffusers folder, single file).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .backbones.base import Backbone
from .backbones.tiny import is_tiny_model
from .backbones.tiny import load_base as load_tiny_base
from .model_pair import LoraPair, ModelPair, SingleModel, TwoUNetPair


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_base(spec: str, kind: str = "auto", precision: str = "auto", device: str = "auto",
              allow_pickle: bool = False, **sd_options) -> Backbone:
    """Load the pretrained model θ as a backbone (``sd_options``: config, variant, resolution)."""
    target = pick_device(device)
    if kind == "tiny" or (kind == "auto" and is_tiny_model(spec)):
        return load_tiny_base(spec, device=target)
    if kind == "tiny":
        raise FileNotFoundError(f"{spec}: not a tiny-world model folder")
    from .backbones.loading import load_backbone

    return load_backbone(spec, kind=kind, precision=precision, device=str(target), allow_pickle=allow_pickle,
                         **sd_options)


def load_pair(backbone: Backbone, ft_method: str, ft_dir: str | Path | None, **options) -> ModelPair:
    """θ' next to θ: DreamBooth as a second UNet, LoRA as an adapter, 'none' as θ itself."""
    if ft_method == "none":
        return SingleModel(backbone)
    if ft_dir is None:
        raise ValueError(f"fine-tuning method {ft_method!r} needs a fine-tuned checkpoint")
    if ft_method == "dreambooth":
        pair = TwoUNetPair(backbone, backbone.load_dreambooth_unet(ft_dir, **options))
        if getattr(backbone, "has_finetuned_text", False):
            print(f"DreamBooth {ft_dir}: its text encoder(s) were fine-tuned too; θ' encodes the caption with them",
                  flush=True)
        return pair
    if ft_method == "lora":
        options.pop("variant", None)  # a LoRA file has no weight variants
        info = backbone.load_lora(ft_dir, adapter_name="finetuned", **options)
        if info is not None:  # the SD loaders say what they found (the tiny world's loader returns nothing)
            print(f"LoRA {info.file}: {info.source_format} format, {info.unet_layers} UNet layers, "
                  f"{info.text_encoder_layers} text-encoder layers, rank {'/'.join(map(str, info.ranks))}",
                  flush=True)
        return LoraPair(backbone, "finetuned")
    raise ValueError(f"unknown fine-tuning method {ft_method!r}")
