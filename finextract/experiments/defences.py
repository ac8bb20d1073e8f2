"""The defences experiment (the paper's Table 3): extraction from models fine-tuned with an augmentation,
and what the augmentation costs the fine-tuned model.

Extraction: AS, A-ESR and the pixel ℓ2 success rate of every attack, scored as the workflow scores
(each point is a ``study-point`` row). Quality cost, from the *direct* samples (what the fine-tuned
model is used for):

- ``fidelity``: mean over the samples of their best similarity to any private image — do the samples
  still look like the private set (the paper's fidelity column, with the workflow's instrument);
- ``checkerboard`` and ``sharpness``: the no-reference figures of ``finextract.reporting.image_quality``, since the
  paper's DINO / CLIP-IQA weights are not reachable offline.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from finextract.training.augment import AUGMENTS
from finextract.reporting.image_quality import checkerboard_energy, sharpness
from finextract.io import atomic_path, read_rgb, save_csv

METHOD_ORDER = ["direct", "cfg", "finextract"]


def quality_row(sample_dir: Path, generated: np.ndarray, private: np.ndarray) -> dict[str, float]:
    """The cost figures of one model's direct samples (images in ``sample_dir``, their descriptors)."""
    images = np.stack([read_rgb(p) for p in sorted(Path(sample_dir).glob("seed_*.png"))])
    fidelity = (generated @ private.T).max(axis=1)
    return {"fidelity": float(fidelity.mean()), "checkerboard": float(checkerboard_energy(images).mean()),
            "sharpness": float(sharpness(images).mean())}


def point_labels(path: str) -> dict[str, str]:
    """augment, set, ft and method from ``.../defences/<augment>/points/<set>/<ft>/<method>.csv``."""
    parts = Path(path).parts
    i = parts.index("points")
    return {"augment": parts[i - 1], "set": parts[i + 1], "ft": parts[i + 2], "method": Path(parts[i + 3]).stem}


def write_defences_summary(points: list[str], qualities: list[str], out_dir: Path) -> pd.DataFrame:
    """``defences.csv`` (one row per augment, set, ft, method), ``defences.md`` and ``defences.png``."""
    rows = []
    for path in points:
        row = pd.read_csv(path).iloc[0].to_dict()
        row.update(point_labels(path))
        rows.append(row)
    table = pd.DataFrame(rows)
    quality = pd.concat([pd.read_csv(q) for q in qualities], ignore_index=True)
    table = table.merge(quality, on=["augment", "set", "ft"], how="left")
    keep = ["augment", "set", "ft", "method", "AS"] + [c for c in table if c.startswith("A-ESR@")] + \
        [c for c in ("L2-ESR", "fidelity", "checkerboard", "sharpness") if c in table]
    order = {name: i for i, name in enumerate(AUGMENTS)}
    table = table[keep].sort_values(["set", "ft", "method", "augment"], key=lambda c: c.map(order) if c.name == "augment"
                                    else c).reset_index(drop=True)
    out_dir = Path(out_dir)
    save_csv(out_dir / "defences.csv", table)
    wide = table.pivot_table(index=["set", "ft", "augment"], columns="method", values="AS", sort=False).reset_index()
    wide = wide[["set", "ft", "augment"] + [m for m in METHOD_ORDER if m in wide]]
    wide.columns = [c if c in ("set", "ft", "augment") else f"AS {c}" for c in wide.columns]
    cost = table.drop_duplicates(["set", "ft", "augment"])[["set", "ft", "augment", "fidelity", "checkerboard",
                                                             "sharpness"]]
    wide = wide.merge(cost, on=["set", "ft", "augment"])
    with atomic_path(out_dir / "defences.md") as tmp:
        tmp.write_text("# Defences (AS by attack; quality cost from direct samples)\n\n"
                       + wide.to_markdown(index=False, floatfmt=".3f") + "\n")
    plot_defences(table, out_dir / "defences.png")
    return wide


def plot_defences(table: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(table.groupby(["set", "ft"], sort=True))
    augments = list(dict.fromkeys(table["augment"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.0), squeeze=False, sharey=True)
    for ax, ((set_name, ft), rows) in zip(axes[0], groups):
        methods = [m for m in METHOD_ORDER if m in set(rows["method"])]
        width = 0.8 / len(augments)
        for j, augment in enumerate(augments):
            values = [rows[(rows["method"] == m) & (rows["augment"] == augment)]["AS"].mean() for m in methods]
            ax.bar(np.arange(len(methods)) + j * width, values, width, label=augment)
        ax.set_xticks(np.arange(len(methods)) + width * (len(augments) - 1) / 2, methods, fontsize=8)
        ax.set_title(f"{set_name}\n{ft}", fontsize=9)
    axes[0][0].set_ylabel("AS")
    axes[0][-1].legend(fontsize=7, title="augment", title_fontsize=7)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
