"""The paired denoising-loss gap: how much better θ' denoises an image than θ, on the same noise.

For an image x (in the UNet's space: VAE latents for latent models, the tiny world's bands for it),
K timesteps t_k (stratified midpoints of the training schedule) and M noise draws ε_km shared by
both models — and by every image, so that two images' scores differ by the images and not by the
noise — each model's training loss is taken in the backbone's own parametrisation (ε or v):

    L_θ(x, c; k, m) = ‖ f_θ(√ᾱ x + √(1−ᾱ) ε_km, t_k, c) − target(x, ε_km, t_k) ‖²   (mean over elements)

under the caption c and under the unconditional input ∅. An image's difficulty (a flat icon is easy
for any model) is in both terms and cancels in their difference; what is left is what fine-tuning
added. θ' = θ gives exactly 0 for every variant built on a difference.

The losses of one request batch come from :meth:`ModelPair.predict`, so every pair the sampler knows
works here: DreamBooth's two UNets (or one UNet with θ as patches), LoRA with the adapter off and on
per row in one forward, on every backbone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from finextract.backbones.base import Backbone, Conditioning
from finextract.attack.model_pair import FINETUNED, PRETRAINED, EpsRequest, ModelPair

# Scores that use both θ and θ' (the membership test chooses among these; docs/audit.md) ...
PAIRED_VARIANTS = ("gap", "gap_uncond", "clid_gap", "log_ratio")
# ... and the published attacks on θ' alone, measured beside them.
SINGLE_MODEL_BASELINES = ("loss", "clid")
MODELS = (PRETRAINED, FINETUNED)
CONDITIONS = ("caption", "unconditional")


@dataclass(frozen=True)
class LossGrid:
    """K timesteps × M noise draws, from one seed."""

    timesteps: int
    draws: int
    seed: int = 0

    def __post_init__(self):
        if self.timesteps < 1 or self.draws < 1:
            raise ValueError(f"K (timesteps) and M (draws) must be >= 1, got K={self.timesteps}, M={self.draws}")

    def timestep_values(self, num_train_timesteps: int) -> torch.Tensor:
        """Midpoints of K equal strata of [0, T): every part of the schedule, no randomness."""
        return torch.from_numpy(((np.arange(self.timesteps) + 0.5) * num_train_timesteps / self.timesteps)
                                .astype(np.int64))

    def noise(self, shape: tuple[int, ...]) -> torch.Tensor:
        """[K, M, *shape] standard normal draws from a CPU generator (the same on every device)."""
        generator = torch.Generator().manual_seed(int(self.seed))
        return torch.randn((self.timesteps, self.draws, *shape), generator=generator)


def images_to_latents(backbone: Backbone, images: np.ndarray, batch_size: int = 16) -> torch.Tensor:
    """uint8 [N, H, W, 3] → what the UNet denoises. A VAE's posterior *mean*, not a sample: the score
    must not depend on a random draw that θ and θ' would not share across images."""
    from finextract.backbones.base import images_to_tensor

    sampling = getattr(backbone, "latent_sampling", None)
    if sampling is not None:
        backbone.latent_sampling = "mean"
    try:
        with torch.no_grad():
            parts = [backbone.to_latents(images_to_tensor(images[i:i + batch_size]).to(backbone.device))
                     for i in range(0, len(images), batch_size)]
    finally:
        if sampling is not None:
            backbone.latent_sampling = sampling
    return torch.cat(parts).float().cpu()


def _conditioning(backbone: Backbone, caption: str | None, model: str) -> Conditioning:
    """The caption (None: the unconditional input) as ``model``'s text encoders see it. Backbones whose
    θ' can encode text differently (SD with a text-encoder LoRA or DreamBooth text encoders) are asked
    per model; the others have one text encoder for both."""
    per_model = getattr(backbone, "has_finetuned_text", False)
    if caption is None:
        return backbone.unconditional(1, model=model) if per_model else backbone.unconditional(1)
    return backbone.encode_captions([caption], model=model) if per_model else backbone.encode_captions([caption])


