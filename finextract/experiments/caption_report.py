"""The caption-extraction figure: per fine-tuned model, Eq. 19's F of each extracted prompt beside the
true caption's (when known), so one look tells whether the search beat the truth and with what."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

from finextract.io import atomic_path


def plot_caption_scores(summary: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(summary.groupby(["set", "ft"], sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.6 * len(groups), 3.8), squeeze=False)
    for ax, ((set_name, ft), rows) in zip(axes[0], groups):
        colours = ["C1" if kind == "true caption" else "C0" for kind in rows["kind"]]
        labels = [textwrap.fill(f"{c} ({'truth' if k == 'true caption' else f'{n} tok'})", 22)
                  for c, k, n in zip(rows["caption"], rows["kind"], rows["n_tokens"])]
        ax.barh(range(len(rows)), rows["F"], color=colours)
        ax.set_yticks(range(len(rows)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("F (Eq. 19)")
        ax.set_title(f"{set_name}\n{ft}", fontsize=9)
    fig.suptitle("Caption extraction: F of the extracted prompts (blue) and of the true caption (orange)", fontsize=9)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
