"""The pretraining corpus: one set of emoji concepts drawn by several vendors.

Vendors stand in for artists: the same concept in the Google, Twitter, Fluent flat and
Fluent modern styles. OpenMoji, Apple, Facebook, JoyPixels/EmojiOne and every Wesnoth
sprite are reserved for private sets and evaluation and never enter this corpus.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finextract.world.corpus import packages as pk
from finextract.world.corpus.render import load_any, to_array

PRETRAINING_STYLES = ("google", "twitter", "fluent flat", "fluent modern")
RESERVED_VENDORS = ("openmoji", "apple", "facebook", "joypixels", "emojione", "wesnoth")
SKIPPED_CATEGORIES = ("Flags", "Component")


@dataclass(frozen=True)
class Concept:
    name: str  # lower-case Unicode name, e.g. "dog face"
    unified: str  # code points, e.g. "1F436"
    category: str
    sort_order: int
    fluent_slug: str


def caption_for(concept_name: str, style: str) -> str:
    return f"{concept_name}, {style} style"


def parse_caption(caption: str) -> tuple[str, str | None]:
    """Split ``"dog face, google style"`` into ``("dog face", "google")``; no style → None."""
    match = re.fullmatch(r"\s*(.*?),\s*([^,]+?)\s+style\s*", caption)
    if match is None:
        return caption.strip(), None
    return match.group(1), match.group(2)


def slugify(name: str) -> str:
    name = name.lower().replace("’", "").replace("'", "")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def _fluent_file(fluent_icons: Path, variant: str, slug: str) -> Path | None:
    for candidate in (f"{slug}.svg", f"{slug}-default.svg"):
        path = fluent_icons / variant / candidate
        if path.exists():
            return path
    return None


def available_concepts(metadata_root: Path, fluent_root: Path) -> list[Concept]:
    """Concepts with an image in every pretraining style, in Unicode sort order."""
    entries = json.loads((metadata_root / "emoji.json").read_text())
    icons = fluent_root / "icons"
    concepts = []
    for entry in entries:
        if entry["category"] in SKIPPED_CATEGORIES:
            continue
        if not (entry.get("has_img_google") and entry.get("has_img_twitter")):
            continue
        name = (entry.get("name") or "").lower()
        if not name or name.startswith(("keycap", "regional")):
            continue
        slugs = [slugify(name)] + [slugify(s) for s in entry.get("short_names", [])]
        slug = next((s for s in slugs
                     if _fluent_file(icons, "flat", s) and _fluent_file(icons, "modern", s)), None)
        if slug is None:
            continue
        concepts.append(Concept(name, entry["unified"], entry["category"],
                                int(entry["sort_order"]), slug))
    return sorted(concepts, key=lambda c: c.sort_order)


def select_concepts(concepts: list[Concept], count: int, exclude: set[str] = frozenset()) -> list[Concept]:
    """Evenly spaced in sort order, so every category keeps its share; deterministic."""
    pool = [c for c in concepts if c.name not in exclude and c.unified not in exclude]
    if count >= len(pool):
        return pool
    picks = np.linspace(0, len(pool) - 1, count).round().astype(int)
    return [pool[i] for i in picks]


def image_path(concept: Concept, style: str, roots: dict[str, Path]) -> Path:
    if style in ("google", "twitter"):
        name = concept.unified.lower() + ".png"
        path = roots[style] / "img" / style / "64" / name
        if not path.exists():
            # some images drop the variation selector from the file name
            path = roots[style] / "img" / style / "64" / name.replace("-fe0f", "")
        return path
    variant = style.split()[-1]
    path = _fluent_file(roots["fluent"] / "icons", variant, concept.fluent_slug)
    if path is None:
        raise FileNotFoundError(f"no Fluent {variant} image for {concept.name}")
    return path


def assert_no_reserved_sources(paths: list[Path], cache: Path) -> None:
    """Fail loudly unless every file comes from one of the pretraining packages."""
    allowed = {p.key for p in pk.PRETRAINING_PACKAGES}
    for path in paths:
        package = Path(path).resolve().relative_to((Path(cache) / "unpacked").resolve()).parts[0]
        if package not in allowed or any(v in package.lower() for v in RESERVED_VENDORS):
            raise ValueError(f"{path}: package {package!r} is not a pretraining source; "
                             f"allowed: {sorted(allowed)}")


def build_emoji_corpus(cache: Path, resolution: int, n_concepts: int,
                       exclude: set[str] = frozenset()) -> tuple[np.ndarray, list[dict]]:
    """Return images [N, res, res, 3] uint8 and one row of metadata per image."""
    roots = {
        "metadata": pk.package_root(pk.EMOJI_METADATA, cache),
        "google": pk.package_root(pk.EMOJI_GOOGLE, cache),
        "twitter": pk.package_root(pk.EMOJI_TWITTER, cache),
        "fluent": pk.package_root(pk.FLUENT_EMOJI, cache),
    }
    concepts = select_concepts(available_concepts(roots["metadata"], roots["fluent"]),
                               n_concepts, exclude)
    images, rows = [], []
    for concept in concepts:
        for style in PRETRAINING_STYLES:
            path = image_path(concept, style, roots)
            assert_no_reserved_sources([path], cache)
            images.append(to_array(load_any(path), resolution))
            rows.append({
                "index": len(rows), "concept": concept.name, "unified": concept.unified,
                "category": concept.category, "style": style,
                "caption": caption_for(concept.name, style),
                "source": str(path.relative_to(cache)),
            })
    return np.stack(images), rows
