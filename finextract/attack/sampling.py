"""The denoising loop: seeds → images for one sampling method over a model pair.

Every seed owns its initial noise (a CPU generator seeded with the seed), so a seed gives
the same starting point for every method, shard layout and device, and the DDIM loop (η = 0)
adds no further randomness.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from finextract.attack import guidance
from finextract.io import save_png
from finextract.attack.model_pair import FINETUNED, PRETRAINED, EpsRequest, ModelPair


def initial_noise(seeds: Iterable[int], shape: tuple[int, ...]) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


@dataclass(frozen=True)
class Method:
    """A sampling method: the predictions it needs at each step, and how it combines them (guidance.py)."""

    predictions: tuple[tuple[str, str], ...]  # (model, "cond" | "uncond"), in the order ``combine`` takes them
    combine: Callable[[list[torch.Tensor], float, float], torch.Tensor]  # (eps, w, k) -> ε


METHODS: dict[str, Method] = {
    "direct": Method(((FINETUNED, "cond"),), lambda eps, w, k: guidance.direct_eps(eps[0])),
    "cfg": Method(((FINETUNED, "cond"), (FINETUNED, "uncond")), lambda eps, w, k: guidance.cfg_eps(eps[0], eps[1], w)),
    "finextract": Method(((FINETUNED, "cond"), (PRETRAINED, "uncond")),
                         lambda eps, w, k: guidance.model_guided_eps(eps[0], eps[1], w, k)),
    "finextract_uncond": Method(((FINETUNED, "uncond"), (PRETRAINED, "uncond")),
                                lambda eps, w, k: guidance.uncond_model_guided_eps(eps[0], eps[1], w)),
}


def method_of(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown sampling method {name!r}; expected one of {tuple(METHODS)}")
    return METHODS[name]


def method_requests(method: str, cond, uncond) -> list[EpsRequest]:
    """Which predictions a method needs at each step (order matters for :func:`combine`)."""
    captions = {"cond": cond, "uncond": uncond}
    return [EpsRequest(model, captions[caption]) for model, caption in method_of(method).predictions]


def images_per_batch(pair: ModelPair, method: str, rows: int) -> int:
    """How many images fit a UNet forward of ``rows`` batch rows (the memory knob) with this method.

    CFG and one-pass LoRA FineXtract put two rows per image in one forward; direct sampling and
    DreamBooth FineXtract (two UNets, one forward each) one, so they sample twice the images per batch
    at the same activation memory.
    """
    if rows < 1:
        raise ValueError(f"batch rows must be >= 1, got {rows}")
    models = [request.model for request in method_requests(method, None, None)]
    return max(1, rows // pair.rows_per_image(models))


def in_guidance_interval(t: float, interval: tuple[float, float] | None) -> bool:
    """Whether guidance applies at timestep ``t``: inside the closed ``interval`` (None: everywhere).

    Outside it a guided method takes θ''s own prediction (one forward instead of two), as
    Kynkäänniemi et al. (2024) apply CFG only in a limited noise interval.
    """
    return interval is None or interval[0] <= t <= interval[1]


def step_requests(method: str, cond, uncond, guided: bool) -> tuple[str, list[EpsRequest]]:
    """The method and predictions of one denoising step, inside (``guided``) or outside the interval."""
    if guided or method == "direct":
        return method, method_requests(method, cond, uncond)
    return "direct", [EpsRequest(FINETUNED, uncond if method == "finextract_uncond" else cond)]


def combine(method: str, eps: list[torch.Tensor], w: float, k: float) -> torch.Tensor:
    return method_of(method).combine(eps, w, k)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW → uint8 NHWC."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def sample_batch(pair: ModelPair, caption: str | list[str], seeds: list[int], method: str, steps: int,
                 w: float, k: float = 0.0, scheduler_kind: str = "ddim",
                 interval: tuple[float, float] | None = None) -> np.ndarray:
    """Images for ``seeds`` with one caption, or one caption per seed (a list as long as ``seeds``)."""
    if not isinstance(caption, str) and len(caption) != len(seeds):
        raise ValueError(f"{len(caption)} captions for {len(seeds)} seeds: give one caption or one per seed")
    backbone = pair.backbone
    device = backbone.device
    dtype = next(backbone.unet.parameters()).dtype
    scheduler = backbone.sampling_scheduler(scheduler_kind)
    scheduler.set_timesteps(steps)
    latents = initial_noise(seeds, backbone.latent_shape()).to(device, dtype) * scheduler.init_noise_sigma
    cond = backbone.encode_captions([caption] if isinstance(caption, str) else list(caption)).to(device, dtype)
    uncond = backbone.unconditional(1).to(device, dtype)
    # w' = 1 (and k = 0) reduces every guided method to θ''s own prediction: one forward instead of two
    unguided = w == 1.0 and (k == 0.0 or method != "finextract")
    for t in scheduler.timesteps:
        guided = not unguided and in_guidance_interval(float(t), interval)
        step_method, requests = step_requests(method, cond, uncond, guided)
        model_input = scheduler.scale_model_input(latents, t)
        eps = pair.predict(model_input, t.to(device), requests)
        latents = scheduler.step(combine(step_method, eps, w, k), t, latents).prev_sample
    return to_uint8(backbone.to_images(latents).float())


def seed_filename(seed: int) -> str:
    return f"seed_{seed:06d}.png"


def sample_to_folder(pair: ModelPair, caption: str, seeds: list[int], method: str, steps: int,
                     w: float, k: float, out_dir: Path, batch_size: int = 32,
                     progress: bool = True, on_batch: Callable[[int], None] | None = None,
                     scheduler_kind: str = "ddim", interval: tuple[float, float] | None = None) -> list[Path]:
    """Write one PNG per seed into ``out_dir``; seeds whose PNG exists are skipped (resume).

    ``batch_size`` is UNet rows per forward (see :func:`images_per_batch`); ``interval`` the timesteps
    where guidance applies (see :func:`in_guidance_interval`).
    """
    out_dir = Path(out_dir)
    batch_size = images_per_batch(pair, method, batch_size)
    todo = [s for s in seeds if not (out_dir / seed_filename(s)).exists()]
    bar = tqdm(total=len(seeds), initial=len(seeds) - len(todo), desc=f"{method} {out_dir.parent.name}",
               unit="img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        for seed, image in zip(chunk, sample_batch(pair, caption, chunk, method, steps, w, k, scheduler_kind,
                                                        interval)):
            save_png(out_dir / seed_filename(seed), image)
        bar.update(len(chunk))
        if on_batch:
            on_batch(len(chunk))
    bar.close()
    return [out_dir / seed_filename(s) for s in seeds]
