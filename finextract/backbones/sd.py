"""Stable Diffusion 1.x / 2.x behind the :class:`~finextract.backbones.base.Backbone` interface.

Latent diffusion adds two things the tiny pixel model lacks: a VAE between image space and
the space the UNet denoises, and CLIP text encoders whose output depends on *which* model is
asked. The second matters for the attack: a DreamBooth pipeline that also trained its text
encoder, or a LoRA file with text-encoder layers, changes θ' beyond the UNet. The caption c is
only ever fed to θ' and the empty caption is what θ sees in FineXtract (paper Eq. 13), so by
default :meth:`encode_captions` runs the fine-tuned text encoder (when one is attached) and
:meth:`unconditional` the pretrained one. Callers that need the other combinations pass
``model=`` explicitly.

Everything here mirrors what the diffusers pipelines do at inference (tokenisation to the
tokenizer's 77 tokens, ``vae.config.scaling_factor``, the pipeline's scheduler config), so a
checkpoint behaves as it does for its author.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from finextract.backbones import dreambooth
from finextract.backbones import lora
from finextract.backbones.base import Backbone, Conditioning

logger = logging.getLogger(__name__)

PRETRAINED = "pretrained"  # same strings as finextract.attack.model_pair
FINETUNED = "finetuned"
TextModel = Literal["pretrained", "finetuned"]


def _tuner_layers(modules: Sequence[torch.nn.Module]) -> list[torch.nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for module in modules for m in module.modules() if isinstance(m, BaseTunerLayer)]


@contextlib.contextmanager
def adapters_disabled(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Run ``modules`` as their base weights: peft adapters (a text-encoder LoRA) switched off."""
    layers = _tuner_layers(modules)
    previous = [layer.disable_adapters for layer in layers]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer, was_disabled in zip(layers, previous):
            layer.enable_adapters(not was_disabled)


