#!/usr/bin/env python
"""Write the guidance study's results into docs/guidance-study.md, so the page never drifts from a run.

    .venv/bin/python scripts/write_guidance_study.py --results results   # after `snakemake --cores 2 study`

Replaces the text between ``<!-- study:begin -->`` and ``<!-- study:end -->`` with
``<results>/study/summary/study.md`` and copies the study's figures to ``docs/img/``. Everything outside the
markers (the criteria, fixed before the run, and the hand-written reading of the results) is kept.
``--check`` only reports whether the page matches the run.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"
FIGURES = {"as_vs_w.png": "guidance-study-as-vs-w.png", "strength.png": "guidance-study-strength.png"}


def render(results: Path) -> str:
    summary = results / "study" / "summary"
    body = (summary / "study.md").read_text().strip()
    body = re.sub(r"^# .*\n", "", body)  # the page has its own title
    body = re.sub(r"^## ", "### ", body, flags=re.MULTILINE)
    figures = "\n\n".join(f"![{name}](img/{target})" for name, target in FIGURES.items())
    return (f"{BEGIN}\n<!-- written by scripts/write_guidance_study.py from {results.name}/study/summary/; "
            f"do not edit by hand -->\n\n{figures}\n\n{body}\n\n{END}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--page", type=Path, default=REPO / "docs" / "guidance-study.md")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = args.page.read_text()
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n## Results\n\n{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + render(args.results) + text[end:]
    if args.check:
        same = new == args.page.read_text()
        print("the guidance-study page matches the run" if same else "the guidance-study page differs from the run")
        return 0 if same else 1
    args.page.write_text(new)
    for name, target in FIGURES.items():
        shutil.copyfile(args.results / "study" / "summary" / name, REPO / "docs" / "img" / target)
    print(f"{args.page} written from {args.results / 'study' / 'summary'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
