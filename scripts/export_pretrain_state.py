"""Write a run's resumable state in the committed, compact form (``resources/pretrain-state/``).

    .venv/bin/python scripts/export_pretrain_state.py --run results/pretrain-broad --out resources/pretrain-state

Writes ``loss.csv`` (the run's, after the rows of the folder's earlier ``loss.csv`` that precede it: a run resumed on a
fresh machine from the committed state logs only its own steps) and ``state.safetensors`` (``finextract.world.pretrain.write_portable_state``), replacing
what the folder held. Resume with ``python -m finextract pretrain ... --init-from resources/pretrain-state/state.safetensors``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from finextract.io import save_text
from finextract.world.pretrain import PORTABLE_STATE, write_portable_state


def merge_loss(previous: Path, current: Path) -> str:
    """The earlier history up to the current run's first step, then the current run's rows."""
    rows = current.read_text().splitlines()
    header, body = rows[0], rows[1:]
    first = int(body[0].split(",")[0]) if body else 0
    earlier = []
    if previous.exists():
        old = previous.read_text().splitlines()
        if old and old[0] != header:
            raise SystemExit(f"export_pretrain_state: {previous} has columns {old[0]!r}, the run {header!r}")
        earlier = [row for row in old[1:] if int(row.split(",")[0]) < first]
    return "\n".join([header, *earlier, *body]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a pretraining output folder (state.pt, loss.csv)")
    parser.add_argument("--out", default="resources/pretrain-state")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    history = merge_loss(out / "loss.csv", run / "loss.csv")
    for stale in out.iterdir():
        if stale.name not in (PORTABLE_STATE, "loss.csv"):
            stale.unlink()
    step = write_portable_state(run / "state.pt", out / PORTABLE_STATE)
    save_text(out / "loss.csv", history)
    size = (out / PORTABLE_STATE).stat().st_size / 2**20
    print(f"{out / PORTABLE_STATE}: step {step}, {size:.1f} MiB")


if __name__ == "__main__":
    main()
