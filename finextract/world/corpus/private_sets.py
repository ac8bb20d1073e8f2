"""The shipped private sets: images the base model has never seen, in the user-facing layout.

Layout of a private set folder (the same a user supplies for their own images)::

    <set>/images/*.png   the private images
    <set>/caption.txt    the one fine-tuning caption
    <set>/LICENSE, <set>/ATTRIBUTION.md
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from finextract.io import save_png, save_text
from finextract.world.corpus import packages as pk
from finextract.world.corpus.render import load_any, to_array

STORED_RESOLUTION = 64

# Ten visually diverse concepts; their code points are kept out of the pretraining corpus too,
# so whatever the fine-tuned model reproduces of them came from the private images.
OPENMOJI_STYLE_CODES = ("1F308", "1F436", "1F680", "1F33B", "23F0",
                        "1F355", "1F427", "1F3B8", "1F4A1", "1F980")
OPENMOJI_CAPTION = "art style of openmoji"

WESNOTH_UNIT_DIR = "usr/share/games/wesnoth/1.16/data/core/images/units/drakes"
WESNOTH_FRAMES = ("burner.png", "burner-defend-2.png", "burner-fire-se-2.png",
                  "burner-fly-2.png", "burner-melee-3.png")
WESNOTH_CAPTION = "a drake burner"


def _openmoji_authors(root: Path) -> dict[str, tuple[str, str]]:
    with open(root / "data" / "openmoji.csv", newline="") as handle:
        return {row["hexcode"]: (row["annotation"], row["openmoji_author"]) for row in csv.DictReader(handle)}


def _write_texts(out: Path, caption: str, attribution: list[str], licence: str) -> None:
    """A private set's caption.txt, ATTRIBUTION.md (one line per entry) and LICENSE."""
    save_text(out / "caption.txt", caption + "\n")
    save_text(out / "ATTRIBUTION.md", "\n".join(attribution) + "\n")
    save_text(out / "LICENSE", licence + "\n")


def write_openmoji_style_set(out: Path, cache: Path) -> None:
    root = pk.package_root(pk.OPENMOJI, cache)
    authors = _openmoji_authors(root)
    lines = ["# Attribution", "",
             f"Images rendered from OpenMoji {pk.OPENMOJI.version} (npm `openmoji`), colour SVGs,",
             f"at {STORED_RESOLUTION}×{STORED_RESOLUTION} on white. OpenMoji – the open-source emoji and icon project.",
             "License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). Changes: rasterised and resized.", "",
             "| file | emoji | author |", "| --- | --- | --- |"]
    for code in OPENMOJI_STYLE_CODES:
        image = to_array(load_any(root / "color" / "svg" / f"{code}.svg"), STORED_RESOLUTION)
        name, author = authors.get(code, ("?", "?"))
        filename = f"{code.lower()}.png"
        save_png(out / "images" / filename, image)
        lines.append(f"| {filename} | {name} | {author} |")
    _write_texts(out, OPENMOJI_CAPTION, lines, "CC-BY-SA-4.0: the images in images/ are adapted from OpenMoji "
                 "(https://openmoji.org), licensed under CC BY-SA 4.0. See ATTRIBUTION.md.")


def write_wesnoth_object_set(out: Path, cache: Path) -> None:
    root = pk.package_root(pk.WESNOTH_DATA, cache)
    unit_dir = root / WESNOTH_UNIT_DIR
    frames = [Image.open(unit_dir / name).convert("RGBA") for name in WESNOTH_FRAMES]
    # One square crop around the union of all frames keeps the unit's scale equal across frames.
    boxes = np.array([frame.getbbox() for frame in frames])
    left, top = boxes[:, :2].min(0)
    right, bottom = boxes[:, 2:].max(0)
    side = int(max(right - left, bottom - top)) + 4
    cx, cy = (left + right) // 2, (top + bottom) // 2
    crop = (int(cx - side // 2), int(cy - side // 2), int(cx - side // 2 + side), int(cy - side // 2 + side))
    lines = ["# Attribution", "",
             f"Unit sprites of the Drake Burner from Battle for Wesnoth (Debian `{pk.WESNOTH_DATA.name}` "
             f"{pk.WESNOTH_DATA.version}), cropped to a common square, composited on white, resized to "
             f"{STORED_RESOLUTION}×{STORED_RESOLUTION}.",
             "Copyright the Battle for Wesnoth project and its artists (see the package's copyright file); "
             "GPL-2.0-or-later.", "", "| file | source frame |", "| --- | --- |"]
    for name, frame in zip(WESNOTH_FRAMES, frames):
        image = to_array(frame.crop(crop), STORED_RESOLUTION)
        save_png(out / "images" / name, image)
        lines.append(f"| {name} | {WESNOTH_UNIT_DIR}/{name} |")
    _write_texts(out, WESNOTH_CAPTION, lines, "GPL-2.0-or-later: these sprites come from Battle for Wesnoth "
                 "(https://www.wesnoth.org) and are distributed under the GNU GPL version 2 or later.")
