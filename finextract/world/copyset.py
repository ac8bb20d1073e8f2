"""A labelled set of *generated* copies and non-copies, made by construction, to validate the similarity.

The instrument (SSCD + calibration + pre-filter) decides every extraction number, so it is chosen
on images like the ones it scores: outputs of fine-tuned tiny-world models. Labels come from how
the images were made, never from a metric:

- θ is fine-tuned (DreamBooth, one caption) on a **single** image X until it reproduces X; its
  samples — direct, CFG and FineXtract — are *copies of X*;
- the same samples against any other source image Y ≠ X are *non-copies* (the hardest ones are
  Y of the same style, e.g. another OpenMoji emoji), and so are samples of the never-fine-tuned θ
  with X's caption against X.

Source images come from registry packages and never from the default private sets: OpenMoji
emoji other than the ten private ones, Wesnoth unit sprites other than the Drake Burner, and
Google emoji of the broad corpus's held-out concepts, which the base never saw in any style.
Sources alternate between a *choosing* split (pick the instrument) and a *reporting* split
(report its figures), so the report is not measured on the images the choice was made on.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from finextract.world.corpus import packages as pk
from finextract.world.corpus.private_sets import OPENMOJI_CAPTION, OPENMOJI_STYLE_CODES, WESNOTH_UNIT_DIR
from finextract.world.corpus.render import load_any, to_array

MANIFEST = "manifest.csv"
SPLITS = ("choose", "report")
# Sampling methods whose outputs count as copies of the model's single training image.
COPY_METHODS = {"direct": (1.0, 0.0), "cfg": (3.0, 0.0), "finextract": (3.0, -0.02)}


@dataclass(frozen=True)
class SourceImage:
    key: str  # e.g. "openmoji-1f34e"
    source: str  # openmoji | wesnoth | google
    caption: str
    origin: str  # path inside its registry package, for attribution


@dataclass(frozen=True)
class CopySetRecipe:
    """Everything that decides the labelled set; written next to it so a rebuild can be compared."""

    n_openmoji: int = 12
    n_wesnoth: int = 8
    n_google: int = 6
    finetune_lr: float = 2e-4
    finetune_steps: int = 300
    sampling_steps: int = 20
    samples: tuple[tuple[str, int], ...] = (("direct", 4), ("cfg", 2), ("finextract", 4))
    control_samples: int = 2
    sibling_frames: int = 2
    seed: int = 0


def _evenly_spaced(items: list, count: int) -> list:
    if count >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def single_emoji_rows(root: Path, reserved: set[str]) -> list[dict]:
    """openmoji.csv rows of single-code-point colour emoji with an SVG, not in ``reserved`` (upper-case
    code points), without flags, components and OpenMoji's own extras; in code-point order."""
    with open(root / "data" / "openmoji.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle)
                if "-" not in r["hexcode"] and r["hexcode"].upper() not in reserved
                and r["group"] not in ("flags", "component", "extras-openmoji", "extras-unicode")
                and (root / "color" / "svg" / f"{r['hexcode']}.svg").exists()]
    return sorted(rows, key=lambda r: int(r["hexcode"], 16))


def openmoji_sources(root: Path, count: int) -> list[tuple[SourceImage, Path]]:
    """Single-code-point colour OpenMoji emoji, never one of the default private set's ten."""
    rows = single_emoji_rows(root, {c.upper() for c in OPENMOJI_STYLE_CODES})
    return [(SourceImage(f"openmoji-{r['hexcode'].lower()}", "openmoji", OPENMOJI_CAPTION,
                         f"color/svg/{r['hexcode']}.svg"), root / "color" / "svg" / f"{r['hexcode']}.svg")
            for r in _evenly_spaced(rows, count)]


def wesnoth_sources(root: Path, count: int) -> list[tuple[SourceImage, Path]]:
    """Base frames of Wesnoth units (``units/<race>/<unit>.png``), never the Drake Burner."""
    units = Path(root) / Path(WESNOTH_UNIT_DIR).parent
    files = sorted(p for p in units.glob("*/*.png")
                   if "-" not in p.stem and not p.stem.startswith("burner") and p.stem.isalpha())
    picks = _evenly_spaced(files, count)
    return [(SourceImage(f"wesnoth-{p.parent.name}-{p.stem}", "wesnoth", f"a {p.parent.name} {p.stem}",
                         str(p.relative_to(root))), p) for p in picks]


