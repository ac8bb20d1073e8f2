"""The scaling probe of docs/tiny-world.md §3: each candidate size trained from scratch on the broad corpus for
the same process CPU time, then scored by the world criteria (W1 and W2(a) FD ratios) and the held-out loss.

    .venv/bin/python scripts/world_probe.py --cpu-budget 1200 [--sizes A B] [--out results/world-probe]

Each size trains in its own process (``python -m finextract pretrain --cpu-budget``), so its CPU time is its
own whatever else runs on the machine; reruns resume finished runs and only re-measure.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from finextract.io import save_csv
from finextract.workflow.config_file import schema_defaults
from finextract.world.measure import heldout_loss, measure_world

RECIPE = schema_defaults("world.pretrain")  # the workflow's recipe, apart from the sizes probed
SIZES = {"A": ((32, 64, 64), 1), "B": ((64, 128, 128), 1), "C": ((64, 128, 256), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="results/corpus-broad")
    parser.add_argument("--out", default="results/world-probe")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--cpu-budget", type=float, required=True, help="process CPU seconds per size")
    parser.add_argument("--variant", nargs="+", default=["fp32"],
                        help="per size (one value for all): the fastest of bench_pretrain_speed.py's variants, "
                             "fp32, bf16, 'fp32 channels_last' or 'bf16 channels_last'")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    variants = dict(zip(args.sizes, args.variant * len(args.sizes) if len(args.variant) == 1 else args.variant))
    # all sizes train at once, one thread each: each stops at its own CPU-time budget, whatever the load
    jobs = {}
    for size in args.sizes:
        channels, layers = SIZES[size]
        run = Path(args.out) / size
        if not (run / "model").exists():
            command = [sys.executable, "-m", "finextract", "pretrain", "--corpus", args.corpus, "--out", str(run),
                       "--steps", "16000", "--band-basis", "--channels", *map(str, channels),
                       "--batch-size", str(RECIPE["batch_size"]), "--lr", str(RECIPE["lr"]),
                       "--seed", str(RECIPE["seed"]), "--checkpoint-every", str(RECIPE["checkpoint_every"]),
                       "--layers-per-block", str(layers), "--cpu-budget", str(args.cpu_budget), "--threads", "1",
                       "--autocast", "bf16" if "bf16" in variants[size] else "none"]
            command += ["--channels-last"] if "channels_last" in variants[size] else []
            run.mkdir(parents=True, exist_ok=True)
            jobs[size] = subprocess.Popen(command, stdout=open(run / "pretrain.log", "a"), stderr=subprocess.STDOUT)
    for size, job in jobs.items():
        if job.wait() != 0:
            raise SystemExit(f"pretraining size {size} failed: {Path(args.out) / size / 'pretrain.log'}")
    rows = []
    for size in args.sizes:
        channels, layers = SIZES[size]
        run = Path(args.out) / size
        table = measure_world(run / "model", args.corpus, run / "criteria", threads=args.threads, full=False)
        fd = dict(zip(table["name"], table["fd_ratio"]))
        step = int((run / "model" / "training_step.txt").read_text())
        rows.append({"size": size, "channels": channels, "layers": layers, "variant": variants[size], "step": step,
                     "fd_ratio_W1": fd["W1 unconditional"], "fd_ratio_W2_heldout": fd["W2 held-out concepts"],
                     "score": (fd["W1 unconditional"] + fd["W2 held-out concepts"]) / 2,
                     "heldout_loss": heldout_loss(run / "model", args.corpus, threads=args.threads)})
        print(rows[-1], flush=True)
    save_csv(Path(args.out) / "probe.csv", pd.DataFrame(rows))
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
