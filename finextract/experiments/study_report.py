"""The guidance study's summary: tidy table, figures, regime map, `w: auto` regret, the default rule."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from finextract.io import atomic_path, save_csv
from finextract.experiments.study import CELL, at_w, auto_w_regret, best_w, default_strength, plain, tidy

PAPER_W = {"dreambooth": 3.0, "lora": 5.0}
PAPER_K = {"dreambooth": -0.02, "lora": -0.02}
CFG_W = {"dreambooth": 3.0, "lora": 3.0}
MARGIN = 0.02  # the paper's: FineXtract ≥ CFG + 0.02 AS


def _mean_spread(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    grouped = frame.groupby(keys)[value]
    return pd.DataFrame({"mean": grouped.mean(), "min": grouped.min(), "max": grouped.max(),
                         "n": grouped.size()}).reset_index()


def method_rows(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per cell, each compared method at its setting: the baselines, FineXtract at the paper's w', oracle, auto."""
    direct = table[table["method"] == "direct"]
    cfg = at_w(table, "cfg", CFG_W)
    paper = at_w(table, "finextract", PAPER_W, PAPER_K)
    oracle = best_w(table, "finextract", PAPER_K)
    regret = auto_w_regret(table, "finextract", PAPER_K)
    auto = plain(table, "finextract", PAPER_K).merge(regret[CELL + ["auto_w"]], on=CELL)
    auto = auto[np.isclose(auto["w"], auto["auto_w"])]
    return {"direct": direct, "cfg w'=3": cfg, "finextract paper w'": paper, "finextract oracle w'": oracle,
            "finextract w: auto": auto}


def regime_map(table: pd.DataFrame, taus: tuple[float, ...] = (0.6,)) -> pd.DataFrame:
    """One row per (set, ft, rung): each method's AS (mean over seeds), who wins, and by how much."""
    rows = method_rows(table)
    keys = ["set", "ft", "steps_per_image"]
    out = None
    for name, frame in rows.items():
        stats = frame.groupby(keys).agg(**{name: ("AS", "mean"), f"{name} spread": ("AS", lambda v: v.max() - v.min())})
        for tau in taus:
            stats[f"{name} A-ESR@{tau:g}"] = frame.groupby(keys)[f"A-ESR@{tau:g}"].mean()
        out = stats if out is None else out.join(stats, how="outer")
    out = out.reset_index()
    fx, cfg, direct = out["finextract paper w'"], out["cfg w'=3"], out["direct"]
    out["fx - cfg"] = fx - cfg
    out["fx - direct"] = fx - direct
    noise = out[["finextract paper w' spread", "cfg w'=3 spread"]].max(axis=1)
    # when FineXtract does not win, the verdict names the better of the two baselines
    leader = np.where(direct >= cfg, "direct ahead", "CFG ahead")
    out["verdict"] = np.where((fx - cfg >= MARGIN) & (fx - cfg > noise) & (fx >= direct), "FineXtract wins",
                              np.where(np.maximum(direct, cfg) - fx > noise, leader, "tie (within seed spread)"))
    best = out[["direct", "cfg w'=3", "finextract paper w'", "finextract oracle w'"]].idxmax(axis=1)
    out["best method"] = best
    return out


