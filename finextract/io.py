"""Atomic file output: a killed job never leaves a half-written file behind.

Every writer goes to a temporary file in the destination folder and renames it into
place, which is atomic on POSIX file systems.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_json(path: str | os.PathLike, obj: Any) -> None:
    save_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Save an HxWx3 uint8 array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG")


def save_csv(path: str | os.PathLike, frame) -> None:
    """Save a pandas DataFrame as CSV, atomically."""
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as uint8 [H, W, 3] RGB (generated PNGs, extracted images)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
