"""The broad pretraining corpus: every permitted emoji concept in every permitted style, captioned as the web would.

The narrow corpus (``emoji.build_emoji_corpus``: 128 concepts × 4 styles, one caption template) taught the base
model 512 images by heart and nothing else. This one takes every concept that a pretraining vendor draws, in
each style that draws it, and gives each image several caption templates — concept and style, concept only,
style only, a longer phrasing — so that the model learns concepts and styles as separable parts of a caption.
Empty captions are added at training time (``PretrainConfig.empty_caption_prob``).

Kept out, always: the reserved vendors (``emoji.RESERVED_VENDORS``, checked per file), the private sets'
concepts in every style, and a fixed set of *held-out* concepts in every style, on which the world criteria
(``finextract.world.criteria``) measure what the model does for captions it never saw.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finextract.world.corpus import packages as pk
from finextract.world.corpus.emoji import (RESERVED_VENDORS, SKIPPED_CATEGORIES, Concept, _fluent_file, assert_no_reserved_sources,
                    slugify)
from finextract.world.corpus.render import load_any, to_array

BROAD_STYLES = ("google", "twitter", "fluent flat", "fluent modern", "fluent high contrast")
FLUENT_VARIANTS = {"fluent flat": "flat", "fluent modern": "modern", "fluent high contrast": "high-contrast"}
CAPTION_TEMPLATES = {
    "concept_style": "{concept}, {style} style",
    "concept": "{concept}",
    "style": "art style of {style}",
    "long": "a drawing of {concept} in the {style} style",
}
HELDOUT_CONCEPTS = 64  # W2 needs >= 20; 64 concepts x 5 styles give ~300 real images to compare with


@dataclass(frozen=True)
class StyledConcept:
    concept: Concept
    styles: tuple[str, ...]  # the styles with an image of it, in BROAD_STYLES order


def caption(template: str, concept: str, style: str) -> str:
    return CAPTION_TEMPLATES[template].format(concept=concept, style=style)


def _vendor_image(unified: str, vendor: str, root: Path) -> Path | None:
    name = unified.lower() + ".png"
    folder = root / "img" / vendor / "64"
    for candidate in (name, name.replace("-fe0f", "")):
        if (folder / candidate).exists():
            return folder / candidate
    return None


def discover_concepts(roots: dict[str, Path]) -> list[tuple[Concept, dict[str, Path]]]:
    """Every concept (flags, components, keycaps and regional letters aside) with its image per style."""
    entries = json.loads((roots["metadata"] / "emoji.json").read_text())
    icons = roots["fluent"] / "icons"
    found = []
    for entry in entries:
        name = (entry.get("name") or "").lower()
        if entry["category"] in SKIPPED_CATEGORIES or not name or name.startswith(("keycap", "regional")):
            continue
        files: dict[str, Path] = {}
        for vendor in ("google", "twitter"):
            path = _vendor_image(entry["unified"], vendor, roots[vendor]) if entry.get(f"has_img_{vendor}") else None
            if path is not None:
                files[vendor] = path
        slugs = [slugify(name)] + [slugify(s) for s in entry.get("short_names", [])]
        slug = ""
        for style, variant in FLUENT_VARIANTS.items():
            path = next((p for p in (_fluent_file(icons, variant, s) for s in slugs) if p is not None), None)
            if path is not None:
                files[style] = path
                slug = slug or path.stem.removesuffix("-default")
        if files:
            concept = Concept(name, entry["unified"], entry["category"], int(entry["sort_order"]), slug)
            found.append((concept, {s: files[s] for s in BROAD_STYLES if s in files}))
    return sorted(found, key=lambda item: item[0].sort_order)


def heldout_concepts(found: list[tuple[Concept, dict[str, Path]]], count: int = HELDOUT_CONCEPTS,
                     exclude: set[str] = frozenset()) -> list[Concept]:
    """``count`` concepts drawn in every style, evenly spaced in Unicode order (so every category gives its
    share); fixed by this rule alone, before any model is trained."""
    pool = [c for c, files in found
            if len(files) == len(BROAD_STYLES) and c.name not in exclude and c.unified not in exclude]
    if not 0 < count < len(pool):
        raise ValueError(f"cannot hold out {count} of the {len(pool)} concepts drawn in every style")
    picks = np.linspace(0, len(pool) - 1, count).round().astype(int)
    return [pool[i] for i in picks]


@dataclass
class BroadCorpus:
    images: np.ndarray        # [N, res, res, 3] uint8: what pretraining sees
    rows: list[dict]          # one per image: concept, unified, category, style, source
    captions: list[dict]      # one per (image, caption template): image, template, caption
    heldout_images: np.ndarray  # the held-out concepts in every style: never trained on
    heldout_rows: list[dict]


def permitted_concepts(cache: Path, exclude: set[str] = frozenset()) -> list[tuple[Concept, dict[str, Path]]]:
    """``discover_concepts`` over the pinned packages in ``cache``, without the ``exclude``d names or code points."""
    roots = {
        "metadata": pk.package_root(pk.EMOJI_METADATA, cache),
        "google": pk.package_root(pk.EMOJI_GOOGLE, cache),
        "twitter": pk.package_root(pk.EMOJI_TWITTER, cache),
        "fluent": pk.package_root(pk.FLUENT_EMOJI, cache),
    }
    return [(c, files) for c, files in discover_concepts(roots) if c.name not in exclude and c.unified not in exclude]


def build_broad_corpus(cache: Path, resolution: int, exclude: set[str] = frozenset(),
                       heldout_count: int = HELDOUT_CONCEPTS) -> BroadCorpus:
    """Render every permitted concept in every style that draws it; the held-out concepts go to a separate
    array, so the world criteria can compare samples with real images of them."""
    found = permitted_concepts(cache, exclude)
    heldout = {c.unified for c in heldout_concepts(found, heldout_count)}
    kept: dict[bool, tuple[list, list]] = {False: ([], []), True: ([], [])}
    for concept, files in found:
        for style, path in files.items():
            assert_no_reserved_sources([path], cache)
            images, rows = kept[concept.unified in heldout]
            rows.append({"index": len(rows), "concept": concept.name, "unified": concept.unified,
                         "category": concept.category, "style": style,
                         "source": str(Path(path).relative_to(cache))})
            images.append(to_array(load_any(path), resolution))
    captions = [{"image": row["index"], "template": template,
                 "caption": caption(template, row["concept"], row["style"])}
                for row in kept[False][1] for template in CAPTION_TEMPLATES]
    return BroadCorpus(np.stack(kept[False][0]), kept[False][1], captions,
                       np.stack(kept[True][0]), kept[True][1])


def assert_reserved_vendors_absent(rows: list[dict]) -> None:
    for row in rows:
        if any(v in row["source"].lower() for v in RESERVED_VENDORS):
            raise ValueError(f"{row['source']}: a reserved vendor's image in the corpus")
