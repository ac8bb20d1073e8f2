"""How far Table 1 moves between runs that differ only in their seeds, and which differences exceed that.

A *seed run* repeats the default run with another fine-tuning seed and disjoint sampling seeds
(``scripts/seed_runs.py``). The rule for reading Table 1 (docs/results.md, stated before the first seed run):
per (set, fine-tuning method, method) cell, the standard deviation of AS over the runs is pooled over all cells
(root mean variance) into one seed-to-seed SD ``s``. A difference between two cells of one run is a difference of
two single runs, with SD ``s·√2``; averaged over ``n`` runs, ``s·√(2/n)``. A difference **exceeds the noise**
when it is larger than two of those SDs.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

KEYS = ["set", "ft", "method"]
CONTROL = ("none", "direct")  # the control row's (ft, method) in all_metrics.csv
ORDER = ("finextract", "cfg", "direct")  # the methods compared, FineXtract first


def read_runs(folders: list[str | Path]) -> dict[str, pd.DataFrame]:
    """Each run's ``summary/all_metrics.csv``, by folder; every run must score the same cells."""
    runs = {}
    for folder in folders:
        path = Path(folder) / "summary" / "all_metrics.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run the default target into {folder} first")
        runs[str(folder)] = pd.read_csv(path)
    cells = {name: set(map(tuple, table[KEYS].values)) for name, table in runs.items()}
    first = next(iter(cells.values()))
    for name, these in cells.items():
        if these != first:
            raise ValueError(f"{name} scores other cells than {next(iter(cells))}: "
                             f"{sorted(these ^ first)}")
    return runs


def seed_spread(runs: dict[str, pd.DataFrame], score: str = "AS") -> pd.DataFrame:
    """One row per cell: the score of each run, their mean, SD (n − 1) and range."""
    if len(runs) < 2:
        raise ValueError(f"the seed-to-seed spread needs at least two runs, got {len(runs)}")
    wide = None
    for i, table in enumerate(runs.values()):
        column = table[KEYS + [score]].rename(columns={score: f"run{i}"})
        wide = column if wide is None else wide.merge(column, on=KEYS)
    values = wide[[f"run{i}" for i in range(len(runs))]]
    wide["mean"] = values.mean(axis=1)
    wide["sd"] = values.std(axis=1, ddof=1)
    wide["range"] = values.max(axis=1) - values.min(axis=1)
    return wide


def pooled_sd(spread: pd.DataFrame) -> float:
    """Root mean variance over cells: one seed-to-seed SD for a single cell's AS."""
    return float(math.sqrt((spread["sd"] ** 2).mean()))


def noise_margin(sd: float, runs_averaged: int = 1) -> float:
    """Two SDs of a difference between two cells, each a mean over ``runs_averaged`` runs."""
    return 2.0 * sd * math.sqrt(2.0 / runs_averaged)


def method_differences(spread: pd.DataFrame, sd: float, first_run: str = "run0") -> pd.DataFrame:
    """Every pair of methods (the control included) per set and fine-tuning method: the difference in the first
    run (Table 1) and in the mean over runs, each flagged when it exceeds its noise margin."""
    n_runs = sum(c.startswith("run") for c in spread.columns)
    control = spread[(spread["ft"] == CONTROL[0]) & (spread["method"] == CONTROL[1])].set_index("set")
    rows = []
    for (set_name, ft), cell in spread[spread["ft"] != CONTROL[0]].groupby(["set", "ft"], sort=False):
        values = {m: cell.set_index("method").loc[m] for m in ORDER if m in set(cell["method"])}
        if set_name in control.index:
            values["control"] = control.loc[set_name]
        names = list(values)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                single = float(values[a][first_run] - values[b][first_run])
                mean = float(values[a]["mean"] - values[b]["mean"])
                rows.append({"set": set_name, "ft": ft, "comparison": f"{a} - {b}",
                             "difference (one run)": single, "exceeds (one run)": abs(single) > noise_margin(sd),
                             f"difference (mean of {n_runs})": mean,
                             f"exceeds (mean of {n_runs})": abs(mean) > noise_margin(sd, n_runs)})
    return pd.DataFrame(rows)


def write_seed_noise(folders: list[str | Path], out_dir: Path) -> dict:
    """``spread.csv``, ``differences.csv``, ``seed_noise.json`` and ``seed_noise.md`` for the given runs (the first
    is the run Table 1 shows)."""
    from finextract.io import save_csv, save_json, save_text

    runs = read_runs(folders)
    spread = seed_spread(runs)
    sd = pooled_sd(spread)
    differences = method_differences(spread, sd)
    out_dir = Path(out_dir)
    save_csv(out_dir / "spread.csv", spread)
    save_csv(out_dir / "differences.csv", differences)
    summary = {"runs": list(runs), "cells": len(spread), "pooled_sd": sd, "margin_one_run": noise_margin(sd),
               f"margin_mean_of_{len(runs)}": noise_margin(sd, len(runs)), "largest_range": float(spread["range"].max())}
    save_json(out_dir / "seed_noise.json", summary)
    mean_col = f"difference (mean of {len(runs)})"
    lines = [f"Seed-to-seed SD of a cell's AS, pooled over {len(spread)} cells of {len(runs)} runs: **{sd:.3f}** "
             f"(largest range in one cell {summary['largest_range']:.3f}). A difference between two cells of one run "
             f"exceeds the noise when it is larger than {noise_margin(sd):.3f}; between means of the {len(runs)} runs, "
             f"{noise_margin(sd, len(runs)):.3f}.", "",
             differences.to_markdown(index=False, floatfmt=".3f"), ""]
    exceeding = differences[differences[f"exceeds (mean of {len(runs)})"]]
    lines.append(f"{len(exceeding)} of {len(differences)} differences exceed the noise in the mean over runs"
                 + (": " + "; ".join(f"{row['set']} {row['ft']} {row['comparison']} {row[mean_col]:+.3f}"
                                     for _, row in exceeding.iterrows()) if len(exceeding) else "") + ".")
    save_text(out_dir / "seed_noise.md", "\n".join(lines) + "\n")
    return summary
