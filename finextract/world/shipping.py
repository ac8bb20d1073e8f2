"""Which pretraining checkpoint ships as ``resources/base``: the rule fixed with the world criteria.

docs/tiny-world.md, section 2: checkpoints are measured in step order; the first that passes W1-W3 is measured
for W4, and the first that passes all four ships. If none does within the budget, the checkpoint with the
smallest worst FD ratio over the three W1/W2 rows ships (ties: the earlier step, the cheaper model to reach).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

MEASURE_W4 = "passes W1-W3: measure W4"
SHIP = "passes W1-W4: ships"
BEST_WITHIN_BUDGET = "none passes: best within budget"


@dataclass(frozen=True)
class CheckpointFigures:
    """One checkpoint's world-criteria measurement (``summary.json`` of ``finextract world-criteria``)."""
    step: int
    fd_ratios: dict[str, float]
    rows_pass: bool
    cfg_helps: bool

    @property
    def worst_fd_ratio(self) -> float:
        return max(self.fd_ratios.values())

    @property
    def passes_w1_to_w3(self) -> bool:
        return self.rows_pass and self.cfg_helps


@dataclass(frozen=True)
class Choice:
    step: int
    branch: str
    worst_fd_ratio: float


def read_figures(summary_json: Path) -> CheckpointFigures:
    """The figures the rule reads, from one measurement; the step comes from the model folder's ``ckpt-<step>``."""
    summary = json.loads(Path(summary_json).read_text())
    match = re.search(r"ckpt-(\d+)/?$", str(summary["model"]))
    if match is None:
        raise ValueError(f"{summary_json}: model {summary['model']!r} is not a pretraining checkpoint (ckpt-<step>)")
    rows = summary["criteria"]
    if len(rows) != 3 or "W3" not in summary:
        raise ValueError(f"{summary_json}: expected the full measurement (three W1/W2 rows and W3), "
                         f"got {len(rows)} rows{'' if 'W3' in summary else ' and no W3'}")
    return CheckpointFigures(step=int(match.group(1)), fd_ratios={r["name"]: r["fd_ratio"] for r in rows},
                             rows_pass=all(r["passes"] for r in rows), cfg_helps=bool(summary["W3"]["passes"]))


def choose_checkpoint(measured: list[CheckpointFigures], w4: dict[int, bool] | None = None) -> Choice:
    """Apply the shipping rule. ``w4`` holds the W4 verdicts measured so far, by step."""
    if not measured:
        raise ValueError("no checkpoint has been measured")
    w4 = w4 or {}
    for figures in sorted(measured, key=lambda f: f.step):
        if not figures.passes_w1_to_w3:
            continue
        if figures.step not in w4:
            return Choice(figures.step, MEASURE_W4, figures.worst_fd_ratio)
        if w4[figures.step]:
            return Choice(figures.step, SHIP, figures.worst_fd_ratio)
    best = min(measured, key=lambda f: (f.worst_fd_ratio, f.step))
    return Choice(best.step, BEST_WITHIN_BUDGET, best.worst_fd_ratio)


def criteria_row(summary_json: Path) -> dict:
    """One checkpoint's figures as a row of docs/tiny-world.md's tables."""
    summary = json.loads(Path(summary_json).read_text())
    step = read_figures(summary_json).step
    rows = {r["name"]: r for r in summary["criteria"]}
    w1, w2b, w2a = rows["W1 unconditional"], rows["W2 unseen vendor"], rows["W2 held-out concepts"]
    w3 = summary["W3"]
    return {"step": f"{step:,}", "W1 FD / floor": f"{w1['fd_ratio']:.2f}", "W1 pairwise": f"{w1['pairwise']:.3f}",
            "W1 near-copies": f"{100 * w1['copy_share']:.1f} %", "W2(b) FD / floor": f"{w2b['fd_ratio']:.2f}",
            "W2(b) pairwise": f"{w2b['pairwise']:.3f}", "W2(a) FD / floor": f"{w2a['fd_ratio']:.2f}",
            "W2(a) near-copies": f"{100 * w2a['copy_share']:.1f} %",
            "W3 similarity w' = 1 → CFG 3": f"{w3['similarity_w1']:.3f} → {w3['similarity_cfg3']:.3f}"}
