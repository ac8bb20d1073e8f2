"""Write the pretraining corpus to disk: an image array, a captions table and a digest."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from finextract.io import save_csv, save_json, save_npy, save_png
from finextract.world.corpus.broad import CAPTION_TEMPLATES, HELDOUT_CONCEPTS, build_broad_corpus
from finextract.world.corpus.emoji import build_emoji_corpus


def image_grid(images: np.ndarray, columns: int = 16, pad: int = 2) -> np.ndarray:
    """Tile [N, H, W, 3] uint8 images on a white sheet."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    sheet = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    return sheet


def corpus_digest(images: np.ndarray, captions: list[str]) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update("\n".join(captions).encode())
    return digest.hexdigest()


def write_corpus(out_dir: Path, cache: Path, resolution: int, n_concepts: int,
                 exclude_concepts: set[str]) -> str:
    out_dir = Path(out_dir)
    images, rows = build_emoji_corpus(cache, resolution, n_concepts, exclude_concepts)
    table = pd.DataFrame(rows)
    digest = corpus_digest(images, table["caption"].tolist())
    save_npy(out_dir / "images.npy", images)
    save_csv(out_dir / "captions.csv", table)
    save_png(out_dir / "preview.png", image_grid(images[:256]))
    save_json(out_dir / "corpus.json", {
        "digest_sha256": digest, "images": int(len(images)), "resolution": resolution,
        "concepts": int(table["concept"].nunique()), "styles": sorted(table["style"].unique()),
        "excluded_concepts": sorted(exclude_concepts),
    })
    return digest


def write_broad_corpus(out_dir: Path, cache: Path, resolution: int, exclude_concepts: set[str],
                       heldout_count: int = HELDOUT_CONCEPTS) -> str:
    """The broad corpus (``broad.build_broad_corpus``): ``images.npy`` + ``images.csv`` (one row per image),
    ``captions.csv`` (one row per image and caption template, column ``image``), and the held-out concepts'
    real images in ``heldout.npy`` + ``heldout.csv``, which pretraining never reads."""
    out_dir = Path(out_dir)
    corpus = build_broad_corpus(cache, resolution, exclude_concepts, heldout_count)
    table = pd.DataFrame(corpus.rows)
    captions = pd.DataFrame(corpus.captions)
    heldout = pd.DataFrame(corpus.heldout_rows)
    digest = corpus_digest(corpus.images, captions["caption"].tolist())
    save_npy(out_dir / "images.npy", corpus.images)
    save_csv(out_dir / "images.csv", table)
    save_csv(out_dir / "captions.csv", captions)
    save_npy(out_dir / "heldout.npy", corpus.heldout_images)
    save_csv(out_dir / "heldout.csv", heldout)
    spread = np.linspace(0, len(corpus.images) - 1, 256).round().astype(int)
    save_png(out_dir / "preview.png", image_grid(corpus.images[spread]))
    save_json(out_dir / "corpus.json", {
        "kind": "broad", "digest_sha256": digest, "images": int(len(corpus.images)),
        "captions": int(len(captions)), "resolution": resolution,
        "concepts": int(table["unified"].nunique()),
        "images_per_style": {s: int(n) for s, n in table["style"].value_counts().sort_index().items()},
        "templates": dict(CAPTION_TEMPLATES),
        "heldout_concepts": sorted(heldout["concept"].unique().tolist()),
        "heldout_images": int(len(heldout)),
        "excluded_concepts": sorted(exclude_concepts),
    })
    return digest
