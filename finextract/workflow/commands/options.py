"""What several commands share: option groups, argument types, and the arguments turned into keyword options."""
from __future__ import annotations

import argparse
from pathlib import Path


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


def _add_finetuned_options(p: argparse.ArgumentParser) -> None:
    """θ' for the commands that need one: where it is and how it was fine-tuned."""
    p.add_argument("--ft-dir", required=True)
    p.add_argument("--ft-method", required=True, choices=["dreambooth", "lora"])


def _verified_checkpoint(command: str, ft_dir: str) -> None:
    """A checkpoint the workflow wrote must be whole before hours go into it; the error names the rule to rerun."""
    from finextract.workflow.provenance import CheckpointError, verify_checkpoint

    try:
        verify_checkpoint(ft_dir)
    except CheckpointError as error:
        raise SystemExit(f"finextract {command}: {error}")


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


def _interval(values: list[float]) -> tuple[float, float] | None:
    """``LO HI`` timesteps; the whole range 0 .. 1000 (or wider) is no interval at all."""
    lo, hi = values
    if lo > hi:
        raise SystemExit(f"--guidance-interval: LO ({lo}) must not exceed HI ({hi})")
    return None if lo <= 0 and hi >= 1000 else (lo, hi)


def _guidance_w(text: str) -> float:
    """w' as a number, or ``@choice.json``: the w' that `w: auto` chose (finextract.experiments.auto_w)."""
    if text.startswith("@"):
        import json

        return float(json.loads(Path(text[1:]).read_text())["w"])
    return float(text)


def _optional_sigma(text: str) -> float | None:
    return None if text.lower() in ("auto", "none", "null") else float(text)


def _optional_similarity(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else float(text)


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