class LatentDiffusionBackbone(Backbone):
    """What SD 1.x/2.x and SDXL share: a VAE codec, CLIP text encoders, a diffusers scheduler config.

    ``text_encoders`` are θ's; ``finetuned_text_encoders`` (same length, may reuse θ's modules)
    are θ''s when fine-tuning changed them. Subclasses implement :meth:`_encode`.
    """

    name = "latent"
    # DDIM as the diffusers SD/SDXL pipelines run it: the pipeline's own spacing and offset, no
    # clipping of the predicted x0 (latents are not bounded by ±1; SDXL's Euler config does not say
    # so and DDIM's default would clip), final step to alpha_bar[0] as in SD's configs.
    sampling_overrides = {"clip_sample": False, "set_alpha_to_one": False}

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, tokenizers: Sequence[Any],
                 text_encoders: Sequence[torch.nn.Module], scheduler_config: dict[str, Any], *,
                 source: str | None = None, config_source: str | None = None,
                 resolution: int | None = None, latent_sampling: Literal["sample", "mean"] = "sample",
                 vae_batch_size: int = 1):
        self.unet = unet
        self.vae = vae
        self.tokenizers = list(tokenizers)
        self.text_encoders = list(text_encoders)
        self.finetuned_text_encoders: list[torch.nn.Module] | None = None
        self.scheduler_config = {k: v for k, v in dict(scheduler_config).items() if not k.startswith("_")}
        self.source = source
        # Where diffusers-format configs for this base live (needed to read single-file fine-tunes).
        self.config_source = config_source or source
        if latent_sampling not in ("sample", "mean"):
            raise ValueError(f"latent_sampling must be 'sample' or 'mean', not {latent_sampling!r}")
        self.latent_sampling = latent_sampling
        self.vae_batch_size = vae_batch_size
        self.sample_size = (resolution // self.vae_scale_factor) if resolution else int(unet.config.sample_size)
        self.resolution = self.sample_size * self.vae_scale_factor
        self._caption_cache: dict[tuple[str, str], Conditioning] = {}

    # --- geometry -----------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_shape(self) -> tuple[int, int, int]:
        return (int(self.unet.config.in_channels), self.sample_size, self.sample_size)

    # --- VAE codec ----------------------------------------------------------------------
    @property
    def _latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def _latent_shift(self) -> float:
        return float(getattr(self.vae.config, "shift_factor", None) or 0.0)

    def to_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Encode like diffusers' training scripts: a posterior *sample* × scaling_factor by default.

        Images go through the VAE ``vae_batch_size`` at a time: at 512–1024 px its activations,
        not its weights, are what fill memory.
        """
        vae_param = next(self.vae.parameters())
        x = images.to(vae_param.device, vae_param.dtype)
        step = max(1, self.vae_batch_size)
        parts = []
        for i in range(0, x.shape[0], step):
            dist = self.vae.encode(x[i:i + step]).latent_dist
            parts.append(dist.sample() if self.latent_sampling == "sample" else dist.mean)
        return ((torch.cat(parts) - self._latent_shift) * self._latent_scale).to(images.dtype)

    def to_images(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode ``vae_batch_size`` latents at a time: at 1024 px the VAE decoder, not the UNet, sets peak memory."""
        vae_param = next(self.vae.parameters())
        z = latents.to(vae_param.device, vae_param.dtype) / self._latent_scale + self._latent_shift
        step = max(1, self.vae_batch_size)
        images = torch.cat([self.vae.decode(z[i:i + step]).sample for i in range(0, z.shape[0], step)])
        return images.to(latents.dtype)

    # --- text ---------------------------------------------------------------------------
    def attach_finetuned_text_encoders(self, encoders: Sequence[torch.nn.Module] | None) -> None:
        """Give θ' its own text encoders (a DreamBooth run that trained them). ``None`` detaches."""
        if encoders is not None and len(encoders) != len(self.text_encoders):
            raise ValueError(f"expected {len(self.text_encoders)} text encoders, got {len(encoders)}")
        self.finetuned_text_encoders = list(encoders) if encoders is not None else None
        self.clear_caption_cache()

    @property
    def has_finetuned_text(self) -> bool:
        """True when θ' encodes text differently from θ (own encoders or text-encoder LoRA layers)."""
        return self.finetuned_text_encoders is not None or bool(_tuner_layers(self.text_encoders))

    def clear_caption_cache(self) -> None:
        self._caption_cache.clear()

    def encode_captions(self, captions: list[str], model: TextModel = FINETUNED) -> Conditioning:
        """Caption states as ``model``'s text encoders see them (θ' by default: see the module docstring)."""
        missing = [c for c in dict.fromkeys(captions) if (model, c) not in self._caption_cache]
        if missing:
            with torch.no_grad():
                cond = self._encode_with(missing, model)
            for i, caption in enumerate(missing):
                self._caption_cache[(model, caption)] = Conditioning(
                    cond.states[i:i + 1], {k: v[i:i + 1] for k, v in cond.added.items()})
        return Conditioning.cat([self._caption_cache[(model, c)] for c in captions])

    def unconditional(self, n: int = 1, model: TextModel = PRETRAINED) -> Conditioning:
        """The empty caption through θ's text encoders by default (what FineXtract pairs with θ)."""
        return self.encode_captions([""], model=model).repeat(n)

    def _encode_with(self, captions: list[str], model: TextModel) -> Conditioning:
        if model == PRETRAINED:
            with adapters_disabled(self.text_encoders):
                return self._encode(captions, self.text_encoders)
        if model == FINETUNED:
            return self._encode(captions, self.finetuned_text_encoders or self.text_encoders)
        raise ValueError(f"model must be {PRETRAINED!r} or {FINETUNED!r}, not {model!r}")

    def _tokenize(self, tokenizer: Any, captions: list[str]) -> torch.Tensor:
        tokens = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt")
        full = tokenizer(captions, padding="longest", return_tensors="pt").input_ids
        if full.shape[-1] > tokens.input_ids.shape[-1]:
            logger.warning("captions truncated to %d tokens, as the diffusers pipelines do",
                           tokenizer.model_max_length)
        return tokens.input_ids

    def _encode(self, captions: list[str], encoders: Sequence[torch.nn.Module]) -> Conditioning:
        raise NotImplementedError

    # --- fine-tuned checkpoints (overrides of the Backbone defaults) -----------------------
    def save_lora(self, unet: torch.nn.Module, out_dir: str | Path, rank: int | None = None,
                  targets: Sequence[str] | None = None, adapter_name: str = FINETUNED) -> None:
        """Write the adapter as diffusers' ``pytorch_lora_weights.safetensors`` (what ``load_lora_weights`` reads)."""
        out_dir = Path(out_dir)
        lora.save_lora(unet, out_dir, adapter_name=adapter_name)
        config = unet.peft_config[adapter_name]
        (out_dir / "lora_config.json").write_text(json.dumps(
            {"rank": int(config.r), "alpha": float(config.lora_alpha),
             "targets": sorted(config.target_modules) if targets is None else list(targets),
             "format": "diffusers"}, indent=2) + "\n")

    def load_lora(self, path: str | Path, adapter_name: str = FINETUNED, **kwargs: Any) -> Any:
        """Any LoRA diffusers can read (its own format, kohya/Civitai), checked against this base first."""
        return lora.load_lora(self, path, adapter_name=adapter_name, **kwargs)

    def load_dreambooth_unet(self, path: str | Path, **kwargs: Any) -> UNet2DConditionModel:
        """θ''s UNet from a UNet folder, pipeline folder, hub id or single file (see dreambooth.load_dreambooth_unet)."""
        return dreambooth.load_dreambooth_unet(path, self, **kwargs)

    # --- bookkeeping --------------------------------------------------------------------
    def modules(self) -> list[torch.nn.Module]:
        mods: list[torch.nn.Module] = [self.unet, self.vae, *self.text_encoders]
        for enc in self.finetuned_text_encoders or []:
            if all(enc is not m for m in mods):
                mods.append(enc)
        return mods

    def to(self, device: torch.device | str) -> "LatentDiffusionBackbone":
        for module in self.modules():
            module.to(device)
        self.clear_caption_cache()
        return self

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype


class SDBackbone(LatentDiffusionBackbone):
    """SD 1.x (CLIP ViT-L) and 2.x (OpenCLIP ViT-H, ε or v prediction): one text encoder, last hidden states."""

    name = "sd"

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: torch.nn.Module,
                 tokenizer: Any, scheduler_config: dict[str, Any], **kwargs: Any):
        super().__init__(unet, vae, [tokenizer], [text_encoder], scheduler_config, **kwargs)

    @property
    def tokenizer(self) -> Any:
        return self.tokenizers[0]

    @property
    def text_encoder(self) -> torch.nn.Module:
        return self.text_encoders[0]

    def _encode(self, captions: list[str], encoders: Sequence[torch.nn.Module]) -> Conditioning:
        encoder = encoders[0]
        ids = self._tokenize(self.tokenizer, captions).to(encoder.device)
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = (ids != self.tokenizer.pad_token_id).long()
        return Conditioning(encoder(ids, attention_mask=mask)[0])

    @classmethod
    def from_pipeline(cls, pipe: Any, **kwargs: Any) -> "SDBackbone":
        return cls(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, dict(pipe.scheduler.config), **kwargs)
