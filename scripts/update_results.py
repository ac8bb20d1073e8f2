#!/usr/bin/env python
"""Write the runs' measured figures into the docs, so no page drifts from a run.

    .venv/bin/python scripts/update_results.py --results results      # after `snakemake --cores 2` (+ study, audit)

Each generated block sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in a page and is
rewritten from the run's own files when they exist; everything outside the markers (criteria fixed before a
run, the hand-written reading of it) is kept:

- ``table1`` in docs/results.md: ``<results>/summary/table1.md`` (after `snakemake --cores 2`);
- ``regime`` in docs/results.md: ``<results>/study/summary/regime.csv`` (after `snakemake study`);
- ``study`` in docs/guidance-study.md: ``<results>/study/summary/study.md``;
- ``noise`` in docs/results.md: ``<results>/seed-noise/seed_noise.md`` (after ``scripts/seed_runs.py`` and
  ``finextract seed-noise``);
- ``audit`` in docs/results.md and docs/audit.md: ``<results>/audit/summary.csv`` (after `snakemake audit`).

It also copies the run's figures to ``docs/img/`` (the default run's grid is the README's picture).
``--check`` only reports whether the pages match the run.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
AUDIT_COLUMNS = ["audit", "ft", "members", "non_members", "AUC", "TPR@1%FPR", "TPR@p<=0.05", "FPR@p<=0.05",
                 "AUC_direct", "AUC_finextract", "AUC_margin_direct", "AUC_margin_finextract"]
REGIME_COLUMNS = ["set", "ft", "steps_per_image", "direct", "cfg w'=3", "finextract paper w'",
                  "finextract oracle w'", "finextract w: auto", "verdict"]
# run file (relative to --results) -> docs/img name
FIGURES = {"summary/extracted_grid.png": "default-extracted-grid.png",
           "study/summary/as_vs_w.png": "guidance-study-as-vs-w.png",
           "study/summary/strength.png": "guidance-study-strength.png"}


def table1(results: Path) -> tuple[str, str] | None:
    path = results / "summary" / "table1.md"
    if not path.exists():
        return None
    return "summary/table1.md", re.sub(r"^### ", "#### ", path.read_text().strip(), flags=re.MULTILINE)


def noise(results: Path) -> tuple[str, str] | None:
    """Table 1's seed-to-seed noise and which differences exceed it."""
    path = results / "seed-noise" / "seed_noise.md"
    if not path.exists():
        return None
    return "seed-noise/seed_noise.md", path.read_text().strip()


def regime(results: Path) -> tuple[str, str] | None:
    """The guidance study's regime map (AS, mean over fine-tuning seeds)."""
    path = results / "study" / "summary" / "regime.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path)[REGIME_COLUMNS].rename(columns={"steps_per_image": "steps/img"})
    return "study/summary/regime.csv", table.to_markdown(index=False, floatfmt=".3f")


def study(results: Path) -> tuple[str, str] | None:
    """The guidance study's whole generated part, under the page's own title."""
    summary = results / "study" / "summary"
    if not (summary / "study.md").exists():
        return None
    body = re.sub(r"^# .*\n", "", (summary / "study.md").read_text().strip())
    body = re.sub(r"^## ", "### ", body, flags=re.MULTILINE)
    figures = "\n\n".join(f"![{Path(source).name}](img/{target})" for source, target in FIGURES.items()
                          if source.startswith("study/"))
    return "study/summary/", f"{figures}\n\n{body}"


def audit(results: Path) -> tuple[str, str] | None:
    """The audit's figures on candidates with known membership."""
    path = results / "audit" / "summary.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path)
    return "audit/summary.csv", table[[c for c in AUDIT_COLUMNS if c in table]].to_markdown(index=False,
                                                                                          floatfmt=".3f")


@dataclass(frozen=True)
class Block:
    page: Path
    name: str
    render: Callable[[Path], tuple[str, str] | None]  # results -> (source, markdown), None when not run


BLOCKS = [Block(DOCS / "results.md", "table1", table1), Block(DOCS / "results.md", "noise", noise),
          Block(DOCS / "results.md", "regime", regime),
          Block(DOCS / "results.md", "audit", audit), Block(DOCS / "audit.md", "audit", audit),
          Block(DOCS / "guidance-study.md", "study", study)]


def rewrite(text: str, name: str, source: str, markdown: str, results: Path) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    start, stop = text.index(begin), text.index(end) + len(end)
    block = (f"{begin}\n<!-- written by scripts/update_results.py from {results.name}/{source}; "
             f"do not edit by hand -->\n\n{markdown}\n\n{end}")
    return text[:start] + block + text[stop:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    pages: dict[Path, str] = {}
    for block in BLOCKS:
        text = pages.get(block.page) or block.page.read_text()
        if f"<!-- {block.name}:begin -->" not in text:
            print(f"{block.page}: no <!-- {block.name}:begin --> ... end block", file=sys.stderr)
            return 2
        rendered = block.render(args.results)
        if rendered is not None:
            pages[block.page] = rewrite(text, block.name, *rendered, args.results)
    if not pages:
        print(f"{args.results}: no run to write from (run `snakemake --cores 2` first)", file=sys.stderr)
        return 2
    stale = [str(path.relative_to(REPO)) for path, body in pages.items() if path.read_text() != body]
    if args.check:
        print("pages match the run" if not stale else f"pages differ from the run: {', '.join(stale)}")
        return 1 if stale else 0
    for path, body in pages.items():
        path.write_text(body)
    copies = {args.results / source: DOCS / "img" / target for source, target in FIGURES.items()}
    copies.update({sheet: DOCS / "img" / f"audit-evidence-{sheet.parent.parent.name}-{sheet.parent.name}.png"
                   for sheet in sorted((args.results / "audit").glob("*/*/evidence.png"))})
    for source, target in copies.items():
        if source.exists():
            shutil.copyfile(source, target)
    print(f"written from {args.results}: {', '.join(str(p.relative_to(REPO)) for p in pages)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