def sibling_frames(base_frame: Path, count: int = 2) -> list[Path]:
    """Other animation frames of the unit: the hardest non-copies (same unit, another pose),
    like the frames of the default Wesnoth set scored against each other's copies."""
    frames = sorted(p for p in base_frame.parent.glob(f"{base_frame.stem}-*.png")
                    if p.stem[len(base_frame.stem) + 1:].replace("-", "").isalnum())
    return _evenly_spaced(frames, count)


def google_sources(cache: Path, count: int, heldout_count: int | None = None) -> list[tuple[SourceImage, Path]]:
    """Google emoji of concepts the base never saw, in a style it knows: ``count`` of the broad corpus's
    ``heldout_count`` held-out concepts (``broad.heldout_concepts``, kept out of pretraining in every style)."""
    from finextract.world.corpus.broad import HELDOUT_CONCEPTS, heldout_concepts, permitted_concepts

    found = permitted_concepts(cache, set(OPENMOJI_STYLE_CODES))
    files = {concept.unified: styles for concept, styles in found}
    google_root = pk.package_root(pk.EMOJI_GOOGLE, cache)
    out = []
    for concept in _evenly_spaced(heldout_concepts(found, heldout_count or HELDOUT_CONCEPTS), count):
        path = files[concept.unified]["google"]
        out.append((SourceImage(f"google-{concept.unified.lower()}", "google",
                                f"{concept.name}, google style", str(path.relative_to(google_root))), path))
    return out


def square_crop_sprite(image: Image.Image) -> Image.Image:
    """Crop a sprite to a square around its visible pixels (with a small margin), like the private set."""
    rgba = image.convert("RGBA")
    left, top, right, bottom = rgba.getbbox() or (0, 0, rgba.width, rgba.height)
    side = max(right - left, bottom - top) + 4
    cx, cy = (left + right) // 2, (top + bottom) // 2
    return rgba.crop((cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side))


def load_sources(cache: Path, recipe: CopySetRecipe, resolution: int
                 ) -> list[tuple[SourceImage, np.ndarray, list[np.ndarray]]]:
    """Each source image at the model resolution, with its sibling frames (Wesnoth only)."""
    out = []
    openmoji = pk.package_root(pk.OPENMOJI, cache)
    for info, path in openmoji_sources(openmoji, recipe.n_openmoji):
        out.append((info, to_array(load_any(path), resolution), []))
    wesnoth = pk.package_root(pk.WESNOTH_DATA, cache)
    for info, path in wesnoth_sources(wesnoth, recipe.n_wesnoth):
        siblings = [to_array(square_crop_sprite(Image.open(p)), resolution)
                    for p in sibling_frames(path, recipe.sibling_frames)]
        out.append((info, to_array(square_crop_sprite(Image.open(path)), resolution), siblings))
    for info, path in google_sources(cache, recipe.n_google):
        out.append((info, to_array(load_any(path), resolution), []))
    return out


def split_of(index_in_source: int) -> str:
    """Alternate within each source, so both splits hold every kind of image."""
    return SPLITS[index_in_source % 2]


