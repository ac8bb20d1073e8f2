"""AltDiffusion (BAAI; the paper's multilingual model) behind the Backbone interface.

AltDiffusion is Stable Diffusion 1.x with another text tower: its UNet, VAE and scheduler are SD-1.x-shaped
(``UNet2DConditionModel`` with 768-wide cross-attention, ``AutoencoderKL``), and only the tokenizer (XLM-R,
``XLMRobertaTokenizer``) and the text encoder differ. The text encoder is diffusers'
``RobertaSeriesModelWithTransformation`` (``diffusers.pipelines.deprecated.alt_diffusion``): an XLM-R
model whose token states go through a linear projection (``projection_state``) to the UNet's width. It
is fed with the tokenizer's attention mask when its config says ``use_attention_mask``, as the
AltDiffusion pipeline does.

Everything else is :class:`~finextract.backbones.sd.SDBackbone`: the VAE codec, DDIM from the pipeline's
scheduler config, θ's text encoder for the empty caption and θ''s for the caption, LoRA in diffusers
format on the (SD) UNet, DreamBooth UNet / pipeline folders. Captions may be in any of the languages the
checkpoint was trained on; they are tokenized as given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from finextract.backbones.kinds import is_single_file
from finextract.backbones.sd import SDBackbone


class AltDiffusionBackbone(SDBackbone):
    """SD 1.x UNet/VAE with an XLM-R tokenizer and a ``RobertaSeriesModelWithTransformation`` text encoder."""

    name = "altdiffusion"

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: torch.nn.Module,
                 tokenizer: Any, scheduler_config: dict[str, Any], **kwargs: Any):
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler_config, **kwargs)
        width = getattr(text_encoder.config, "project_dim", None)
        expected = int(unet.config.cross_attention_dim)
        if width is None:
            raise ValueError("AltDiffusionBackbone needs a RobertaSeriesModelWithTransformation text encoder "
                             f"(config with project_dim), got {type(text_encoder).__name__}")
        if int(width) != expected:
            raise ValueError(f"AltDiffusion text encoder projects to {width} features but the UNet's "
                             f"cross-attention expects {expected}: the components do not belong together")

    def load_dreambooth_unet(self, path: str | Path, **kwargs: Any) -> UNet2DConditionModel:
        """θ''s UNet from a UNet folder, pipeline folder or hub id; single files are not supported here."""
        if is_single_file(path):
            raise ValueError(f"{path}: a single-file DreamBooth checkpoint cannot be read for AltDiffusion "
                             "(diffusers has no converter for its XLM-R text encoder); save it as a diffusers "
                             "pipeline or UNet folder")
        return super().load_dreambooth_unet(path, **kwargs)


__all__ = ["AltDiffusionBackbone"]
