"""Score image pairs exactly as the workflow would: what a rights holder runs first.

``python -m finextract similarity A.png B.png`` prepares both images the way the workflow prepares
private images (transparency on white, centre-cropped, resized to the base model's resolution),
embeds them with the config's SSCD model, calibration and pre-filter, and prints their similarity
and the pixel ℓ2 distance. It reads the same config keys as the workflow, with the schema's
defaults filled in, so the two cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config" / "config.yaml"


@dataclass(frozen=True)
class Instrument:
    """What the workflow compares images with: SSCD settings, the image size and the ℓ2 threshold."""

    model: str
    calibration: str | None
    resolution: int
    prefilter_sigma: float | None
    image_size: int
    taus: tuple[float, ...]
    l2_delta: float


def _schema(config: dict) -> Path:
    from finextract.workflow.config import is_realworld

    name = "realworld.schema.yaml" if is_realworld(config) else "config.schema.yaml"
    return REPO_ROOT / "workflow" / "schemas" / name


def instrument_from_config(path: str | Path | None = None, base: str | None = None) -> Instrument:
    """Read the workflow config (default ``config/config.yaml``), filling the schema's defaults."""
    from snakemake.utils import validate

    from finextract.workflow.config import is_realworld
    from finextract.workflow.config_file import load_config_file
    from finextract.attack.similarity import resolve_resource
    from finextract.workflow.attack_steps import base_resolution

    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.is_file():
        raise ValueError(f"config file {path} not found")
    config = load_config_file(path)  # a ConfigError (a ValueError) names the file and line of a YAML mistake
    try:
        validate(config, str(_schema(config)))
    except Exception as error:  # snakemake raises WorkflowError with the schema's message
        raise ValueError(f"{path}: {error}") from error
    if base is None:
        base = (config.get("defaults", {}) if is_realworld(config) else config).get("base_model")
    if base is None:
        raise ValueError(f"{path}: no base_model to take the image size from; pass --base")
    base_path = resolve_resource(base)
    sscd = config["sscd"]
    calibration = sscd.get("calibration")
    return Instrument(model=str(sscd["model"]),
                      calibration=str(resolve_resource(calibration)) if calibration else None,
                      resolution=int(sscd["resolution"]), prefilter_sigma=sscd.get("prefilter_sigma"),
                      image_size=base_resolution(str(base_path if base_path.exists() else base)),
                      taus=tuple(config["metrics"]["taus"]), l2_delta=float(config["metrics"]["l2_delta"]))


def compare_pairs(pairs: list[tuple[str, str]], instrument: Instrument) -> pd.DataFrame:
    """One row per pair: a, b, similarity (SSCD cosine), l2 (normalised pixel ℓ2)."""
    from finextract.private_set import load_image
    from finextract.attack.metrics import pixel_l2_pairs
    from finextract.attack.similarity import embed_images

    if not pairs:
        raise ValueError("no image pairs to compare")
    files = list(dict.fromkeys(f for pair in pairs for f in pair))
    for f in files:
        if not Path(f).is_file():
            raise ValueError(f"image {f} not found")
    images = np.stack([load_image(Path(f), instrument.image_size) for f in files])
    descriptors = embed_images(images, model_spec=instrument.model, calibration=instrument.calibration,
                               resolution=instrument.resolution, prefilter_sigma=instrument.prefilter_sigma,
                               progress=False)
    index = {f: i for i, f in enumerate(files)}
    a = [index[x] for x, _ in pairs]
    b = [index[y] for _, y in pairs]
    similarity = np.einsum("ij,ij->i", descriptors[a], descriptors[b])
    return pd.DataFrame({"a": [x for x, _ in pairs], "b": [y for _, y in pairs],
                         "similarity": similarity.astype(float), "l2": pixel_l2_pairs(images[a], images[b])})


def read_pairs_csv(path: str | Path) -> list[tuple[str, str]]:
    table = pd.read_csv(path)
    missing = {"a", "b"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: expected columns a,b; missing {sorted(missing)}")
    base = Path(path).parent
    resolve = (lambda f: str(f if Path(f).is_absolute() or Path(f).exists() else base / f))
    return [(resolve(a), resolve(b)) for a, b in zip(table["a"], table["b"])]


def describe(row: pd.Series, instrument: Instrument) -> str:
    verdicts = ", ".join(f"{'above' if row['similarity'] > tau else 'not above'} τ = {tau:g}"
                         for tau in instrument.taus)
    l2 = "below" if row["l2"] < instrument.l2_delta else "not below"
    return (f"{row['a']}  {row['b']}  similarity {row['similarity']:.3f} ({verdicts});  "
            f"l2 {row['l2']:.3f} ({l2} δ = {instrument.l2_delta:g})")
