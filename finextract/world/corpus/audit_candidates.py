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

Beyond the first 45 / 41 non-members (kept as they were), each folder gets more, so that a measurement
has at least 100 per folder, and a **reference** folder ``<out>/<set>-reference/`` of known non-members
for the membership test's p-values (docs/audit.md). Both are drawn, by one seeded shuffle, from what
nothing else in the project uses: for OpenMoji, emoji outside the N0 ablation's reserved codes (the
private ten, the first 45, the copy set's, every concept of the narrow pretraining corpus) and outside
its pool; for the drakes, the animation frames of the other drake units, less the copy set's sources.
The shuffle then splits them, so candidates' and reference's extra non-members are exchangeable.

The folders were drawn against the narrow corpus (128 concepts) of the bases before the broad one. The
broad corpus holds every concept the permitted vendors draw, so most OpenMoji non-members' concepts are in
it in other vendors' styles (never in OpenMoji's), while the members' are kept out in every style;
docs/audit.md measures that this does not separate them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from finextract.io import save_csv, save_png, save_text
from finextract.world.corpus import packages as pk
from finextract.world.corpus.private_sets import STORED_RESOLUTION, WESNOTH_FRAMES, WESNOTH_UNIT_DIR, _openmoji_authors
from finextract.world.corpus.render import load_any, to_array

LABELS = "labels.csv"


def _copy_members(private_set: Path, out: Path) -> list[dict]:
    rows = []
    for path in sorted((private_set / "images").glob("*.png")):
        shutil.copyfile(path, out / "images" / path.name)
        rows.append({"file": path.name, "member": 1, "kind": "member", "origin": f"{private_set.name}/{path.name}"})
    return rows


FIRST_OPENMOJI = 45  # the first non-members (finextract/world/corpus/n0_sets.py reserves exactly these)
EXTRA_NONMEMBERS = {"openmoji-style": 55, "wesnoth-drake": 59}  # to 100 non-members per folder
REFERENCE_SIZE = 250  # known non-members per reference folder
SPLIT_SEED = 0


def reference_folder(out: Path) -> Path:
    return out.parent / f"{out.name}-reference"


def _shuffled_split(items: list, first: int, second: int) -> tuple[list, list]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(items))
    if first + second > len(items):
        raise ValueError(f"{first} + {second} images asked for, {len(items)} available")
    picked = [items[i] for i in order[:first + second]]
    return sorted(picked[:first], key=str), sorted(picked[first:], key=str)


def _openmoji_unused(root: Path, cache: Path) -> list[Path]:
    """SVGs of single-code-point emoji that no other part of the project uses (module docstring)."""
    from finextract.world.copyset import single_emoji_rows
    from finextract.world.corpus.n0_sets import DEFAULT_SIZES, pool_rows, reserved_codes

    reserved = reserved_codes(cache)
    reserved |= {r["hexcode"].upper() for r in pool_rows(root, reserved, max(DEFAULT_SIZES))}
    return [root / "color" / "svg" / f"{r['hexcode']}.svg" for r in single_emoji_rows(root, reserved)]


def write_openmoji_candidates(private_set: Path, out: Path, cache: Path, n_nonmembers: int = FIRST_OPENMOJI,
                              extra: int = EXTRA_NONMEMBERS["openmoji-style"],
                              reference: int = REFERENCE_SIZE) -> pd.DataFrame:
    from finextract.world.copyset import openmoji_sources

    root = pk.package_root(pk.OPENMOJI, cache)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = _copy_members(private_set, out)
    authors = _openmoji_authors(root)
    header = ["# Attribution", "", f"Members: the images of {private_set.name} (see its ATTRIBUTION.md).",
              f"Non-members: OpenMoji {pk.OPENMOJI.version} colour SVGs rendered at {STORED_RESOLUTION}×"
              f"{STORED_RESOLUTION} on white, as the members were. OpenMoji – the open-source emoji and icon "
              "project, CC BY-SA 4.0.", "", "| file | emoji | author |", "| --- | --- | --- |"]
    lines = list(header)
    more, known = _shuffled_split(_openmoji_unused(root, cache), extra, reference)
    first = [svg for _, svg in openmoji_sources(root, n_nonmembers)]
    for kind, svgs in (("other emoji", first), ("other emoji (extra)", more)):
        for svg in svgs:
            name = f"nonmember-{svg.stem.lower()}.png"
            save_png(out / "images" / name, to_array(load_any(svg), STORED_RESOLUTION))
            rows.append({"file": name, "member": 0, "kind": kind, "origin": str(svg.relative_to(root))})
            lines.append(_author_line(name, svg.stem, authors))
    save_text(out / "ATTRIBUTION.md", "\n".join(lines) + "\n")
    save_text(out / "LICENSE", "CC-BY-SA-4.0 (OpenMoji, https://openmoji.org). See ATTRIBUTION.md.\n")
    ref = reference_folder(out)
    (ref / "images").mkdir(parents=True, exist_ok=True)
    lines = header[:2] + ["Known non-members of " + private_set.name + " (the membership test's reference).",
                          *header[3:]]
    for svg in known:
        name = f"reference-{svg.stem.lower()}.png"
        save_png(ref / "images" / name, to_array(load_any(svg), STORED_RESOLUTION))
        lines.append(_author_line(name, svg.stem, authors))
    save_text(ref / "ATTRIBUTION.md", "\n".join(lines) + "\n")
    save_text(ref / "LICENSE", "CC-BY-SA-4.0 (OpenMoji, https://openmoji.org). See ATTRIBUTION.md.\n")
    return _write_labels(out, rows)


