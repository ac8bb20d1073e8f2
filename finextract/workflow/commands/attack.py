"""The attack's commands: fine-tune, sample, embed, cluster, score, compare image pairs; the summary and grid."""
from __future__ import annotations

import argparse
from pathlib import Path

from finextract.workflow.commands.options import (_add_clustering_options, _add_l2_options, _add_load_options,
                                                  _caption_from, _finetuned_options, _guidance_w, _interval,
                                                  _load_options, _optional_sigma, _verified_checkpoint)


def add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune the base model on a private set")
    _add_load_options(p)
    p.add_argument("--set-folder", required=True)
    p.add_argument("--caption", default=None)
    p.add_argument("--method", required=True, choices=["dreambooth", "lora"])
    p.add_argument("--hyper", required=True, help="JSON object of fine-tuning hyperparameters")
    p.add_argument("--snapshots", type=int, nargs="*", default=None,
                   help="also save the model after these steps per image, in OUT/spi<S>/ (the study's ladder)")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_finetune)


def _finetune(args: argparse.Namespace) -> None:
    import json

    from finextract.workflow.attack_steps import run_finetune

    from finextract.workflow.provenance import write_checksums

    run_finetune(args.base, args.set_folder, args.caption, args.method, json.loads(args.hyper),
                 Path(args.out), threads=args.threads, snapshots=tuple(args.snapshots or ()), **_load_options(args))
    write_checksums(args.out)  # what a job that loads this checkpoint checks it against


def add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample one shard of seeds with one method")
    _add_load_options(p)
    p.add_argument("--ft-dir", default=None)
    p.add_argument("--ft-method", required=True, choices=["dreambooth", "lora", "none"])
    p.add_argument("--set-folder", default=None, help="private set folder (for its caption.txt)")
    p.add_argument("--caption", default=None, help="the caption, as text (pass it as --caption=TEXT)")
    p.add_argument("--caption-file", default=None, help="read the caption from this file (what extract-caption chose)")
    p.add_argument("--method", required=True, help="a sampling method (sampling.METHODS)")
    p.add_argument("--w", type=_guidance_w, required=True, help="w', or @FILE: the w' a choose-w run wrote")
    p.add_argument("--k", type=float, required=True)
    p.add_argument("--scheduler", required=True, choices=["ddim", "dpmsolver++", "unipc"],
                   help="sampler (sampling.scheduler)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--guidance-interval", type=float, nargs=2, required=True, metavar=("LO", "HI"),
                   help="guide only at timesteps LO..HI, θ''s own prediction elsewhere (0 1000: always)")
    p.add_argument("--seeds", required=True, help="inclusive seed range FIRST-LAST")
    p.add_argument("--batch-size", type=int, required=True, help="UNet batch rows per forward (CFG: 2 per image)")
    p.add_argument("--memory", default="two-unets",
                   help="DreamBooth: two-unets, delta, delta-fp16, delta-bf16, delta-int8, pretrained-bf16 or "
                        "pretrained-fp16, optionally @cpu (finextract.attack.dreambooth_memory.reduce_memory)")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> None:
    from finextract.attack.sampling import method_of
    from finextract.workflow.attack_steps import run_sample

    try:
        method_of(args.method)
    except ValueError as error:
        raise SystemExit(f"finextract sample --method: {error}")
    caption = _caption_from(args)
    if args.ft_dir and args.ft_method != "none":
        _verified_checkpoint("sample", args.ft_dir)
    run_sample(args.base, args.ft_dir, args.ft_method, args.set_folder, caption, args.method,
               args.w, args.k, args.steps, args.seeds, args.batch_size, Path(args.out),
               threads=args.threads, ft_options=_finetuned_options(args), memory=args.memory,
               scheduler=args.scheduler, interval=_interval(args.guidance_interval), **_load_options(args))


def add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="SSCD descriptors of generated images or a private set")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--images", nargs="+", help="folders of seed_*.png images")
    group.add_argument("--private-set", help="private set folder (images/ + caption.txt)")
    group.add_argument("--candidates", help="audit candidate folder (images of one size)")
    p.add_argument("--base", default=None, help="base model, for the private images' resolution")
    p.add_argument("--model", required=True, help="int8, distilled or a model file")
    p.add_argument("--calibration", required=True, help="calibration .npz, or none")
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--prefilter-sigma", type=_optional_sigma, default=None,
                   help="Gaussian pre-filter σ in pixels ('auto': the calibration's own)")
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--order", required=True)
    p.set_defaults(func=_embed)


def _embed(args: argparse.Namespace) -> None:
    from finextract.workflow.attack_steps import run_embed

    calibration = None if args.calibration in ("none", "null") else args.calibration
    run_embed(Path(args.out), Path(args.order), args.model, calibration, args.resolution,
              args.batch_size, threads=args.threads, image_dirs=args.images,
              private_set=args.private_set, base=args.base, prefilter_sigma=args.prefilter_sigma,
              candidates=args.candidates)


def add_cluster(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="extract N0 images by clique clustering")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--order", required=True)
    p.add_argument("--n0", type=int, required=True)
    _add_clustering_options(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cluster)


