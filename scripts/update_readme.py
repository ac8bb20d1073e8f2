#!/usr/bin/env python
"""Write the default run's Table 1 into the README, so the README never drifts from a run.

    .venv/bin/python scripts/update_readme.py --results results      # after `snakemake --cores 2`

Replaces the text between ``<!-- table1:begin -->`` and ``<!-- table1:end -->`` with
``<results>/summary/table1.md`` and the command that made it, and copies the grid to
``docs/img/default-extracted-grid.png``; after `snakemake study`, also the guidance study's regime map
(between ``<!-- regime:begin -->`` and ``<!-- regime:end -->``) and its figure. ``--check`` only reports
whether the README matches.
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
    if args.check:
        same = new == text
        print("README table matches the run" if same else "README table differs from the run")
        return 0 if same else 1
    args.readme.write_text(new)
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