def build_copy_set(base: str | Path, cache: Path, out: Path, recipe: CopySetRecipe = CopySetRecipe(),
                   threads: int = 2, log=print) -> pd.DataFrame:
    """Fine-tune θ on each source image alone, sample, and write images + ``manifest.csv``.

    Resumable: a source whose images are all on disk is skipped.
    """
    import tempfile

    import torch

    from finextract.training.finetune import FinetuneConfig, finetune
    from finextract.io import save_json, save_png
    from finextract.attack.model_pair import SingleModel, TwoUNetPair
    from finextract.attack.load_models import load_base
    from finextract.attack.sampling import sample_batch

    torch.set_num_threads(threads)
    out = Path(out)
    backbone = load_base(str(base), device="cpu")
    sources = load_sources(Path(cache), recipe, backbone.resolution)
    rows = []
    per_source: dict[str, int] = {}
    for number, (info, image, siblings) in enumerate(sources):
        position = per_source.get(info.source, 0)
        per_source[info.source] = position + 1
        split = split_of(position)
        folder = out / "images" / info.key
        planned = [("source", "source", 0)]
        seed_base = 1000 * (number + 1) + recipe.seed
        for method, count in recipe.samples:
            planned += [("finetuned", method, seed_base + j) for j in range(count)]
        planned += [("base", "direct", seed_base + 500 + j) for j in range(recipe.control_samples)]
        names = [f"{model}_{method}_{seed:06d}.png" if model != "source" else "source.png"
                 for model, method, seed in planned]
        if not all((folder / n).exists() for n in names):
            log(f"[{number + 1}/{len(sources)}] {info.key}: fine-tuning {recipe.finetune_steps} steps "
                f"on the single image, caption {info.caption!r}")
            save_png(folder / "source.png", image)
            cfg = FinetuneConfig(method="dreambooth", lr=recipe.finetune_lr, steps_per_image=recipe.finetune_steps,
                                 batch_size=1, seed=recipe.seed, augment="none")
            with tempfile.TemporaryDirectory() as tmp:
                finetune(backbone, image[None], info.caption, cfg, Path(tmp), progress=False)
                finetuned = backbone.load_dreambooth_unet(tmp)
            pair = TwoUNetPair(backbone, finetuned)
            for method, count in recipe.samples:
                seeds = [seed_base + j for j in range(count)]
                w, k = COPY_METHODS[method]
                for seed, sample in zip(seeds, sample_batch(pair, info.caption, seeds, method,
                                                            recipe.sampling_steps, w, k)):
                    save_png(folder / f"finetuned_{method}_{seed:06d}.png", sample)
            seeds = [seed_base + 500 + j for j in range(recipe.control_samples)]
            for seed, sample in zip(seeds, sample_batch(SingleModel(backbone), info.caption, seeds, "direct",
                                                        recipe.sampling_steps, 1.0, 0.0)):
                save_png(folder / f"base_direct_{seed:06d}.png", sample)
        for j, sibling in enumerate(siblings):
            save_png(folder / f"frame_{j}.png", sibling)
            planned.append(("frame", "source", j))
            names.append(f"frame_{j}.png")
        for (model, method, seed), name in zip(planned, names):
            rows.append({"file": f"images/{info.key}/{name}", "key": info.key, "source": info.source,
                         "split": split, "model": model, "method": method, "seed": seed,
                         "caption": info.caption, "origin": info.origin})
    manifest = pd.DataFrame(rows)
    from finextract.io import save_csv

    save_csv(out / MANIFEST, manifest)
    root = Path(__file__).resolve().parents[2]
    base_path = Path(base).resolve()
    shown = str(base_path.relative_to(root)) if base_path.is_relative_to(root) else str(base)
    save_json(out / "recipe.json", {**asdict(recipe), "base": shown})
    return manifest


def load_copy_set(folder: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The manifest and all its images (uint8 [n, H, W, 3]) in manifest order."""
    folder = Path(folder)
    manifest = pd.read_csv(folder / MANIFEST)
    images = np.stack([np.asarray(Image.open(folder / f).convert("RGB")) for f in manifest["file"]])
    return manifest, images


def labelled_pairs(manifest: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """All (reference image, generated image) pairs with a label: 1 = copy, 0 = non-copy.

    References are the source images and the sibling frames. ``kind`` says which non-copy:
    ``other-frame`` (another pose of the unit the model was trained on), ``other-same-source``
    (a copy of another image of the same style), ``other-source``, or ``base`` (the
    never-fine-tuned θ with the source's caption). With ``split``, both images belong to it.
    """
    rows = manifest.reset_index(drop=True)
    if split is not None:
        rows = rows[rows["split"] == split]
    sources = rows[rows["model"].isin(["source", "frame"])]
    generated = rows[~rows["model"].isin(["source", "frame"])]
    s = sources[["key", "source", "model"]].rename(columns={"key": "a_key", "source": "a_source",
                                                              "model": "a_model"})
    s["a"] = sources.index
    g = generated[["key", "source", "model", "method"]].rename(
        columns={"key": "b_key", "source": "b_source", "model": "b_model", "method": "b_method"})
    g["b"] = generated.index
    pairs = s.merge(g, how="cross")
    same_model = (pairs["a_key"] == pairs["b_key"]) & (pairs["b_model"] == "finetuned")
    copy = same_model & (pairs["a_model"] == "source")
    pairs["label"] = copy.astype(int)
    pairs["kind"] = np.select(
        [copy, same_model, pairs["b_model"] == "base", pairs["a_source"] == pairs["b_source"]],
        ["copy", "other-frame", "base", "other-same-source"], "other-source")
    return pairs[["a", "b", "a_key", "b_key", "a_source", "b_method", "label", "kind"]]
