"""Candidate folders for measuring the audit: each default private set's images (members) plus
images of the same style that were never in it (non-members), prepared exactly like the members.

Layout (what ``audit.<name>.candidates`` reads, plus the labels only a measurement has)::

    <out>/<set>/images/*.png    members (byte copies of the private set) and non-members
    <out>/<set>/labels.csv      file, member (1/0), kind, origin
    <out>/<set>/ATTRIBUTION.md, LICENSE

Non-members: OpenMoji emoji other than the private ten (OpenMoji is kept out of the pretraining
corpus entirely, so the base has never seen any of them); for the Drake Burner, its other animation
frames (the hardest case: same unit, another pose) and the base frames of the other drake units,
cut with the members' own crop box so that no preprocessing difference can tell them apart.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..io import save_csv, save_png, save_text
from . import packages as pk
from .private_sets import STORED_RESOLUTION, WESNOTH_FRAMES, WESNOTH_UNIT_DIR, _openmoji_authors
from .render import load_any, to_array

LABELS = "labels.csv"


def _copy_members(private_set: Path, out: Path) -> list[dict]:
    rows = []
    for path in sorted((private_set / "images").glob("*.png")):
        shutil.copyfile(path, out / "images" / path.name)
        rows.append({"file": path.name, "member": 1, "kind": "member", "origin": f"{private_set.name}/{path.name}"})
    return rows


def write_openmoji_candidates(private_set: Path, out: Path, cache: Path, n_nonmembers: int = 45) -> pd.DataFrame:
    from ..copyset import openmoji_sources

    root = pk.package_root(pk.OPENMOJI, cache)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = _copy_members(private_set, out)
    authors = _openmoji_authors(root)
    lines = ["# Attribution", "", f"Members: the images of {private_set.name} (see its ATTRIBUTION.md).",
             f"Non-members: OpenMoji {pk.OPENMOJI.version} colour SVGs rendered at {STORED_RESOLUTION}×"
             f"{STORED_RESOLUTION} on white, as the members were. OpenMoji – the open-source emoji and icon "
             "project, CC BY-SA 4.0.", "", "| file | emoji | author |", "| --- | --- | --- |"]
    for info, svg in openmoji_sources(root, n_nonmembers):
        code = svg.stem
        name = f"nonmember-{code.lower()}.png"
        save_png(out / "images" / name, to_array(load_any(svg), STORED_RESOLUTION))
        annotation, author = authors.get(code, ("?", "?"))
        rows.append({"file": name, "member": 0, "kind": "other emoji", "origin": info.origin})
        lines.append(f"| {name} | {annotation} | {author} |")
    save_text(out / "ATTRIBUTION.md", "\n".join(lines) + "\n")
    save_text(out / "LICENSE", "CC-BY-SA-4.0 (OpenMoji, https://openmoji.org). See ATTRIBUTION.md.\n")
    return _write_labels(out, rows)


def _members_crop(unit_dir: Path) -> tuple[int, int, int, int]:
    """The square box write_wesnoth_object_set cut the members with (the union of their frames)."""
    boxes = np.array([Image.open(unit_dir / name).convert("RGBA").getbbox() for name in WESNOTH_FRAMES])
    left, top = boxes[:, :2].min(0)
    right, bottom = boxes[:, 2:].max(0)
    side = int(max(right - left, bottom - top)) + 4
    cx, cy = (left + right) // 2, (top + bottom) // 2
    return int(cx - side // 2), int(cy - side // 2), int(cx - side // 2 + side), int(cy - side // 2 + side)


def write_wesnoth_candidates(private_set: Path, out: Path, cache: Path) -> pd.DataFrame:
    root = pk.package_root(pk.WESNOTH_DATA, cache)
    unit_dir = root / WESNOTH_UNIT_DIR
    crop = _members_crop(unit_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = _copy_members(private_set, out)
    other_frames = sorted(p for p in unit_dir.glob("burner*.png") if p.name not in WESNOTH_FRAMES)
    other_units = sorted(p for p in unit_dir.glob("*.png") if "-" not in p.stem and p.stem != "burner")
    for kind, paths in (("other frame", other_frames), ("other unit", other_units)):
        for path in paths:
            name = f"nonmember-{path.name}"
            frame = Image.open(path).convert("RGBA")
            save_png(out / "images" / name, to_array(frame.crop(crop), STORED_RESOLUTION))
            rows.append({"file": name, "member": 0, "kind": kind, "origin": f"{WESNOTH_UNIT_DIR}/{path.name}"})
    save_text(out / "ATTRIBUTION.md",
              f"# Attribution\n\nMembers: the images of {private_set.name} (see its ATTRIBUTION.md). Non-members: "
              f"other frames of the Drake Burner and base frames of the other drake units from Battle for "
              f"Wesnoth (Debian `{pk.WESNOTH_DATA.name}` {pk.WESNOTH_DATA.version}), cut with the members' "
              f"crop box, composited on white, resized to {STORED_RESOLUTION}×{STORED_RESOLUTION}. Copyright "
              "the Battle for Wesnoth project and its artists; GPL-2.0-or-later. Sources: labels.csv.\n")
    save_text(out / "LICENSE", "GPL-2.0-or-later (Battle for Wesnoth, https://www.wesnoth.org).\n")
    return _write_labels(out, rows)


def _write_labels(out: Path, rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows).sort_values("file").reset_index(drop=True)
    save_csv(out / LABELS, table)
    return table
