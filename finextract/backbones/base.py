"""One interface for every diffusion model the attack runs on.

A backbone knows how to turn captions into conditioning, images into the space its UNet
denoises (identity-like for pixel models, a VAE for latent models) and back, and how to
turn whatever its UNet predicts into a noise prediction ε — the quantity the paper's
guidance formulas combine. Sampling, fine-tuning and guidance never look past this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

# name -> extra from_config arguments; all deterministic (no noise after the initial latents)
SAMPLING_SCHEDULERS: dict[str, dict[str, Any]] = {
    "ddim": {},
    "dpmsolver++": {"algorithm_type": "dpmsolver++", "solver_order": 2},
    "unipc": {},
}


def _scheduler_class(kind: str):
    return {"ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler,
            "unipc": UniPCMultistepScheduler}[kind]

ADAPTER_NAME = "finetuned"  # θ''s LoRA adapter, as peft names it inside the UNet


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] → float [N, 3, H, W] in [-1, 1]: the pixels every backbone's ``to_latents`` takes."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


@dataclass
class Conditioning:
    """Cross-attention states plus any extra UNet inputs (SDXL's pooled text and time ids)."""

    states: torch.Tensor
    added: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.states.shape[0]

    def repeat(self, n: int) -> "Conditioning":
        """Broadcast a batch-of-one conditioning to ``n`` rows."""
        if len(self) == n:
            return self
        return Conditioning(self.states.expand(n, *self.states.shape[1:]),
                            {k: v.expand(n, *v.shape[1:]) for k, v in self.added.items()})

    @staticmethod
    def cat(items: list["Conditioning"]) -> "Conditioning":
        return Conditioning(torch.cat([c.states for c in items]),
                            {k: torch.cat([c.added[k] for c in items]) for k in items[0].added})

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "Conditioning":
        return Conditioning(self.states.to(device, dtype),
                            {k: v.to(device, dtype) for k, v in self.added.items()})


class Backbone:
    """Base class: subclasses set ``unet``, ``scheduler_config``, ``resolution`` and the codecs."""

    unet: torch.nn.Module
    scheduler_config: dict[str, Any]
    resolution: int
    name: str = "backbone"
    # DDIM settings a backbone needs beyond its training scheduler's config (see TinyPixelBackbone).
    sampling_overrides: dict[str, Any] = {}

    # --- captions -------------------------------------------------------------------
    def encode_captions(self, captions: list[str]) -> Conditioning:
        raise NotImplementedError

    def unconditional(self, n: int = 1) -> Conditioning:
        return self.encode_captions([""]).repeat(n)

    # --- image space <-> denoising space ---------------------------------------------
    def latent_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def to_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], [B, 3, H, W] → what the UNet denoises."""
        raise NotImplementedError

    def to_images(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_latents`; returns images in [-1, 1]."""
        raise NotImplementedError

    # --- schedulers -------------------------------------------------------------------
    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")

    def training_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler.from_config(self.scheduler_config)

    def sampling_scheduler(self, kind: str = "ddim", **overrides: Any):
        """A deterministic sampler for the UNet's own parametrisation (ε or v): DDIM (η = 0), or
        diffusers' DPM-Solver++ (multistep, 2nd order) or UniPC, which need fewer steps.

        Guidance combines predictions in that parametrisation, as diffusers pipelines do for CFG.
        Terms whose weights sum to 1 give the same update in ε or v; the paper's k-term does not:
        in ε it adds k·x_t/sqrt(alpha_bar_t) to DDIM's x0 estimate, which at the first trailing step of a
        cosine schedule (sqrt(alpha_bar) = 0.0016) turns every sample into noise; in v it is a 2 % rescale.
        """
        if kind not in SAMPLING_SCHEDULERS:
            raise ValueError(f"unknown sampling scheduler {kind!r}; expected one of {sorted(SAMPLING_SCHEDULERS)}")
        config = dict(self.scheduler_config)
        config.update(self.sampling_overrides)
        config.update(overrides)
        return _scheduler_class(kind).from_config(config, **SAMPLING_SCHEDULERS[kind])

    # --- the network ------------------------------------------------------------------
    def unet_output(self, unet: torch.nn.Module, latents: torch.Tensor, t: torch.Tensor,
                    cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        return unet(latents, t, encoder_hidden_states=cond.states,
                    added_cond_kwargs=cond.added or None, **kwargs).sample

    def output_to_eps(self, output: torch.Tensor, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Convert a UNet prediction of this backbone's parametrisation into ε."""
        kind = self.prediction_type
        if kind == "epsilon":
            return output
        alphas_cumprod = self._alphas_cumprod(latents.device)
        abar = alphas_cumprod[t.long()].to(latents.dtype).reshape(-1, *([1] * (latents.ndim - 1)))
        alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        if kind == "v_prediction":
            return alpha * output + sigma * latents
        if kind == "sample":
            return (latents - alpha * output) / sigma
        raise ValueError(f"unsupported prediction_type {kind!r}")

    def predict(self, unet: torch.nn.Module, latents: torch.Tensor, t: torch.Tensor,
                cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        """The UNet's prediction in its own parametrisation (what sampling and guidance use)."""
        t = t.expand(latents.shape[0]) if t.ndim else t.repeat(latents.shape[0])
        return self.unet_output(unet, latents, t, cond, **kwargs)

    def predict_eps(self, unet: torch.nn.Module, latents: torch.Tensor, t: torch.Tensor,
                    cond: Conditioning, **kwargs: Any) -> torch.Tensor:
        t = t.expand(latents.shape[0]) if t.ndim else t.repeat(latents.shape[0])
        return self.output_to_eps(self.unet_output(unet, latents, t, cond, **kwargs), latents, t)

    def _alphas_cumprod(self, device: torch.device) -> torch.Tensor:
        cached = getattr(self, "_abar_cache", None)
        if cached is None or cached.device != device:
            cached = self.training_scheduler().alphas_cumprod.to(device)
            self._abar_cache = cached
        return cached

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # --- fine-tuned checkpoints -------------------------------------------------------
    # The defaults store LoRA adapters as peft state dicts in safetensors and DreamBooth UNets as
    # diffusers folders; the Stable Diffusion backbones override them with diffusers' LoRA formats.
    def save_lora(self, unet: torch.nn.Module, out_dir, rank: int, targets: list[str],
                  adapter_name: str = ADAPTER_NAME) -> None:
        import json
        from pathlib import Path

        from peft.utils import get_peft_model_state_dict
        from safetensors.torch import save_file

        from finextract.io import atomic_path

        out_dir = Path(out_dir)
        state = {k: v.detach().contiguous().cpu() for k, v in
                 get_peft_model_state_dict(unet, adapter_name=adapter_name).items()}
        with atomic_path(out_dir / "lora.safetensors") as tmp:
            save_file(state, str(tmp))
        with atomic_path(out_dir / "lora_config.json") as tmp:
            tmp.write_text(json.dumps({"rank": rank, "alpha": rank, "targets": list(targets)}, indent=2))

    def load_lora(self, path, adapter_name: str = ADAPTER_NAME, **_options) -> None:
        """Attach a LoRA written by :meth:`save_lora` to ``self.unet`` under ``adapter_name``."""
        import json
        from pathlib import Path

        from peft import LoraConfig
        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = Path(path)
        weights, config_file = folder / "lora.safetensors", folder / "lora_config.json"
        for required in (weights, config_file):
            if not required.exists():
                raise FileNotFoundError(f"{folder}: LoRA checkpoint lacks {required.name}")
        config = json.loads(config_file.read_text())
        state = load_file(str(weights))
        own = {n for n, _ in self.unet.named_modules()}
        missing = sorted({k.split(".lora_")[0] for k in state if k.split(".lora_")[0] not in own})
        if missing:
            raise ValueError(f"{weights}: LoRA targets layers the base UNet does not have "
                             f"(e.g. {missing[:3]}); was it trained on another base model?")
        self.unet.add_adapter(LoraConfig(r=config["rank"], lora_alpha=config["alpha"],
                                         target_modules=config["targets"]), adapter_name=adapter_name)
        try:
            result = set_peft_model_state_dict(self.unet, state, adapter_name=adapter_name)
        except RuntimeError as error:  # shape mismatch
            raise ValueError(f"{weights}: LoRA weights do not fit the base UNet: {error}") from error
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise ValueError(f"{weights}: keys the base UNet does not have, e.g. {unexpected[:3]}")
        self.unet.eval()

    def load_dreambooth_unet(self, path, **_options) -> torch.nn.Module:
        """Load a fine-tuned UNet folder (or a model folder holding ``unet/``) that matches the base."""
        from pathlib import Path

        folder = Path(path)
        if (folder / "unet").is_dir():
            folder = folder / "unet"
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder}: not a diffusers UNet folder (no config.json)")
        unet_cls = type(self.unet)
        # torch_dtype here rather than .to(dtype) later: diffusers warns on every load otherwise
        unet = unet_cls.from_pretrained(folder, use_safetensors=True,
                                        torch_dtype=next(self.unet.parameters()).dtype)
        check_unet_fits(unet, self, str(folder))
        return unet.to(self.device).eval()


def check_unet_fits(unet: torch.nn.Module, backbone: "Backbone", spec: str) -> None:
    """Same parameter names and shapes as θ's UNet, or a clear error (an SDXL UNet next to SD 1.5...)."""
    base = {k: v.shape for k, v in _base_state(backbone.unet).items()}
    other = {k: v.shape for k, v in unet.state_dict().items()}
    missing = sorted(set(base) - set(other))
    extra = sorted(set(other) - set(base))
    shapes = sorted(k for k in set(base) & set(other) if base[k] != other[k])
    if missing or extra or shapes:
        example = (f"{shapes[0]}: {tuple(other[shapes[0]])} vs base {tuple(base[shapes[0]])}" if shapes else
                   (missing or extra)[0])
        raise ValueError(f"fine-tuned UNet {spec} does not match the base model {getattr(backbone, 'source', None)!r} "
                         f"({backbone.name}): {len(missing)} base parameters missing, {len(extra)} extra, "
                         f"{len(shapes)} with other shapes (e.g. {example}). Is `pretrained` the model this "
                         "checkpoint was fine-tuned from?")


def _base_state(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """θ's UNet parameters under their plain names, even when LoRA layers wrap them."""
    out = {}
    for key, value in unet.state_dict().items():
        if "lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out
