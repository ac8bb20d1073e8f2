"""Wall time per stage of a workflow run, read from Snakemake's own log.

    .venv/bin/python benchmarks/stage_times.py                      # newest log in .snakemake/log/
    .venv/bin/python benchmarks/stage_times.py .snakemake/log/2026-...snakemake.log

Snakemake stamps every job start ("rule X:" / "localrule X:" after a "[date]" line) and end
("Finished jobid: N (Rule: X)"). Per stage this prints the number of jobs, the summed job seconds
(CPU-ish cost, what a scheduler would bill) and the stage's wall time: the union of its jobs'
intervals, so two shards running side by side count once. Stamps have one-second resolution, so
stages made of sub-second jobs read as 0-1 s each.
"""
from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd

STAGES = {
    "finetune": "fine-tuning",
    "sample_shard": "sampling",
    "embed_generated": "SSCD embedding",
    "embed_private": "SSCD embedding",
    "embed_sweep": "SSCD embedding",
    "cluster": "clustering",
    "sweep_point": "clustering + scoring (N sweep)",
    "score": "scoring + report",
    "summary": "scoring + report",
    "extracted_grid": "scoring + report",
    "n_sweep": "scoring + report",
}

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")


def parse_jobs(log: Path) -> pd.DataFrame:
    """One row per finished job: rule, start, end (datetimes)."""
    stamp: datetime | None = None
    pending_rule: str | None = None
    starts: dict[int, tuple[str, datetime]] = {}
    rows = []
    for line in log.read_text(errors="replace").splitlines():
        if m := _STAMP.match(line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := _START.match(line):
            pending_rule = m.group(1)
        elif (m := _JOBID.match(line)) and pending_rule is not None and stamp is not None:
            starts[int(m.group(1))] = (pending_rule, stamp)
            pending_rule = None
        elif (m := _FINISHED.match(line)) and stamp is not None:
            jobid = int(m.group(1))
            if jobid in starts:
                rule, begun = starts.pop(jobid)
                rows.append({"rule": rule, "start": begun, "end": stamp})
    return pd.DataFrame(rows, columns=["rule", "start", "end"])


def union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += (current_end - current_start).total_seconds()
    return total


def stage_table(jobs: pd.DataFrame) -> pd.DataFrame:
    jobs = jobs.assign(stage=jobs["rule"].map(STAGES).fillna(jobs["rule"]),
                       seconds=(jobs["end"] - jobs["start"]).dt.total_seconds())
    run_wall = (jobs["end"].max() - jobs["start"].min()).total_seconds()
    rows = []
    for stage, group in jobs.groupby("stage", sort=False):
        wall = union_seconds(list(zip(group["start"], group["end"])))
        rows.append({"stage": stage, "jobs": len(group), "job_seconds": group["seconds"].sum(),
                     "wall_seconds": wall, "wall_share": wall / run_wall if run_wall else float("nan")})
    table = pd.DataFrame(rows).sort_values("wall_seconds", ascending=False)
    total = {"stage": "whole run (first start to last end)", "jobs": len(jobs),
             "job_seconds": jobs["seconds"].sum(), "wall_seconds": run_wall, "wall_share": 1.0}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", nargs="?", help="a .snakemake/log/*.snakemake.log file (default: the newest)")
    args = parser.parse_args(argv)
    log = Path(args.log) if args.log else max(Path(".snakemake/log").glob("*.snakemake.log"),
                                               key=lambda p: p.stat().st_mtime)
    jobs = parse_jobs(log)
    if jobs.empty:
        sys.exit(f"no finished jobs found in {log}")
    print(f"log: {log}")
    print(stage_table(jobs).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
