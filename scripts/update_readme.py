#!/usr/bin/env python
"""Write the default run's Table 1 into the README, so the README never drifts from a run.

    .venv/bin/python scripts/update_readme.py --results results      # after `snakemake --cores 2`

Replaces the text between ``<!-- table1:begin -->`` and ``<!-- table1:end -->`` with
``<results>/summary/table1.md`` and the command that made it, and copies the grid to
``docs/img/default-extracted-grid.png``; after `snakemake study`, also the guidance study's regime map
(between ``<!-- regime:begin -->`` and ``<!-- regime:end -->``) and its figure; after `snakemake audit`,
the audit's measured figures (between ``<!-- audit:begin -->`` and ``<!-- audit:end -->``, in the README and
in docs/audit.md) and its evidence sheets. ``--check`` only reports whether the files match.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- table1:begin -->", "<!-- table1:end -->"
REGIME_BEGIN, REGIME_END = "<!-- regime:begin -->", "<!-- regime:end -->"
AUDIT_BEGIN, AUDIT_END = "<!-- audit:begin -->", "<!-- audit:end -->"
AUDIT_COLUMNS = ["audit", "ft", "members", "non_members", "AUC", "TPR@1%FPR", "TPR@p<=0.05", "FPR@p<=0.05",
                 "AUC_direct", "AUC_finextract", "AUC_margin_direct", "AUC_margin_finextract"]
REGIME_COLUMNS = ["set", "ft", "steps_per_image", "direct", "cfg w'=3", "finextract paper w'",
                  "finextract oracle w'", "finextract w: auto", "verdict"]


def render(results: Path) -> str:
    table = (results / "summary" / "table1.md").read_text().strip()
    table = re.sub(r"^### ", "#### ", table, flags=re.MULTILINE)
    return (f"{BEGIN}\n<!-- written by scripts/update_readme.py from {results.name}/summary/table1.md; "
            f"do not edit by hand -->\n\n{table}\n\n{END}")


def render_regime(results: Path) -> str | None:
    """The guidance study's regime map (AS, mean over fine-tuning seeds), when `snakemake study` has run."""
    path = results / "study" / "summary" / "regime.csv"
    if not path.exists():
        return None
    import pandas as pd

    table = pd.read_csv(path)[REGIME_COLUMNS].rename(columns={"steps_per_image": "steps/img"})
    return (f"{REGIME_BEGIN}\n<!-- written by scripts/update_readme.py from {results.name}/study/summary/regime.csv; "
            f"do not edit by hand -->\n\n{table.to_markdown(index=False, floatfmt='.3f')}\n\n{REGIME_END}")


def render_audit(results: Path) -> str | None:
    """The audit's figures on candidates with known membership, when `snakemake audit` has run."""
    path = results / "audit" / "summary.csv"
    if not path.exists():
        return None
    import pandas as pd

    table = pd.read_csv(path)
    table = table[[c for c in AUDIT_COLUMNS if c in table]]
    return (f"{AUDIT_BEGIN}\n<!-- written by scripts/update_readme.py from {results.name}/audit/summary.csv; "
            f"do not edit by hand -->\n\n{table.to_markdown(index=False, floatfmt='.3f')}\n\n{AUDIT_END}")


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + block + text[stop:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.readme}: no {BEGIN} ... {END} block", file=sys.stderr)
        return 2
    new = replace_block(text, BEGIN, END, render(args.results))
    regime = render_regime(args.results)
    if regime is not None and REGIME_BEGIN in new and REGIME_END in new:
        new = replace_block(new, REGIME_BEGIN, REGIME_END, regime)
    audit = render_audit(args.results)
    docs = {}
    if audit is not None:
        if AUDIT_BEGIN in new:
            new = replace_block(new, AUDIT_BEGIN, AUDIT_END, audit)
        page = REPO / "docs" / "audit.md"
        if page.exists() and AUDIT_BEGIN in page.read_text():
            docs[page] = replace_block(page.read_text(), AUDIT_BEGIN, AUDIT_END, audit)
    if args.check:
        same = new == text and all(path.read_text() == body for path, body in docs.items())
        print("README table matches the run" if same else "README table differs from the run")
        return 0 if same else 1
    args.readme.write_text(new)
    for path, body in docs.items():
        path.write_text(body)
    for sheet in sorted((args.results / "audit").glob("*/*/evidence.png")):
        shutil.copyfile(sheet, REPO / "docs" / "img" / f"audit-evidence-{sheet.parent.parent.name}-{sheet.parent.name}.png")
    grid = args.results / "summary" / "extracted_grid.png"
    if grid.exists():
        shutil.copyfile(grid, REPO / "docs" / "img" / "default-extracted-grid.png")
    strength = args.results / "study" / "summary" / "strength.png"
    if strength.exists():
        shutil.copyfile(strength, REPO / "docs" / "img" / "guidance-study-strength.png")
    print(f"README table written from {args.results / 'summary' / 'table1.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