def plot_as_vs_w(table: pd.DataFrame, out: Path) -> None:
    """Paper Fig. 5a (DreamBooth) and Fig. 9 (LoRA): AS vs w' per fine-tuning strength, baselines as markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets, fts = sorted(table["set"].unique()), sorted(table["ft"].unique())
    fig, axes = plt.subplots(len(sets), len(fts), figsize=(5 * len(fts), 3.6 * len(sets)), squeeze=False)
    rungs = sorted(table["steps_per_image"].unique())
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(rungs)))
    for i, s in enumerate(sets):
        for j, ft in enumerate(fts):
            ax = axes[i][j]
            cell = table[(table["set"] == s) & (table["ft"] == ft)]
            fx = plain(cell, "finextract", PAPER_K)
            for colour, spi in zip(colours, rungs):
                rung = fx[fx["steps_per_image"] == spi]
                stats = _mean_spread(rung, ["w"], "AS")
                ax.errorbar(stats["w"], stats["mean"], yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                            color=colour, marker="o", capsize=2, label=f"FineXtract, {spi} steps/img")
                d = cell[(cell["method"] == "direct") & (cell["steps_per_image"] == spi)]["AS"].mean()
                c = at_w(cell[cell["steps_per_image"] == spi], "cfg", CFG_W)["AS"].mean()
                ax.scatter([1.0], [d], color=colour, marker="s")
                ax.scatter([CFG_W[ft]], [c], color=colour, marker="x", s=60)
            ax.set_title(f"{s} · {ft}")
            ax.set_xlabel("w'  (■ direct at w'=1, × CFG w'=3)")
            ax.set_ylabel("AS")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_strength(table: pd.DataFrame, out: Path, tau: float = 0.6) -> None:
    """New: AS and A-ESR vs fine-tuning strength, each method at its setting, bars: range over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = method_rows(table)
    sets, fts = sorted(table["set"].unique()), sorted(table["ft"].unique())
    panels = [(s, ft) for s in sets for ft in fts]
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.4), squeeze=False)
    for j, (s, ft) in enumerate(panels):
        for offset, (name, frame) in enumerate(rows.items()):
            frame = frame[(frame["set"] == s) & (frame["ft"] == ft)]
            for i, value in enumerate(["AS", f"A-ESR@{tau:g}"]):
                stats = _mean_spread(frame, ["steps_per_image"], value)
                x = stats["steps_per_image"] * (1 + 0.03 * (offset - 2))
                axes[i][j].errorbar(x, stats["mean"], yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                                    marker="o", capsize=2, label=name)
        for i, value in enumerate(["AS", f"A-ESR@{tau:g}"]):
            axes[i][j].set_xscale("log")
            axes[i][j].set_xlabel("fine-tuning steps per image")
            axes[i][j].set_ylabel(value)
            axes[i][j].grid(alpha=0.3)
        axes[0][j].set_title(f"{s} · {ft}")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, floatfmt=".3f")


