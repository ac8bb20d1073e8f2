"""Nested OpenMoji-style private sets of growing size for the N0 ablation (the paper's Fig. 4a).

One pool of ``max(sizes)`` OpenMoji emoji, each set being the first N0 of the pool in a fixed
seeded order, so the set of 5 holds the set of 2 and so on: the curve then measures the number of
images, not which images were drawn. Every set is a complete private-set folder (the layout of
``private_sets.py``) so the workflow reads it like any user's set.

The pool is never used anywhere else in the project: not a concept of the narrow pretraining corpus
(in any style), not one of the default private set's ten, not an audit non-member, not a copy-set
source. Files are named ``rNN-<code>.png`` with NN the pool rank, so name order is nesting order.

The pool was drawn against the narrow corpus (128 concepts x 4 styles) of the bases before the broad
one, and is kept so that the committed sets stay as they are. The broad corpus holds every concept the
permitted vendors draw, bar the private sets' and the held-out ones, so 13 of the 20 pool concepts are in
it in other vendors' styles, never in OpenMoji's: Stable Diffusion's situation, which has seen most
subjects in some style (docs/paper-experiments.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from finextract.io import save_png, save_text
from finextract.world.corpus import packages as pk
from finextract.world.corpus.private_sets import OPENMOJI_CAPTION, OPENMOJI_STYLE_CODES, STORED_RESOLUTION, _openmoji_authors
from finextract.world.corpus.render import load_any, to_array

DEFAULT_SIZES = (2, 5, 10, 20)
AUDIT_NONMEMBERS = 45   # finextract/world/corpus/audit_candidates.py
COPYSET_OPENMOJI = 12   # finextract/world/copyset.py CopySetRecipe.n_openmoji
CORPUS_CONCEPTS = 128   # the narrow corpus the pool was drawn against (`snakemake corpus`, docs/tiny-world.md)


def set_name(size: int) -> str:
    return f"n{size:02d}"


def reserved_codes(cache: Path) -> set[str]:
    """Code points (upper case) the N0 pool must avoid."""
    from finextract.world.copyset import openmoji_sources
    from finextract.world.corpus.emoji import available_concepts, select_concepts

    openmoji = pk.package_root(pk.OPENMOJI, cache)
    concepts = available_concepts(pk.package_root(pk.EMOJI_METADATA, cache), pk.package_root(pk.FLUENT_EMOJI, cache))
    in_corpus = select_concepts(concepts, CORPUS_CONCEPTS, set(OPENMOJI_STYLE_CODES))
    reserved = {c.upper() for c in OPENMOJI_STYLE_CODES} | {c.unified.upper() for c in in_corpus}
    for count in (AUDIT_NONMEMBERS, COPYSET_OPENMOJI):
        reserved |= {svg.stem.upper() for _, svg in openmoji_sources(openmoji, count)}
    return reserved


def pool_rows(root: Path, reserved: set[str], size: int, seed: int = 0) -> list[dict]:
    """``size`` single-code-point OpenMoji rows, evenly spaced in code-point order, then shuffled."""
    from finextract.world.copyset import single_emoji_rows

    rows = single_emoji_rows(root, reserved)
    # offset by half a spacing so the picks fall between the audit's and copy set's evenly spaced ones
    spacing = (len(rows) - 1) / size
    picks = [rows[int(round(spacing * (i + 0.5)))] for i in range(size)]
    order = np.random.default_rng(seed).permutation(size)
    return [picks[i] for i in order]


def write_openmoji_n0_sets(out: Path, cache: Path, sizes: tuple[int, ...] = DEFAULT_SIZES) -> list[Path]:
    """Write ``out/nNN/`` for each size; returns the folders."""
    root = pk.package_root(pk.OPENMOJI, cache)
    authors = _openmoji_authors(root)
    rows = pool_rows(root, reserved_codes(cache), max(sizes))
    images = {r["hexcode"]: to_array(load_any(root / "color" / "svg" / f"{r['hexcode']}.svg"), STORED_RESOLUTION)
              for r in rows}
    folders = []
    for size in sorted(sizes):
        folder = Path(out) / set_name(size)
        lines = ["# Attribution", "",
                 f"The first {size} of the N0 ablation's pool (finextract/world/corpus/n0_sets.py): OpenMoji "
                 f"{pk.OPENMOJI.version} (npm `openmoji`) colour SVGs rendered at {STORED_RESOLUTION}×"
                 f"{STORED_RESOLUTION} on white. OpenMoji – the open-source emoji and icon project.",
                 "License: CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). Changes: rasterised "
                 "and resized.", "", "| file | emoji | author |", "| --- | --- | --- |"]
        for rank, row in enumerate(rows[:size], start=1):
            code = row["hexcode"]
            filename = f"r{rank:02d}-{code.lower()}.png"
            save_png(folder / "images" / filename, images[code])
            name, author = authors.get(code, ("?", "?"))
            lines.append(f"| {filename} | {name} | {author} |")
        save_text(folder / "caption.txt", OPENMOJI_CAPTION + "\n")
        save_text(folder / "ATTRIBUTION.md", "\n".join(lines) + "\n")
        save_text(folder / "LICENSE", "CC-BY-SA-4.0: the images in images/ are adapted from OpenMoji "
                  "(https://openmoji.org), licensed under CC BY-SA 4.0. See ATTRIBUTION.md.\n")
        folders.append(folder)
    return folders
