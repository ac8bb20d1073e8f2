"""Repeat the default run with other seeds, then measure how far Table 1 moves (docs/results.md, "Noise").

    .venv/bin/python scripts/seed_runs.py --seeds 1 2            # results/seeds/seed1, seed2 (~5 min each)
    .venv/bin/python -m finextract seed-noise --runs results results/seeds/seed1 results/seeds/seed2 \
        --out-dir results/seed-noise

Seed S fine-tunes with seed S (both methods) and samples seeds S*SEED_STRIDE ... onwards, disjoint from the
default run's 0 ... N-1; everything else is the config's. Each run is a plain `snakemake` of the default target
in its own results folder, so it resumes where it stopped.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SEED_STRIDE = 1_000_000  # sampling seeds of seed run S start here × S: far above any default N


def seed_config(config: dict, seed: int, results: Path) -> dict:
    config = yaml.safe_load(yaml.safe_dump(config))  # a deep copy
    config["results"] = str(results)
    for ft in ("dreambooth", "lora"):
        config.setdefault("finetune", {}).setdefault(ft, {})["seed"] = seed
    config.setdefault("sampling", {})["seed_offset"] = seed * SEED_STRIDE
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="seed runs to make (0 is the default run)")
    parser.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    parser.add_argument("--root", default="results/seeds", help="seed run S goes to ROOT/seed<S>")
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    if 0 in args.seeds:
        raise SystemExit("seed_runs: seed 0 is the default run itself (snakemake --cores 2); give other seeds")
    config = yaml.safe_load(Path(args.configfile).read_text())
    for seed in args.seeds:
        results = Path(args.root) / f"seed{seed}"
        results.mkdir(parents=True, exist_ok=True)
        configfile = results / "config.yaml"
        configfile.write_text(yaml.safe_dump(seed_config(config, seed, results), sort_keys=False))
        print(f"seed run {seed}: {results}", flush=True)
        # the target first: --configfile takes every word after it
        subprocess.run([sys.executable, "-m", "snakemake", "all", "--cores", str(args.cores), "--configfile",
                        str(configfile)], cwd=REPO, check=True)


if __name__ == "__main__":
    main()
