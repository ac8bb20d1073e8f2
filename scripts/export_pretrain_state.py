"""Write a run's resumable state in the committed, compact form (``resources/pretrain-state/``).

    .venv/bin/python scripts/export_pretrain_state.py --run results/pretrain-broad --out resources/pretrain-state

Copies ``loss.csv`` and writes ``state.safetensors`` (``finextract.world.pretrain.write_portable_state``), replacing
what the folder held. Resume with ``python -m finextract pretrain ... --init-from resources/pretrain-state/state.safetensors``.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from finextract.world.pretrain import PORTABLE_STATE, write_portable_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a pretraining output folder (state.pt, loss.csv)")
    parser.add_argument("--out", default="resources/pretrain-state")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        if stale.name not in (PORTABLE_STATE, "loss.csv"):
            stale.unlink()
    step = write_portable_state(run / "state.pt", out / PORTABLE_STATE)
    shutil.copyfile(run / "loss.csv", out / "loss.csv")
    size = (out / PORTABLE_STATE).stat().st_size / 2**20
    print(f"{out / PORTABLE_STATE}: step {step}, {size:.1f} MiB")


if __name__ == "__main__":
    main()
