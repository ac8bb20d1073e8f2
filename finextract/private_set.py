"""Private sets: a folder of images plus one caption, loaded and checked before heavy work.

Layout (``resources/datasets/<set>/``, or a user's own folder)::

    images/      *.png / *.jpg / *.jpeg / *.webp / *.bmp / *.gif / *.tif  (at least two)
    caption.txt  the fine-tuning caption (or give ``caption:`` in the config)

Other files in ``images/`` are not used and are listed in a note; hidden files are ignored.
Any image mode is converted to 8-bit RGB (16-bit and float grayscale are rescaled, not clipped;
transparency is composited on white); a photo's EXIF orientation is applied first, as image viewers do.
Images that load but are probably not what the user meant (tiny, a long strip, rotated by EXIF, the same
file twice, sizes mixed) get a note.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class PrivateSetError(ValueError):
    """A private set cannot be used; the message names the file or key and what was expected."""


@dataclass
class PrivateSet:
    name: str
    folder: Path
    caption: str
    files: list[Path]
    images: np.ndarray  # uint8 [N0, res, res, 3]
    notes: list[str] = field(default_factory=list)
    routine_resize: str | None = None  # the one note that only says all images were resized alike

    @property
    def n0(self) -> int:
        return len(self.files)


def image_files(folder: Path) -> list[Path]:
    """The images of a set folder, by name. Listed, never globbed: a folder named ``set [1]`` or ``a*b`` is a
    name, not a pattern."""
    folder = Path(folder)
    images_dir = folder / "images"
    if folder.is_file():
        raise PrivateSetError(f"private set folder {folder} is a file; expected a folder holding images/")
    if not folder.is_dir():
        raise PrivateSetError(f"private set folder {folder} does not exist")
    if images_dir.exists() and not images_dir.is_dir():
        raise PrivateSetError(f"{images_dir} is a file; expected a folder holding the private images")
    if not images_dir.is_dir():
        raise PrivateSetError(f"{folder}: expected a sub-folder images/ holding the private images")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PrivateSetError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def unused_files(folder: Path) -> list[str]:
    """Files in images/ that are not loaded (other suffixes), hidden files aside."""
    return sorted(p.name for p in (folder / "images").iterdir()
                  if p.suffix.lower() not in IMAGE_SUFFIXES and not p.name.startswith("."))


def read_caption(folder: Path, caption: str | None = None) -> str:
    if caption is not None and caption.strip():
        return caption.strip()
    caption_file = Path(folder) / "caption.txt"
    if not caption_file.exists():
        raise PrivateSetError(f"{folder}: no caption — write it to {caption_file} or set 'caption' in the config")
    return read_caption_file(caption_file)


def read_caption_file(caption_file: Path) -> str:
    """The caption in a text file (UTF-8), stripped; the caption is its text, whatever characters it starts with."""
    if caption_file.is_dir():
        raise PrivateSetError(f"{caption_file} is a folder; expected a text file holding the caption")
    try:
        text = caption_file.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as error:
        raise PrivateSetError(f"{caption_file}: not UTF-8 text ({error}); save it as UTF-8") from None
    except OSError as error:
        raise PrivateSetError(f"{caption_file}: cannot be read ({error.strerror})") from None
    if not text:
        raise PrivateSetError(f"{caption_file} is empty: expected the caption")
    return text


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grayscale as 8-bit "L": ``convert("L")`` would clip them (to white)."""
    if image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64) / 257.0
    elif image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        values = values / 257.0 if values.max() > 255 else values  # 16-bit data opened as 32-bit
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        values = values * 255.0 if values.max() <= 1.0 else values
    else:
        return image
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def to_square_rgb(image: Image.Image, resolution: int) -> Image.Image:
    """8-bit RGB: rescale high bit depths, composite transparency on white, centre-crop, resize (Lanczos)."""
    image = to_8bit(image)
    if image.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.LANCZOS)
    return image


EXIF_ORIENTATION = 0x0112
TINY_SIDE = 8  # px: below this an image is mostly interpolation at any resolution
STRIP_ASPECT = 4.0  # longer side / shorter side: the centre crop keeps a quarter or less


def load_image(path: Path, resolution: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)  # a phone photo the right way up, as viewers show it
            return np.asarray(to_square_rgb(upright, resolution), dtype=np.uint8)
    except Image.DecompressionBombError as error:
        raise PrivateSetError(_too_large(path, error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise PrivateSetError(f"{path}: not a readable image ({error})") from error


def _too_large(path: Path, error: Exception) -> str:
    return (f"{path}: image too large to open safely ({error}); downscale it (the attack works at the base "
            "model's resolution anyway)")


def load_private_set(name: str, folder: str | Path, resolution: int, caption: str | None = None,
                     min_images: int = 2) -> PrivateSet:
    folder = Path(folder)
    files = image_files(folder)
    if len(files) < min_images:
        raise PrivateSetError(
            f"{folder}: N0 = {len(files)} image(s); the attack clusters generations into N0 groups "
            f"and needs at least {min_images}")
    text = read_caption(folder, caption)
    notes = []
    sizes = {}
    for path in files:
        try:
            with Image.open(path) as image:
                sizes[path] = image.size
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        except Image.DecompressionBombError as error:
            raise PrivateSetError(_too_large(path, error)) from None
        except (UnidentifiedImageError, OSError) as error:
            raise PrivateSetError(f"{path}: not a readable image ({error})") from error
        if orientation in (5, 6, 7, 8):
            sizes[path] = sizes[path][::-1]
        if orientation != 1:
            notes.append(f"{path.name} is rotated by its EXIF orientation ({orientation}) before use, as viewers "
                         "show it")
        notes.extend(f"{path.name} {problem}" for problem in _shape_problems(sizes[path], resolution))
    notes.extend(_duplicates(files))
    distinct = sorted(set(sizes.values()))
    routine = None
    if len(distinct) > 1:
        notes.append(f"{folder}: images of mixed sizes {distinct}; all centre-cropped and resized "
                     f"to {resolution}x{resolution}")
    elif distinct[0] != (resolution, resolution):
        routine = f"{folder}: images resized from {distinct[0][0]}x{distinct[0][1]} to {resolution}x{resolution}"
        notes.append(routine)
    unused = unused_files(folder)
    if unused:
        notes.append(f"{folder / 'images'}: not images of a supported type, not used: {', '.join(unused)} "
                     f"(supported: {', '.join(IMAGE_SUFFIXES)})")
    images = np.stack([load_image(p, resolution) for p in files])
    return PrivateSet(name, folder, text, files, images, notes, routine)


def _shape_problems(size: tuple[int, int], resolution: int) -> list[str]:
    width, height = size
    problems = []
    if min(size) < TINY_SIDE:
        problems.append(f"is {width}x{height} px: scaled up {resolution / min(size):.0f}-fold, it is mostly "
                        "interpolation")
    if max(size) >= STRIP_ASPECT * min(size):
        problems.append(f"is {width}x{height}: the centre crop keeps the middle {min(size)}x{min(size)}, "
                        f"{min(size) / max(size):.0%} of it")
    return problems


def _duplicates(files: list[Path]) -> list[str]:
    """Files with the same bytes: one image counted twice in N0."""
    import hashlib

    groups: dict[str, list[str]] = {}
    for path in files:
        groups.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path.name)
    return [f"identical images: {', '.join(sorted(names))} (one image counted {len(names)} times in N0)"
            for names in groups.values() if len(names) > 1]
