#!/usr/bin/env python
"""Write the default run's Table 1 into the README, so the README never drifts from a run.

    .venv/bin/python scripts/update_readme.py --results results      # after `snakemake --cores 2`

Replaces the text between ``<!-- table1:begin -->`` and ``<!-- table1:end -->`` with
``<results>/summary/table1.md`` and the command that made it, and copies the grid to
``docs/img/default-extracted-grid.png``. ``--check`` only reports whether the README matches.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- table1:begin -->", "<!-- table1:end -->"


def render(results: Path) -> str:
    table = (results / "summary" / "table1.md").read_text().strip()
    table = re.sub(r"^### ", "#### ", table, flags=re.MULTILINE)
    return (f"{BEGIN}\n<!-- written by scripts/update_readme.py from {results.name}/summary/table1.md; "
            f"do not edit by hand -->\n\n{table}\n\n{END}")


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
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + render(args.results) + text[end:]
    if args.check:
        same = new == text
        print("README table matches the run" if same else "README table differs from the run")
        return 0 if same else 1
    args.readme.write_text(new)
    grid = args.results / "summary" / "extracted_grid.png"
    if grid.exists():
        shutil.copyfile(grid, REPO / "docs" / "img" / "default-extracted-grid.png")
    print(f"README table written from {args.results / 'summary' / 'table1.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
