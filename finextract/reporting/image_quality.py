"""No-reference figures of generated images, computable offline (no learned quality model).

- ``checkerboard_energy``: the 2×2 texture of the tiny world's pixel-unshuffle UNet — the projection of an
  image (pixels in [0, 1]) onto the three patterns of period two, (−1)^(i+j), (−1)^i, (−1)^j, as mean
  |coefficient| per channel, summed, ×1000. Corpus images sit at the floor; samples above it carry the texture.
- ``sharpness``: the variance of the Laplacian of the grey image (×1000), the usual focus measure: blurred or
  washed-out samples score low.
"""
from __future__ import annotations

import numpy as np


def checkerboard_energy(images: np.ndarray) -> np.ndarray:
    """Per image: summed mean |projection| onto the period-2 patterns, ×1000."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    h, w = x.shape[1:3]
    i, j = np.mgrid[:h, :w]
    total = np.zeros(len(x))
    for pattern in ((-1.0) ** (i + j), (-1.0) ** i, (-1.0) ** j):
        coefficient = np.einsum("nhwc,hw->nc", x, pattern) / (h * w)
        total += np.abs(coefficient).mean(axis=1)
    return 1000 * total


def sharpness(images: np.ndarray) -> np.ndarray:
    """Per image: variance of the 4-neighbour Laplacian of the grey image in [0, 1], ×1000 (interior pixels)."""
    grey = np.asarray(images, dtype=np.float64).mean(axis=3) / 255.0
    laplacian = (grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
                 - 4 * grey[:, 1:-1, 1:-1])
    return 1000 * laplacian.reshape(len(grey), -1).var(axis=1)
