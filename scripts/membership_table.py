#!/usr/bin/env python
"""docs/audit.md's membership tables from the audit's membership stage outputs, without the extraction part.

    .venv/bin/python scripts/membership_table.py results/audit results/memorising/audit

For each folder: every ``<suspect>/<ft>/membership.csv`` (labelled candidates, reference rows) is answered
with ``--score`` (default: the schema's), measured (finextract.audit.extraction.measure_membership: AUC and TPR at 1 % and
0.1 % FPR with bootstrap intervals, the calibration with and without the reference, every other score), and
printed as the tables of ``summary.md``; then docs/audit.md's variant rule applied to that folder's cells.
``--sign-test`` also prints what the rejected no-reference rule would call: a one-sided sign test of the
K × M per-draw gaps L_θ − L_θ' (caption) of each image, "θ' fits x better than θ" (losses.npy).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from finextract.audit.extraction import measure_membership
from finextract.audit.report import choose_variant, membership_figures, variant_figures
from finextract.audit.membership.run import answer_with
from finextract.workflow.commands.audit import default_membership_score


def folder_table(folder: Path, score: str) -> pd.DataFrame:
    rows = []
    for path in sorted(folder.glob("*/*/membership.csv")):
        scored, calibrated = answer_with(pd.read_csv(path), score)
        candidates = scored[scored["role"] == "candidate"]
        rows.append({"audit": path.parent.parent.name, "ft": path.parent.name,
                     "members": int((candidates["member"] == 1).sum()),
                     "non_members": int((candidates["member"] == 0).sum()), "membership_score": score,
                     "set_p": calibrated.set_test.p, **measure_membership(scored)})
    if not rows:
        raise SystemExit(f"{folder}: no */*/membership.csv")
    return pd.DataFrame(rows)


def sign_test_calls(folder: Path, alpha: float = 0.05) -> pd.DataFrame:
    import numpy as np
    from scipy import stats

    rows = []
    for path in sorted(folder.glob("*/*/membership.csv")):
        table = pd.read_csv(path)
        losses = np.load(path.with_name("losses.npy"))
        gaps = (losses[:, 0, 0] - losses[:, 1, 0]).reshape(len(losses), -1)
        p = np.array([stats.binomtest(int((g > 0).sum()), len(g), 0.5, alternative="greater").pvalue for g in gaps])
        candidate = (table["role"] == "candidate").to_numpy()
        member = table["member"].to_numpy()
        rows.append({"audit": path.parent.parent.name, "ft": path.parent.name,
                     "non-members at p<=0.05": (p[candidate & (member == 0)] <= alpha).mean(),
                     "members at p<=0.05": (p[candidate & (member == 1)] <= alpha).mean(),
                     "reference at p<=0.05": (p[~candidate] <= alpha).mean()})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="results/audit folders")
    parser.add_argument("--sign-test", action="store_true", help="also the per-draw sign test's calls")
    parser.add_argument("--score", default=None, help="the answering score (default: audit.membership.score's default)")
    args = parser.parse_args(argv)
    score = args.score or default_membership_score()
    for folder in args.folders:
        table = folder_table(folder, score)
        print(f"### {folder} (answering score: {score})\n")
        print(membership_figures(table).to_markdown(index=False) + "\n")
        print(variant_figures(table).to_markdown(index=False, floatfmt=".3f") + "\n")
        print(f"docs/audit.md's variant rule on these cells: **{choose_variant(table)}**\n")
        if args.sign_test:
            print(sign_test_calls(folder).to_markdown(index=False, floatfmt=".2f") + "\n")


if __name__ == "__main__":
    main()
