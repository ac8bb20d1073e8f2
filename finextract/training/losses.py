"""The denoising training loss shared by pretraining and fine-tuning."""
from __future__ import annotations

import torch
from diffusers.training_utils import compute_snr

from finextract.backbones.base import Backbone, Conditioning


def diffusion_loss(backbone: Backbone, unet: torch.nn.Module, latents: torch.Tensor, cond: Conditioning,
                   generator: torch.Generator, min_snr_gamma: float | None = None) -> torch.Tensor:
    """MSE in the backbone's parametrisation (ε or v) at uniformly drawn timesteps.

    ``min_snr_gamma`` turns on min-SNR weighting (Hang et al. 2023), which speeds up pretraining;
    fine-tuning follows the paper's plain, unweighted loss.
    """
    scheduler = backbone.training_scheduler()
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    t = t.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, t)
    kind = backbone.prediction_type
    if kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    elif kind == "epsilon":
        target = noise
    else:
        raise ValueError(f"training for prediction_type {kind!r} is not supported")
    output = backbone.unet_output(unet, noisy, t, cond)
    per_sample = (output.float() - target.float()).pow(2).mean(dim=tuple(range(1, latents.ndim)))
    if min_snr_gamma:
        snr = compute_snr(scheduler, t)
        weight = torch.clamp(snr, max=min_snr_gamma)
        per_sample = per_sample * (weight / (snr + 1) if kind == "v_prediction" else weight / snr)
    return per_sample.mean()