def _author_line(name: str, code: str, authors: dict) -> str:
    annotation, author = authors.get(code, ("?", "?"))
    return f"| {name} | {annotation} | {author} |"


def _members_crop(unit_dir: Path) -> tuple[int, int, int, int]:
    """The square box write_wesnoth_object_set cut the members with (the union of their frames)."""
    boxes = np.array([Image.open(unit_dir / name).convert("RGBA").getbbox() for name in WESNOTH_FRAMES])
    left, top = boxes[:, :2].min(0)
    right, bottom = boxes[:, 2:].max(0)
    side = int(max(right - left, bottom - top)) + 4
    cx, cy = (left + right) // 2, (top + bottom) // 2
    return int(cx - side // 2), int(cy - side // 2), int(cx - side // 2 + side), int(cy - side // 2 + side)


def _drake_frames_unused(root: Path) -> list[Path]:
    """Animation frames of the drake units other than the Burner, less the copy set's Wesnoth sources."""
    from finextract.world.copyset import CopySetRecipe, sibling_frames, wesnoth_sources

    recipe = CopySetRecipe()
    used = set()
    for _, path in wesnoth_sources(root, recipe.n_wesnoth):
        used |= {path, *sibling_frames(path, recipe.sibling_frames)}
    unit_dir = root / WESNOTH_UNIT_DIR
    return sorted(p for p in unit_dir.glob("*-*.png") if not p.name.startswith("burner") and p not in used)


def _cut_drake(path: Path, crop: tuple[int, int, int, int]) -> np.ndarray:
    return to_array(Image.open(path).convert("RGBA").crop(crop), STORED_RESOLUTION)


def write_wesnoth_candidates(private_set: Path, out: Path, cache: Path,
                             extra: int = EXTRA_NONMEMBERS["wesnoth-drake"],
                             reference: int = REFERENCE_SIZE) -> pd.DataFrame:
    root = pk.package_root(pk.WESNOTH_DATA, cache)
    unit_dir = root / WESNOTH_UNIT_DIR
    crop = _members_crop(unit_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = _copy_members(private_set, out)
    other_frames = sorted(p for p in unit_dir.glob("burner*.png") if p.name not in WESNOTH_FRAMES)
    other_units = sorted(p for p in unit_dir.glob("*.png") if "-" not in p.stem and p.stem != "burner")
    more, known = _shuffled_split(_drake_frames_unused(root), extra, reference)
    for kind, paths in (("other frame", other_frames), ("other unit", other_units),
                        ("other unit's frame", more)):
        for path in paths:
            name = f"nonmember-{path.name}"
            save_png(out / "images" / name, _cut_drake(path, crop))
            rows.append({"file": name, "member": 0, "kind": kind, "origin": f"{WESNOTH_UNIT_DIR}/{path.name}"})
    credit = (f"Battle for Wesnoth (Debian `{pk.WESNOTH_DATA.name}` {pk.WESNOTH_DATA.version}), cut with the "
              f"members' crop box, composited on white, resized to {STORED_RESOLUTION}×{STORED_RESOLUTION}. "
              "Copyright the Battle for Wesnoth project and its artists; GPL-2.0-or-later.")
    save_text(out / "ATTRIBUTION.md",
              f"# Attribution\n\nMembers: the images of {private_set.name} (see its ATTRIBUTION.md). Non-members: "
              f"other frames of the Drake Burner, base frames of the other drake units and frames of their "
              f"animations from {credit} Sources: labels.csv.\n")
    save_text(out / "LICENSE", "GPL-2.0-or-later (Battle for Wesnoth, https://www.wesnoth.org).\n")
    ref = reference_folder(out)
    (ref / "images").mkdir(parents=True, exist_ok=True)
    for path in known:
        save_png(ref / "images" / f"reference-{path.name}", _cut_drake(path, crop))
    save_text(ref / "ATTRIBUTION.md",
              f"# Attribution\n\nKnown non-members of {private_set.name} (the membership test's reference): "
              f"animation frames of the drake units other than the Burner from {credit}\n\n"
              + "\n".join(f"- reference-{p.name}: {WESNOTH_UNIT_DIR}/{p.name}" for p in known) + "\n")
    save_text(ref / "LICENSE", "GPL-2.0-or-later (Battle for Wesnoth, https://www.wesnoth.org).\n")
    return _write_labels(out, rows)


def _write_labels(out: Path, rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows).sort_values("file").reset_index(drop=True)
    save_csv(out / LABELS, table)
    return table
