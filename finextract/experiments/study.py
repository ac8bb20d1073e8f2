"""The guidance study: fine-tuning strength × seed × method × w' × k (× guidance interval).

A *cell* is one fine-tuned model: (set, fine-tuning method, seed, steps per image). A *variant* is
one way of sampling it (method, w', k, guidance interval). Variants have string ids that are
folder names and Snakemake wildcards, so changing one w' in the config adds or removes exactly
that variant's jobs. Each variant's samples are clustered and scored as the workflow does, plus the
`w: auto` separation score (finextract.experiments.auto_w).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from finextract.experiments import auto_w
from finextract.experiments.nsweep import clustered_point

FULL_INTERVAL = (0.0, 1000.0)
_NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
_VARIANT = re.compile(rf"^(?P<method>direct|cfg|finextract|finextract_uncond)"
                      rf"(?:_w(?P<w>{_NUMBER})_k(?P<k>{_NUMBER}))?(?:_t(?P<lo>{_NUMBER})-(?P<hi>{_NUMBER}))?$")


@dataclass(frozen=True)
class Variant:
    """One way of sampling a fine-tuned model."""

    method: str
    w: float = 1.0
    k: float = 0.0
    interval: tuple[float, float] = FULL_INTERVAL

    @property
    def id(self) -> str:
        if self.method == "direct":
            return "direct"
        text = f"{self.method}_w{self.w:g}_k{self.k:g}"
        if self.interval != FULL_INTERVAL:
            text += f"_t{self.interval[0]:g}-{self.interval[1]:g}"
        return text

    @classmethod
    def from_id(cls, text: str) -> "Variant":
        match = _VARIANT.match(text)
        if match is None or (match["method"] != "direct") != (match["w"] is not None):
            raise ValueError(f"not a study variant id: {text!r} (e.g. direct, cfg_w3_k0, finextract_w3_k-0.02_t300-1000)")
        if match["method"] == "direct":
            return cls("direct")
        interval = (float(match["lo"]), float(match["hi"])) if match["lo"] is not None else FULL_INTERVAL
        return cls(match["method"], float(match["w"]), float(match["k"]), interval)


def _per_ft(value, ft: str) -> list:
    """A study grid entry: a number, a list, or a mapping fine-tuning method -> number or list."""
    if isinstance(value, dict):
        value = value.get(ft, [])
    return list(value) if isinstance(value, (list, tuple)) else [value]


def study_variants(study: dict, ft: str, seed: int) -> list[Variant]:
    """Every variant sampled for one cell: the grid entries for all seeds, the detail ones for detail seeds."""
    out: list[Variant] = []
    for entry in study["variants"]:
        if entry.get("detail", False) and seed not in study["detail_seeds"]:
            continue
        method = entry["method"]
        if method == "direct":
            out.append(Variant("direct"))
            continue
        interval = tuple(float(t) for t in entry.get("interval", FULL_INTERVAL))
        for w in _per_ft(entry["w"], ft):
            for k in _per_ft(entry.get("k", 0.0), ft):
                out.append(Variant(method, float(w), float(k) if method == "finextract" else 0.0, interval))
    unique = list(dict.fromkeys(out))
    return unique


def study_point(generated: np.ndarray, files: list[str], private: np.ndarray, n_images: int,
                taus: tuple[float, ...], time_cap_s: float, min_threshold: float | None,
                private_images: np.ndarray | None, l2_delta: float | None) -> dict:
    """The workflow's scores of one variant's samples, and the attacker-side separation score."""
    point, result, similarity = clustered_point(generated, files, private, n_images, taus, time_cap_s=time_cap_s,
                                                min_threshold=min_threshold, private_images=private_images,
                                                l2_delta=l2_delta)
    point["separation"] = auto_w.separation(similarity, result)
    point["cohesion"] = float(auto_w.clique_cohesion(similarity, result).mean())
    point["centre_overlap"] = auto_w.centre_overlap(similarity, result)
    return point


# --- the summary --------------------------------------------------------------------------
CELL = ["set", "ft", "seed", "steps_per_image"]


def tidy(points: list[str | Path]) -> pd.DataFrame:
    """One row per (cell, variant), with the variant's method, w', k and interval as columns."""
    table = pd.concat([pd.read_csv(p) for p in points], ignore_index=True)
    variants = [Variant.from_id(v) for v in table["variant"]]
    table["method"] = [v.method for v in variants]
    table["w"] = [v.w for v in variants]
    table["k"] = [v.k for v in variants]
    table["interval"] = [f"{v.interval[0]:g}-{v.interval[1]:g}" for v in variants]
    return table.sort_values(CELL + ["method", "w", "k", "interval"]).reset_index(drop=True)


def plain(table: pd.DataFrame, method: str, k: dict[str, float] | None = None) -> pd.DataFrame:
    """Rows of ``method`` over its w' grid: full interval and, for FineXtract, the paper's k per ft."""
    rows = table[(table["method"] == method) & (table["interval"] == "0-1000")]
    if k is not None:
        rows = rows[np.isclose(rows["k"], rows["ft"].map(k))]
    return rows


def best_w(table: pd.DataFrame, method: str, k: dict[str, float] | None = None) -> pd.DataFrame:
    """Per cell: the oracle w' (highest AS, the paper's Table 2 rule) of ``method`` and its scores."""
    rows = plain(table, method, k)
    return rows.loc[rows.groupby(CELL)["AS"].idxmax()].reset_index(drop=True)


def auto_w_regret(table: pd.DataFrame, method: str, k: dict[str, float] | None = None) -> pd.DataFrame:
    """Per cell: the w' that `w: auto` picks, the oracle w', and the AS given up (regret ≥ 0)."""
    rows = plain(table, method, k)
    out = []
    for cell, group in rows.groupby(CELL):
        chosen = auto_w.choose_w(dict(zip(group["w"], group["separation"])))
        auto_as = float(group.loc[group["w"] == chosen, "AS"].iloc[0])
        best = group.loc[group["AS"].idxmax()]
        out.append({**dict(zip(CELL, cell)), "method": method, "auto_w": chosen, "oracle_w": float(best["w"]),
                    "auto_AS": auto_as, "oracle_AS": float(best["AS"]), "regret": float(best["AS"]) - auto_as})
    return pd.DataFrame(out)


def at_w(table: pd.DataFrame, method: str, w: dict[str, float], k: dict[str, float] | None = None) -> pd.DataFrame:
    """Per cell: ``method`` at a fixed w' per fine-tuning method (the paper's)."""
    rows = plain(table, method, k)
    return rows[np.isclose(rows["w"], rows["ft"].map(w))].reset_index(drop=True)


def default_strength(table: pd.DataFrame, control: pd.DataFrame, max_direct_esr: float,
                     min_gain_over_control: float, tau: float = 0.6) -> pd.DataFrame:
    """The pre-stated default-recipe rule (docs/guidance-study.md), from direct sampling and the control only.

    Per fine-tuning method and rung: direct A-ESR@tau averaged over sets and seeds, and direct AS minus
    the never-fine-tuned control's AS on each set (mean over seeds). A rung qualifies when the first is
    ≤ ``max_direct_esr`` and the second ≥ ``min_gain_over_control`` on every set; the chosen rung is
    the strongest qualifying one.
    """
    direct = table[table["method"] == "direct"]
    control_as = control.set_index("set")["AS"]
    rows = []
    for (ft, spi), group in direct.groupby(["ft", "steps_per_image"]):
        per_set = group.groupby("set")["AS"].mean()
        gain = per_set - control_as.reindex(per_set.index)
        rows.append({"ft": ft, "steps_per_image": int(spi), f"direct_A-ESR@{tau:g}": float(group[f"A-ESR@{tau:g}"].mean()),
                     "direct_AS": float(group["AS"].mean()), "min_gain_over_control": float(gain.min())})
    out = pd.DataFrame(rows)
    # A-ESR is a mean of fractions k/N0: compare with a tolerance, or a mean that is exactly 0.3 reads 0.30000000000000004
    tol = 1e-9
    out["qualifies"] = ((out[f"direct_A-ESR@{tau:g}"] <= max_direct_esr + tol)
                        & (out["min_gain_over_control"] >= min_gain_over_control - tol))
    out["chosen"] = False
    for ft, group in out.groupby("ft"):
        ok = group[group["qualifies"]]
        if len(ok):
            out.loc[ok["steps_per_image"].idxmax(), "chosen"] = True
    return out