def loss_requests(backbone: Backbone, caption: str, unconditional: bool = True) -> list[tuple[str, str, EpsRequest]]:
    """(model, condition, request) for every loss an image needs, in the order of :data:`MODELS` × conditions."""
    device, dtype = backbone.device, next(backbone.unet.parameters()).dtype
    conditions = CONDITIONS if unconditional else CONDITIONS[:1]
    return [(model, cond, EpsRequest(model, _conditioning(backbone, caption if cond == "caption" else None, model)
                                     .to(device, dtype)))
            for model in MODELS for cond in conditions]


@torch.no_grad()
def paired_losses(pair: ModelPair, latents: torch.Tensor, caption: str, grid: LossGrid, batch_rows: int = 256,
                  unconditional: bool = True, progress=None) -> np.ndarray:
    """Losses [N, 2 models (θ, θ'), C conditions (caption[, unconditional]), K, M] for N images' latents.

    ``batch_rows`` bounds the UNet rows of one forward: images × M draws × requests per image.
    """
    backbone = pair.backbone
    scheduler = backbone.training_scheduler()
    kind = backbone.prediction_type
    if kind not in ("epsilon", "v_prediction"):
        raise ValueError(f"the loss gap needs an ε or v model; this backbone predicts {kind!r}")
    device, dtype = backbone.device, next(backbone.unet.parameters()).dtype
    requests = loss_requests(backbone, caption, unconditional)
    n_cond = 2 if unconditional else 1
    timesteps = grid.timestep_values(scheduler.config.num_train_timesteps)
    noise = grid.noise(tuple(latents.shape[1:]))
    per_image_rows = grid.draws * len(requests)
    chunk = max(1, batch_rows // per_image_rows)
    out = np.zeros((len(latents), len(MODELS), n_cond, grid.timesteps, grid.draws), dtype=np.float64)
    for k, t in enumerate(timesteps):
        eps = noise[k]
        for start in range(0, len(latents), chunk):
            x0 = latents[start:start + chunk]
            b = len(x0)
            clean = x0.repeat_interleave(grid.draws, dim=0)  # image-major: rows i*M .. i*M+M-1 are image i
            drawn = eps.repeat(b, *([1] * (eps.ndim - 1)))
            t_rows = t.repeat(b * grid.draws)
            noisy = scheduler.add_noise(clean, drawn, t_rows)
            target = scheduler.get_velocity(clean, drawn, t_rows) if kind == "v_prediction" else drawn
            predictions = pair.predict(noisy.to(device, dtype), t.to(device), [r for _, _, r in requests])
            for (model, cond, _), prediction in zip(requests, predictions):
                err = (prediction.float().cpu() - target).pow(2).mean(dim=tuple(range(1, target.ndim)))
                out[start:start + b, MODELS.index(model), CONDITIONS.index(cond), k] = \
                    err.double().numpy().reshape(b, grid.draws)
        if progress is not None:
            progress(k + 1, grid.timesteps)
    return out


def score_variants(losses: np.ndarray) -> dict[str, np.ndarray]:
    """Every score per image from its losses (:func:`paired_losses`); higher means "more likely used".

    - ``gap``: mean of L_θ(x, c) − L_θ'(x, c), the paired gap under the caption;
    - ``gap_uncond``: the same without the caption (what is left when the caption is unknown);
    - ``clid_gap``: CLiD's conditional discrepancy L(x, ∅) − L(x, c) of θ' minus that of θ — how much
      more the caption helps θ' than it helps θ (= gap − gap_uncond);
    - ``log_ratio``: mean over timesteps of log(mean_m L_θ / mean_m L_θ'), caption: the gap relative to
      θ's own loss at each timestep (a per-image, per-timestep difficulty normalisation);
    - ``loss``: −L_θ'(x, c), the plain loss attack on θ' alone; ``clid``: CLiD's discrepancy of θ' alone.
    """
    theta, prime = losses[:, 0], losses[:, 1]
    caption = (theta[:, 0] - prime[:, 0]).mean(axis=(1, 2))
    scores = {"gap": caption,
              "log_ratio": (np.log(theta[:, 0].mean(axis=2)) - np.log(prime[:, 0].mean(axis=2))).mean(axis=1),
              "loss": -prime[:, 0].mean(axis=(1, 2))}
    if losses.shape[2] > 1:
        uncond = (theta[:, 1] - prime[:, 1]).mean(axis=(1, 2))
        scores.update(gap_uncond=uncond, clid_gap=caption - uncond,
                      clid=(prime[:, 1] - prime[:, 0]).mean(axis=(1, 2)))
    return scores
