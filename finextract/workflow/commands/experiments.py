"""The experiments' commands: the N sweep and N0 ablation, w: auto, the guidance study, caption extraction
and the defences."""
from __future__ import annotations

import argparse
from pathlib import Path

from finextract.workflow.commands.options import (_add_clustering_options, _add_finetuned_options, _add_l2_options,
                                                  _add_load_options, _load_options, _verified_checkpoint)


def add_sweep_point(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep-point", help="cluster and score the first N generated images (N sweep)")
    for name in ("--generated", "--order", "--private", "--set", "--ft", "--method", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--n-images", type=int, required=True, help="N: the first N seeds of the run")
    _add_l2_options(p)
    p.add_argument("--seed-offset", type=int, required=True)
    _add_clustering_options(p)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.set_defaults(func=_sweep_point)


def _sweep_point(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_sweep_point

    run_sweep_point(Path(args.generated), Path(args.order), Path(args.private), args.n_images, args.taus,
                    args.set, args.ft, args.method, args.seed_offset, args.time_cap, Path(args.out),
                    min_threshold=args.min_threshold, private_set=args.private_set, base=args.base,
                    l2_delta=args.l2_delta)


def add_sweep_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep-summary", help="N sweep table and plot (AS and A-ESR vs N)")
    p.add_argument("--points", nargs="+", required=True)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-png", required=True)
    p.set_defaults(func=_sweep_summary)


def _sweep_summary(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_sweep_summary

    run_sweep_summary(args.points, args.taus, Path(args.out_csv), Path(args.out_png))


def add_n0_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("n0-summary", help="N0 ablation table and plot (AS and A-ESR vs the number of private images)")
    p.add_argument("--metrics", nargs="+", required=True, help="the run's metrics/<set>/<ft>/<method>.csv files")
    p.add_argument("--n0", nargs="+", required=True, metavar="SET=N0", help="the ablation's sets and their sizes")
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-png", required=True)
    p.set_defaults(func=_n0_summary)


def _n0_summary(args: argparse.Namespace) -> None:
    from finextract.experiments.n0_ablation import write_n0_ablation

    n0 = {}
    for item in args.n0:
        name, _, size = item.rpartition("=")
        n0[name] = int(size)
    table = write_n0_ablation(args.metrics, n0, tuple(args.taus), Path(args.out_csv), Path(args.out_png))
    columns = ["set", "n0", "ft", "method", "n_generated", "AS"] + [f"A-ESR@{t:g}" for t in args.taus]
    columns += [c for c in ("L2-ESR",) if c in table]
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"N0 ablation: {args.out_csv} and {args.out_png}")


def add_separation(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("separation", help="the w: auto score of one candidate w' (clustering of its samples)")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--n0", type=int, required=True)
    p.add_argument("--w", type=float, required=True, help="the candidate w' these samples were drawn with")
    _add_clustering_options(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_separation)


def _separation(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_separation

    run_separation(Path(args.embeddings), args.n0, args.w, args.time_cap, Path(args.out),
                   min_threshold=args.min_threshold)


def add_choose_w(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("choose-w", help="w: auto: the candidate w' with the highest separation score")
    p.add_argument("--scores", nargs="+", required=True, help="CSVs written by `separation`")
    p.add_argument("--out", required=True, help="JSON {w, scores}; `sample --w @FILE` reads it")
    p.set_defaults(func=_choose_w)


def _choose_w(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_choose_w

    run_choose_w(args.scores, Path(args.out))


def add_study_point(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study-point", help="cluster and score one variant of the guidance study")
    for name in ("--generated", "--order", "--private", "--set", "--ft", "--variant", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--seed", type=int, required=True, help="fine-tuning seed (-1: the never-fine-tuned control)")
    p.add_argument("--steps-per-image", type=int, required=True, help="fine-tuning strength (0: the control)")
    _add_l2_options(p)
    _add_clustering_options(p)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.set_defaults(func=_study_point)


def _study_point(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_study_point

    cell = {"set": args.set, "ft": args.ft, "seed": args.seed, "steps_per_image": args.steps_per_image}
    run_study_point(Path(args.generated), Path(args.order), Path(args.private), args.taus, cell, args.variant,
                    args.time_cap, Path(args.out), min_threshold=args.min_threshold,
                    private_set=args.private_set, base=args.base, l2_delta=args.l2_delta)


def add_study_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study-summary", help="the guidance study's table, figures and regime map")
    p.add_argument("--points", nargs="+", required=True)
    p.add_argument("--controls", nargs="+", required=True)
    p.add_argument("--study", required=True, help="the study config section as JSON")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_study_summary)


def _study_summary(args: argparse.Namespace) -> None:
    import json

    from finextract.workflow.experiment_steps import run_study_summary

    run_study_summary(args.points, args.controls, json.loads(args.study), Path(args.out_dir))


def add_default_recipe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("default-recipe", help="the default-recipe rule from the study's direct points and controls")
    p.add_argument("--points", nargs="+", required=True, help="direct-sampling study points (seed<S>/spi<N>/direct.csv)")
    p.add_argument("--controls", nargs="+", required=True)
    p.add_argument("--rule", required=True, help="the study.default_rule config section as JSON")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_default_recipe)


def _default_recipe(args: argparse.Namespace) -> None:
    import json

    from finextract.workflow.experiment_steps import run_default_recipe

    run_default_recipe(args.points, args.controls, json.loads(args.rule), Path(args.out_dir))


def add_seed_noise(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("seed-noise", help="Table 1's seed-to-seed spread over runs that differ only in their seeds "
                                          "(scripts/seed_runs.py makes them)")
    p.add_argument("--runs", nargs="+", required=True,
                   help="results folders of the default target; the first is the run Table 1 shows")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_seed_noise)


def _seed_noise(args: argparse.Namespace) -> None:
    from finextract.reporting.seed_noise import write_seed_noise

    try:
        summary = write_seed_noise(args.runs, Path(args.out_dir))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"seed-noise: {error}") from None
    print((Path(args.out_dir) / "seed_noise.md").read_text(), flush=True)
    print(f"pooled SD {summary['pooled_sd']:.3f}", flush=True)


def add_extract_caption(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract-caption", help="the training caption from the weights of theta and theta' (App. A)")
    _add_load_options(p)
    _add_finetuned_options(p)
    p.add_argument("--set-folder", default=None, help="private set whose caption.txt is the truth (for recall)")
    p.add_argument("--caption", default=None, help="the true caption, if known (for recall)")
    p.add_argument("--lengths", type=int, nargs="+", required=True, help="prompt lengths in tokens")
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--step", type=float, required=True, help="L2 step, in units of the mean token-embedding norm")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--rank", type=int, required=True, help="rank of the PCA approximation of Eq. 19")
    p.add_argument("--objective", choices=["eq19", "pca_delta"], required=True,
                   help="PCA[β⁺] − PCA[β⁻] (Eq. 19) or PCA[β⁺ − β⁻]")
    p.add_argument("--scan-tokens", action="store_true", help="also score every token as a one-token prompt")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_extract_caption)


def _extract_caption(args: argparse.Namespace) -> None:
    from finextract.private_set import read_caption
    from finextract.workflow.experiment_steps import run_extract_caption

    _verified_checkpoint("extract-caption", args.ft_dir)
    truth = read_caption(Path(args.set_folder), args.caption) if args.set_folder else args.caption
    run_extract_caption(args.base, args.ft_dir, args.ft_method, args.lengths, args.iterations, args.step, args.seed,
                        args.rank, args.scan_tokens, Path(args.out), true_caption=truth, threads=args.threads,
                        objective_name=args.objective, **_load_options(args))


def add_captions_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("captions-summary", help="one table of the extracted captions")
    p.add_argument("--folders", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--out-png", default=None, help="also the figure of F per model")
    p.set_defaults(func=_captions_summary)


def _captions_summary(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_captions_summary

    run_captions_summary(args.folders, Path(args.out), Path(args.out_png) if args.out_png else None)


def add_defence_quality(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("defence-quality", help="quality cost of a defence: figures of the direct samples")
    p.add_argument("--samples", required=True, help="folder of the direct samples")
    p.add_argument("--generated", required=True, help="their SSCD descriptors")
    p.add_argument("--private", required=True, help="the private set's SSCD descriptors")
    p.add_argument("--augment", required=True)
    p.add_argument("--set", required=True)
    p.add_argument("--ft", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_defence_quality)


def _defence_quality(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_defence_quality

    run_defence_quality(Path(args.samples), Path(args.generated), Path(args.private),
                        {"augment": args.augment, "set": args.set, "ft": args.ft}, Path(args.out))


def add_defences_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("defences-summary", help="the defences table and figure")
    p.add_argument("--points", nargs="+", required=True)
    p.add_argument("--qualities", nargs="+", required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_defences_summary)


def _defences_summary(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_defences_summary

    run_defences_summary(args.points, args.qualities, Path(args.out_dir))