def _cluster(args: argparse.Namespace) -> None:
    from finextract.workflow.attack_steps import run_cluster

    run_cluster(Path(args.embeddings), Path(args.order), args.n0, args.time_cap, Path(args.out),
                min_threshold=args.min_threshold)


def add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="AS and A-ESR of an extracted set against the private set")
    for name in ("--private", "--private-order", "--generated", "--clusters", "--set", "--ft", "--method", "--out"):
        p.add_argument(name, required=True)
    _add_l2_options(p)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.set_defaults(func=_score)


def _score(args: argparse.Namespace) -> None:
    from finextract.workflow.attack_steps import run_score

    run_score(Path(args.private), Path(args.private_order), Path(args.generated), Path(args.clusters),
              args.taus, args.set, args.ft, args.method, Path(args.out), private_set=args.private_set,
              base=args.base, l2_delta=args.l2_delta)


def add_similarity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("similarity", help="similarity and pixel l2 of image pairs, as the workflow scores them")
    p.add_argument("images", nargs="*", help="two image files A B")
    p.add_argument("--pairs", default=None, help="CSV with columns a,b (paths relative to the CSV allowed)")
    p.add_argument("--config", default=None, help="workflow config to read (default config/config.yaml)")
    p.add_argument("--base", default=None, help="base model whose resolution images are prepared at")
    p.add_argument("--json", action="store_true", help="print a JSON list of {a, b, similarity, l2}")
    p.set_defaults(func=_similarity)


def _similarity(args: argparse.Namespace) -> None:
    import json

    from finextract.workflow.score_pairs import compare_pairs, describe, instrument_from_config, read_pairs_csv

    if args.pairs and args.images:
        raise SystemExit("finextract similarity: give two images or --pairs FILE.csv, not both")
    if args.pairs:
        pairs = _pairs_from_csv(args.pairs, read_pairs_csv)
    elif len(args.images) == 2:
        pairs = [tuple(args.images)]
    else:
        raise SystemExit("finextract similarity: expected two images A B, or --pairs FILE.csv")
    for pair in pairs:
        for image in pair:
            if Path(image).is_dir():
                raise SystemExit(f"finextract similarity: {image} is a folder; expected an image file")
            if not Path(image).is_file():
                raise SystemExit(f"finextract similarity: {image}: no such image file")
    try:
        instrument = instrument_from_config(args.config, base=args.base)
        table = compare_pairs(pairs, instrument)
    except ValueError as error:
        raise SystemExit(f"finextract similarity: {error}")
    if args.json:
        print(json.dumps(table.to_dict(orient="records"), indent=2))
    else:
        for _, row in table.iterrows():
            print(describe(row, instrument))


def _pairs_from_csv(path: str, read_pairs_csv) -> list[tuple[str, str]]:
    """The pairs of a CSV with columns a,b; a missing, empty or malformed file is named, without a traceback."""
    import pandas as pd

    where = f"finextract similarity: --pairs {path}"
    if Path(path).is_dir():
        raise SystemExit(f"{where} is a folder; expected a CSV file with columns a,b")
    if not Path(path).is_file():
        raise SystemExit(f"{where}: no such file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise SystemExit(f"{where}: empty; expected a header a,b and one row per pair")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise SystemExit(f"{where}: not a readable CSV ({error})")
    missing = sorted({"a", "b"} - set(table.columns))
    if missing:
        raise SystemExit(f"{where}: expected columns a,b; missing {', '.join(missing)} "
                         f"(columns there: {', '.join(table.columns)})")
    if table.empty:
        raise SystemExit(f"{where}: no rows; expected one row per pair under the header a,b")
    for row, (a, b) in enumerate(zip(table["a"], table["b"]), start=1):
        for column, value in (("a", a), ("b", b)):
            if not value.strip():
                raise SystemExit(f"{where}: row {row}: no image in column {column}")
    return read_pairs_csv(path)


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="Table-1 style summary of all metric CSVs")
    p.add_argument("--metrics", nargs="+", required=True)
    for name in ("--out-csv", "--out-md", "--out-all"):
        p.add_argument(name, required=True)
    p.add_argument("--out-leak", default=None, help="the publisher summary (HTML) for the report")
    p.add_argument("--extracted-root", required=True)
    p.set_defaults(func=_summary)


def _summary(args: argparse.Namespace) -> None:
    from finextract.reporting.summary import write_summary

    markdown = write_summary(args.metrics, Path(args.out_csv), Path(args.out_md), Path(args.out_all))
    if args.out_leak:
        from finextract.reporting.summary import write_leak_summary

        write_leak_summary(args.metrics, Path(args.out_leak))
    print("\n" + markdown)
    print(f"Table: {args.out_md}  (CSV: {args.out_csv}); extracted images: "
          f"{args.extracted_root}/<set>/<ft>/<method>/extracted/")


def add_grid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="picture: private images beside their best extracted images")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_grid)


def _grid(args: argparse.Namespace) -> None:
    from finextract.reporting.summary import extracted_grid

    extracted_grid(args.metrics, Path(args.out))
    print(f"grid of private vs best extracted images: {args.out}")
