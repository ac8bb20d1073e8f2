"""Ship a pretraining checkpoint as the tiny world's base model θ (docs/tiny-world.md, "Which checkpoint ships").

    .venv/bin/python -m finextract choose-base --measurements results/world-criteria/broad-* \
        --out results/world-criteria/choice.json
    .venv/bin/python scripts/ship_base.py --checkpoint results/pretrain-broad/ckpt-<step> \
        --criteria results/world-criteria/broad-<step> --loss results/pretrain-broad/loss.csv --out resources/base

It copies the model (UNet safetensors and config, scheduler, finextract.json, training step), the checkpoint's
world-criteria figures and grids, and the training history (loss curve, cost) into OUT, replacing what was
there in one rename. OUT's MODEL_CARD.md is kept: its text is written by hand, from the files this puts beside it.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pandas as pd

MODEL_FILES = ("unet", "scheduler_config.json", "finextract.json", "training_step.txt")
CRITERIA_FILES = ("criteria.csv", "w3.csv", "summary.json")
KEEP = ("MODEL_CARD.md",)


def training_cost(loss: pd.DataFrame) -> dict:
    """Wall time over the resumed segments of one run: ``seconds`` restarts at each resume, so a segment ends
    where it falls."""
    seconds = loss["seconds"].to_numpy()
    ends = [i for i in range(len(seconds) - 1) if seconds[i + 1] < seconds[i]] + [len(seconds) - 1]
    return {"segments": len(ends), "hours": float(sum(seconds[i] for i in ends)) / 3600.0,
            "steps": int(loss["step"].iloc[-1]) + 1}


def ship(checkpoint: Path, criteria: Path, loss_csv: Path, out: Path) -> dict:
    from finextract.attack.load_models import load_base
    from finextract.reporting.loss_curve import plot_loss_curve

    missing = [name for name in MODEL_FILES if not (checkpoint / name).exists()]
    missing += [str(criteria / name) for name in CRITERIA_FILES if not (criteria / name).exists()]
    if missing:
        raise SystemExit(f"ship_base: missing {', '.join(missing)}")
    summary = json.loads((criteria / "summary.json").read_text())
    step = int((checkpoint / "training_step.txt").read_text())
    measured = re.search(r"ckpt-(\d+)/?$", str(summary["model"]))
    if measured is None or int(measured.group(1)) != step:
        raise SystemExit(f"ship_base: {criteria} measured {summary['model']}, not the step-{step} checkpoint "
                         f"{checkpoint}")
    load_base(str(checkpoint))  # refuses a model the workflow could not use, before anything is replaced
    loss = pd.read_csv(loss_csv)
    loss = loss[loss["step"] < step]

    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in MODEL_FILES:
        source = checkpoint / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, staging / name)
    (staging / "criteria").mkdir()
    for source in [*(criteria / name for name in CRITERIA_FILES), *sorted(criteria.glob("W*.png"))]:
        shutil.copyfile(source, staging / "criteria" / source.name)
    for name in KEEP:
        if (out / name).exists():
            shutil.copyfile(out / name, staging / name)
    plot_loss_curve(loss, staging / "loss.png")
    history = {"checkpoint": str(checkpoint), "step": step, **training_cost(loss)}
    (staging / "training_history.json").write_text(json.dumps(history, indent=2) + "\n")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="results/pretrain-broad/ckpt-<step>")
    parser.add_argument("--criteria", type=Path, required=True, help="its world-criteria folder")
    parser.add_argument("--loss", type=Path, required=True, help="the run's loss.csv")
    parser.add_argument("--out", type=Path, default=Path("resources/base"))
    args = parser.parse_args()
    history = ship(args.checkpoint, args.criteria, args.loss, args.out)
    print(json.dumps(history, indent=2))
    print(f"shipped to {args.out}; now update {args.out / 'MODEL_CARD.md'} from the files beside it")


if __name__ == "__main__":
    main()
