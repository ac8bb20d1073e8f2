"""Training-time augmentations as defences against extraction (the paper's Table 3): each training
image is augmented afresh at every fine-tuning step, so the model sees variations, never the image.

- ``cutout``: one square hole per image (DeVries & Taylor, 2017), half the image side, filled with mid
  grey (0 in [-1, 1]) — kornia's RandomErasing with a fixed scale and ratio, so the hole always lies
  wholly inside the image (DeVries & Taylor let it fall partly outside);
- ``randaugment``: RandAugment (Cubuk et al., 2020), kornia's, two operations at magnitude 10 of 30.

Both are deterministic for a given seed (the step's), whatever ran before.
"""
from __future__ import annotations

from typing import Callable

import torch

AUGMENTS = ("none", "cutout", "randaugment")


def augmenter(name: str) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    """``f(images in [-1, 1] as [B, 3, H, W], seed) -> augmented images``, or None for ``none``."""
    if name == "none":
        return None
    if name not in AUGMENTS:
        raise ValueError(f"unknown augmentation {name!r}; expected one of {', '.join(AUGMENTS)}")
    import kornia.augmentation as K
    from kornia.augmentation.auto import RandAugment

    transform = (K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.5, p=1.0) if name == "cutout"
                 else RandAugment(n=2, m=10))

    def apply(images: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):  # the training's own random state is left alone
            torch.manual_seed(seed)
            out = transform((images.float() + 1.0) / 2.0)  # kornia works on [0, 1]
        return out.clamp(0.0, 1.0).mul(2.0).sub(1.0).to(images.dtype)

    return apply
