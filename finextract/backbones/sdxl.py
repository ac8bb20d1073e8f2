"""Stable Diffusion XL behind the Backbone interface.

SDXL conditions on two CLIP encoders (penultimate hidden states, concatenated) plus two
extra UNet inputs: the pooled text embedding of encoder 2 and the "micro-conditioning" time
ids (original size, crop corner, target size). The extras travel in ``Conditioning.added`` so
the model pairs batch them like the states.

SDXL base was trained with caption dropout that *zeroes* the embeddings, and its pipeline
config says ``force_zeros_for_empty_prompt``; so its unconditional input is zeros, not the
encoded empty string. We follow the pipeline's flag (overridable) for θ and θ' alike.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from finextract.backbones.base import Conditioning
from finextract.backbones.sd import FINETUNED, PRETRAINED, LatentDiffusionBackbone, TextModel


class SDXLBackbone(LatentDiffusionBackbone):
    name = "sdxl"

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: torch.nn.Module,
                 text_encoder_2: torch.nn.Module, tokenizer: Any, tokenizer_2: Any,
                 scheduler_config: dict[str, Any], *, force_zeros_for_empty_prompt: bool = True,
                 original_size: tuple[int, int] | None = None,
                 crops_coords_top_left: tuple[int, int] = (0, 0), **kwargs: Any):
        super().__init__(unet, vae, [tokenizer, tokenizer_2], [text_encoder, text_encoder_2],
                         scheduler_config, **kwargs)
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.original_size = original_size
        self.crops_coords_top_left = crops_coords_top_left
        self._check_added_embedding()

    @property
    def text_encoder(self) -> torch.nn.Module:
        return self.text_encoders[0]

    @property
    def text_encoder_2(self) -> torch.nn.Module:
        return self.text_encoders[1]

    def time_ids(self) -> torch.Tensor:
        """(original_size, crop top-left, target_size) as the SDXL pipeline builds them for a square image."""
        target = (self.resolution, self.resolution)
        original = self.original_size or target
        return torch.tensor([[*original, *self.crops_coords_top_left, *target]], dtype=torch.float32)

    def _check_added_embedding(self) -> None:
        """Fail at load time, not mid-sampling, when the UNet expects another pooled/time-id width."""
        cfg = self.unet.config
        if getattr(cfg, "addition_embed_type", None) != "text_time":
            raise ValueError("SDXLBackbone needs a UNet with addition_embed_type='text_time' (an SDXL UNet); "
                             "this one looks like SD 1.x/2.x: load it with kind='sd'")
        pooled = int(self.text_encoder_2.config.projection_dim)
        expected = int(cfg.projection_class_embeddings_input_dim)
        got = 6 * int(cfg.addition_time_embed_dim) + pooled
        if got != expected:
            raise ValueError(f"SDXL UNet expects {expected} pooled+time-id features, text encoder 2 and "
                             f"time ids give {got}: the components do not belong together")

    def _encode(self, captions: list[str], encoders: Sequence[torch.nn.Module]) -> Conditioning:
        states, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, encoders):
            ids = self._tokenize(tokenizer, captions).to(encoder.device)
            out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]  # encoder 2 is CLIPTextModelWithProjection: out[0] is text_embeds
        assert pooled is not None and pooled.ndim == 2, "text encoder 2 must return pooled text_embeds"
        cat = torch.cat(states, dim=-1)
        time_ids = self.time_ids().to(cat.device, cat.dtype).expand(cat.shape[0], -1)
        return Conditioning(cat, {"text_embeds": pooled, "time_ids": time_ids})

    def unconditional(self, n: int = 1, model: TextModel = PRETRAINED) -> Conditioning:
        cond = self.encode_captions([""], model=model)
        if self.force_zeros_for_empty_prompt:
            cond = Conditioning(torch.zeros_like(cond.states),
                                {"text_embeds": torch.zeros_like(cond.added["text_embeds"]),
                                 "time_ids": cond.added["time_ids"]})
        return cond.repeat(n)

    @classmethod
    def from_pipeline(cls, pipe: Any, **kwargs: Any) -> "SDXLBackbone":
        kwargs.setdefault("force_zeros_for_empty_prompt",
                          bool(getattr(pipe.config, "force_zeros_for_empty_prompt", True)))
        return cls(pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.tokenizer,
                   pipe.tokenizer_2, dict(pipe.scheduler.config), **kwargs)


__all__ = ["SDXLBackbone", "PRETRAINED", "FINETUNED"]
