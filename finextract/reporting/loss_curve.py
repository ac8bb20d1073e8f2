"""The pretraining loss curve of a base model's card."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def plot_loss_curve(loss: pd.DataFrame, out: Path) -> None:
    """Per-step loss and its running mean of 200 steps, log scale (``loss.csv`` of `finextract pretrain`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    ax.plot(loss["step"], loss["loss"], alpha=0.25, lw=0.5, label="per step")
    ax.plot(loss["step"], loss["loss"].rolling(200, min_periods=1).mean(), lw=1.5, label="mean of 200")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("min-SNR-weighted v loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
