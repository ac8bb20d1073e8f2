"""The N0 ablation (the paper's Fig. 4a): extraction against the number of private images.

Nothing is sampled here: each set of the ablation is an ordinary private set of the run, so its
metrics are the workflow's own; this module lines them up by N0 and draws the curve.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from finextract.io import atomic_path, save_csv


def n0_table(metric_files: list[str], n0: dict[str, int]) -> pd.DataFrame:
    """One row per (set, fine-tuning, method) of the ablation's sets, with its N0, sorted by N0."""
    table = pd.concat([pd.read_csv(f) for f in metric_files], ignore_index=True)
    table = table[table["set"].isin(n0)].copy()
    table.insert(1, "n0", table["set"].map(n0).astype(int))
    return table.sort_values(["ft", "method", "n0"]).reset_index(drop=True)


def plot_n0(table: pd.DataFrame, out: Path, taus: tuple[float, ...] = (0.6, 0.7)) -> None:
    """AS, A-ESR and the pixel ℓ2 success rate against N0: one panel row per fine-tuning method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["AS"] + [f"A-ESR@{tau:g}" for tau in taus] + (["L2-ESR"] if "L2-ESR" in table else [])
    fts = sorted(table["ft"].unique())
    fig, axes = plt.subplots(len(fts), len(metrics), figsize=(3.8 * len(metrics), 3.2 * len(fts)), squeeze=False)
    for row, ft in zip(axes, fts):
        for ax, metric in zip(row, metrics):
            for i, (method, rows) in enumerate(table[table["ft"] == ft].groupby("method", sort=True)):
                ax.plot(rows["n0"], rows[metric], "o-", color=f"C{i}", label=method)
            ax.set_xscale("log")
            ax.minorticks_off()
            ax.set_xticks(sorted(table["n0"].unique()), [str(v) for v in sorted(table["n0"].unique())])
            ax.set_xlabel("N0 (private images)")
            ax.set_title(f"{ft}: {metric}")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.suptitle("Extraction vs N0, N = n_per_image · N0 generated images per attack", fontsize=9)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def write_n0_ablation(metric_files: list[str], n0: dict[str, int], taus: tuple[float, ...],
                      out_csv: Path, out_png: Path) -> pd.DataFrame:
    table = n0_table(metric_files, n0)
    save_csv(out_csv, table)
    plot_n0(table, out_png, taus)
    return table
