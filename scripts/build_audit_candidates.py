#!/usr/bin/env python
"""Rebuild the audit's measurement candidates (resources/audit/) from registry packages.

    .venv/bin/python scripts/build_audit_candidates.py     # seconds; needs npm, apt-get, rsvg-convert

Members are byte copies of the default private sets; non-members are same-style images that were
never in them, and each set's reference folder (resources/audit/<set>-reference/) holds known
non-members for the membership test's p-values (finextract/world/corpus/audit_candidates.py says which and
how they are prepared).
docs/audit.md reports what `snakemake audit` measures on them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from finextract.audit.extraction import candidate_files
from finextract.world.corpus.audit_candidates import (reference_folder, write_openmoji_candidates,
                                                write_wesnoth_candidates)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=REPO / "results/cache")
    parser.add_argument("--out", type=Path, default=REPO / "resources/audit")
    args = parser.parse_args(argv)
    datasets = REPO / "resources/datasets"
    for name, write in (("openmoji-style", write_openmoji_candidates), ("wesnoth-drake", write_wesnoth_candidates)):
        labels = write(datasets / name, args.out / name, args.cache)
        print(f"{args.out / name}: {int(labels['member'].sum())} members, {int((labels['member'] == 0).sum())} "
              f"non-members ({', '.join(f'{k} {v}' for k, v in labels['kind'].value_counts().items())}); "
              f"{reference_folder(args.out / name)}: {len(candidate_files(reference_folder(args.out / name)))} "
              "known non-members")


if __name__ == "__main__":
    main()
