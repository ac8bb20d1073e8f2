"""A synthetic private set for probes and tests: coloured discs on white, distinct and easy to tell apart."""
from __future__ import annotations

import numpy as np


def coloured_discs(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` RGB images (uint8, n × size × size × 3), one disc each, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.full((n, size, size, 3), 255, np.uint8)
    for i in range(n):
        cx, cy = rng.integers(10, size - 10, 2)
        r = rng.integers(6, 10)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        images[i][mask] = rng.integers(0, 200, 3)
    return images