def detail_tables(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The detail seeds' extras: AS vs k at each w' sampled with several k (Fig. 5b), AS with guidance
    in an interval vs everywhere at each w' sampled with an interval, and no caption (Fig. 8)."""
    keys = ["set", "ft", "steps_per_image", "w"]
    fx = table[table["method"] == "finextract"]
    full = fx["interval"] == "0-1000"
    varied = fx[~np.isclose(fx["k"], fx["ft"].map(PAPER_K)) | ~full]
    # the detail variants exist only for the detail seeds: compare those seeds only
    fx = fx[fx["seed"].isin(set(varied["seed"]))]
    if varied.empty:
        return {}
    out = {}
    several_k = fx[fx["interval"] == "0-1000"].groupby(["ft", "w"])["k"].transform("nunique") > 1
    k = fx[fx["interval"] == "0-1000"][several_k]
    if not k.empty:
        k = k.pivot_table(index=keys, columns="k", values="AS").reset_index()
        k.columns = [c if isinstance(c, str) else f"AS k={c:g}" for c in k.columns]
        out["k"] = k
    with_interval = set(map(tuple, fx.loc[fx["interval"] != "0-1000", ["ft", "w"]].to_numpy()))
    at_paper_k = fx[np.isclose(fx["k"], fx["ft"].map(PAPER_K))]
    at_paper_k = at_paper_k[[(ft, w) in with_interval for ft, w in zip(at_paper_k["ft"], at_paper_k["w"])]]
    if not at_paper_k.empty:
        interval = at_paper_k.pivot_table(index=keys, columns="interval", values="AS").reset_index()
        interval.columns = [c if c in keys else f"AS t∈[{c}]" for c in interval.columns]
        out["interval"] = interval
    uncond = table[table["method"] == "finextract_uncond"].copy()
    if not uncond.empty:
        uncond["setting"] = np.where(np.isclose(uncond["w"], 1.0), "AS θ' unconditional (w'=1)",
                                     "AS no-caption FineXtract (paper w')")
        out["uncond"] = uncond.pivot_table(index=keys[:-1], columns="setting", values="AS").reset_index()
    return out


def write_study_summary(points: list[str], controls: list[str], study: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = tidy(points)
    missing = {"direct", "cfg", "finextract"} - set(table["method"])
    if missing:
        raise ValueError(f"study.variants: the summary compares direct, CFG and FineXtract; no {sorted(missing)} "
                         "variant was sampled")
    control = pd.concat([pd.read_csv(p) for p in controls], ignore_index=True)
    save_csv(out_dir / "study.csv", table)
    save_csv(out_dir / "control.csv", control)
    regime = regime_map(table)
    save_csv(out_dir / "regime.csv", regime)
    regret = auto_w_regret(table, "finextract", PAPER_K)
    save_csv(out_dir / "auto_w.csv", regret)
    rule = study["default_rule"]
    default = default_strength(table, control, rule["max_direct_esr"], rule["min_gain_over_control"])
    save_csv(out_dir / "default_rule.csv", default)
    details = detail_tables(table)
    for name, frame in details.items():
        save_csv(out_dir / f"detail_{name}.csv", frame)
    plot_as_vs_w(table, out_dir / "as_vs_w.png")
    plot_strength(table, out_dir / "strength.png")
    within = float((regret["regret"] <= MARGIN + 1e-12).mean()) if len(regret) else float("nan")
    show = ["set", "ft", "steps_per_image", "direct", "cfg w'=3", "finextract paper w'", "finextract oracle w'",
            "finextract w: auto", "fx - cfg", "verdict"]
    text = ["# Guidance study summary", "", f"{len(table)} scored variants; control AS per set: "
            + ", ".join(f"{r.set} {r.AS:.3f}" for r in control.itertuples()), "",
            "## Regime map (AS, mean over seeds)", "", _markdown(regime[show]), "",
            "## The default-recipe rule", "", _markdown(default), "",
            f"## `w: auto` regret (within {MARGIN} AS of the oracle on {within:.0%} of {len(regret)} cells)", "",
            _markdown(regret), ""]
    for name, frame in details.items():
        text += [f"## Detail: {name} (seed {', '.join(str(s) for s in study['detail_seeds'])})", "", _markdown(frame), ""]
    with atomic_path(out_dir / "study.md") as tmp:
        tmp.write_text("\n".join(text))
    print("\n".join(text[:8]), flush=True)


def write_default_recipe(points: list[str], controls: list[str], rule: dict, out_dir: Path) -> pd.DataFrame:
    """The default-recipe rule on its own (`snakemake default_recipe`): direct sampling and the control only."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = tidy(points)
    if set(table["method"]) != {"direct"}:
        raise ValueError(f"the default-recipe rule reads direct sampling only; got {sorted(set(table['method']))}")
    control = pd.concat([pd.read_csv(p) for p in controls], ignore_index=True)
    default = default_strength(table, control, rule["max_direct_esr"], rule["min_gain_over_control"])
    save_csv(out_dir / "default_rule.csv", default)
    chosen = default[default["chosen"]]
    verdicts = [f"- {ft}: " + (f"{int(chosen[chosen['ft'] == ft]['steps_per_image'].iloc[0])} steps per image"
                               if ft in set(chosen["ft"]) else "no rung qualifies; the default stays where it is")
                for ft in sorted(default["ft"].unique())]
    seeds = sorted(int(s) for s in table["seed"].unique())
    text = ["# The default-recipe rule", "",
            f"Direct A-ESR@0.6 (mean over sets and fine-tuning seeds {seeds}) <= {rule['max_direct_esr']:g} and "
            f"direct AS - control AS >= {rule['min_gain_over_control']:g} on every set; the strongest qualifying "
            "rung is chosen.", "",
            "Control AS per set: " + ", ".join(f"{r.set} {r.AS:.3f}" for r in control.itertuples()), "",
            _markdown(default), "", *verdicts, ""]
    with atomic_path(out_dir / "default_rule.md") as tmp:
        Path(tmp).write_text("\n".join(text))
    return default
