"""Loading θ and θ' from disk into a backbone and a model pair: the one ``load_base`` for every model kind.

The tiny world's base is a folder with ``finextract.json``; anything else is handed to the
Stable Diffusion loaders (hub id, diffusers folder, single file).
"""
from __future__ import annotations

import logging
from pathlib import Path

from finextract.backbones.base import ADAPTER_NAME, Backbone
from finextract.backbones.device import resolve_device
from finextract.backbones.tiny import is_tiny_model, load_tiny
from finextract.attack.model_pair import LoraPair, ModelPair, SingleModel, TwoUNetPair

logger = logging.getLogger(__name__)


def load_base(spec: str, kind: str = "auto", precision: str = "auto", device: str = "auto",
              allow_pickle: bool = False, **sd_options) -> Backbone:
    """Load the pretrained model θ as a backbone (``sd_options``: config, variant, resolution)."""
    target = resolve_device(device)
    if kind == "tiny" or (kind == "auto" and is_tiny_model(spec)):
        return load_tiny(spec, device=target)
    from finextract.backbones.loading import load_backbone

    return load_backbone(spec, kind=kind, precision=precision, device=str(target), allow_pickle=allow_pickle,
                         **sd_options)


def load_pair(backbone: Backbone, ft_method: str, ft_dir: str | Path | None, **options) -> ModelPair:
    """θ' next to θ: DreamBooth as a second UNet, LoRA as an adapter, 'none' as θ itself."""
    if ft_method == "none":
        return SingleModel(backbone)
    if ft_dir is None:
        raise ValueError(f"fine-tuning method {ft_method!r} needs a fine-tuned checkpoint")
    if ft_method == "dreambooth":
        return TwoUNetPair(backbone, backbone.load_dreambooth_unet(ft_dir, **options))  # the loader logs what it found
    if ft_method == "lora":
        options.pop("variant", None)  # a LoRA file has no weight variants
        info = backbone.load_lora(ft_dir, adapter_name=ADAPTER_NAME, **options)
        if info is not None:  # the SD loaders say what they found (the tiny world's loader returns nothing)
            logger.info("LoRA %s: %s format, %d UNet layers, %d text-encoder layers, rank %s", info.file,
                        info.source_format, info.unet_layers, info.text_encoder_layers,
                        "/".join(map(str, info.ranks)))
        return LoraPair(backbone, ADAPTER_NAME)
    raise ValueError(f"unknown fine-tuning method {ft_method!r}")
