"""How the sampling methods combine noise predictions. Pure tensor arithmetic, no models.

Notation follows the paper: θ is the pretrained model, θ' the fine-tuned one, c the
fine-tuning caption, w' the guidance scale and k the correction-term scale. The inputs are the
UNets' predictions in their own parametrisation: ε for ε-models (the paper's Stable Diffusion), v for
v-prediction models (SD 2.x 768, the tiny world), as diffusers pipelines apply CFG.
"""
from __future__ import annotations

import torch


def direct_eps(eps_ft_cond: torch.Tensor) -> torch.Tensor:
    """Plain text-to-image on θ': ε_θ'(x, t, c)."""
    return eps_ft_cond


def cfg_eps(eps_ft_cond: torch.Tensor, eps_ft_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance on θ' (paper Eq. 8 applied to θ')."""
    return eps_ft_cond + (w - 1.0) * (eps_ft_cond - eps_ft_uncond)


def model_guided_eps(eps_ft_cond: torch.Tensor, eps_pre_uncond: torch.Tensor, w: float,
                     k: float) -> torch.Tensor:
    """FineXtract with the caption (paper Eq. 13).

    ε = ε_θ'(x,t,c) + (w'−1)(ε_θ'(x,t,c) − ε_θ(x,t)) + k·ε_θ(x,t)
    """
    return eps_ft_cond + (w - 1.0) * (eps_ft_cond - eps_pre_uncond) + k * eps_pre_uncond


def uncond_model_guided_eps(eps_ft_uncond: torch.Tensor, eps_pre_uncond: torch.Tensor,
                            w: float) -> torch.Tensor:
    """FineXtract without a caption (paper Eq. 6): ε_θ' + (w−1)(ε_θ' − ε_θ), both unconditional."""
    return eps_ft_uncond + (w - 1.0) * (eps_ft_uncond - eps_pre_uncond)
