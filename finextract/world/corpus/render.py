"""Turn package images (PNG with alpha, or SVG) into small RGB images on white."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from finextract.world.corpus.packages import require_tool

RENDER_SIZE = 64  # SVGs are rasterised at the size of the vendor PNGs, then shrunk like them


def composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def render_svg(svg: Path, size: int = RENDER_SIZE) -> Image.Image:
    rsvg = require_tool("rsvg-convert", "install Debian's librsvg2-bin (apt-get install librsvg2-bin)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "render.png"
        subprocess.run([rsvg, "-w", str(size), "-h", str(size), "-a", "-o", str(out), str(svg)],
                       check=True, stderr=subprocess.PIPE)
        image = Image.open(out)
        image.load()
    # keep_aspect_ratio may leave one side short: centre it on a transparent square
    if image.size != (size, size):
        square = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        square.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
        image = square
    return image


def load_any(path: Path) -> Image.Image:
    path = Path(path)
    if path.suffix.lower() == ".svg":
        return render_svg(path)
    image = Image.open(path)
    image.load()
    return image


def to_array(image: Image.Image, resolution: int) -> np.ndarray:
    """Composite on white and shrink to ``resolution``² with a Lanczos filter → uint8 HxWx3."""
    rgb = composite_on_white(image)
    if rgb.size != (resolution, resolution):
        rgb = rgb.resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)
