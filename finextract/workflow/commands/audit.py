"""The audit's commands: the membership audit of candidate images and its summary."""
from __future__ import annotations

import argparse
from pathlib import Path

from finextract.workflow.commands.options import (_add_finetuned_options, _add_load_options, _caption_from,
                                                  _finetuned_options, _load_options)

# finextract.audit.membership.score.PAIRED_VARIANTS, spelled here so building the parser imports no torch
# (tests/test_membership.py checks the two agree)
MEMBERSHIP_SCORES = ("gap", "gap_uncond", "clid_gap", "log_ratio")


def default_membership_score() -> str:
    """audit.membership.score's default: the schema spells it, so the commands and the workflow agree."""
    from finextract.workflow.config_file import SCHEMA_DIR, schema_defaults

    return schema_defaults("membership", SCHEMA_DIR / "audit.schema.yaml")["score"]


def add_audit(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--membership-score", default=default_membership_score(), choices=MEMBERSHIP_SCORES,
                   help="which of its scores answers (default: the schema's audit.membership.score)")
    p.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> None:
    from finextract.workflow.experiment_steps import run_audit

    if not len(args.methods) == len(args.generated) == len(args.controls):
        raise SystemExit("--methods, --generated and --controls must list one entry per method")
    run_audit(args.name, args.ft, args.candidates, Path(args.candidate_embeddings), Path(args.candidate_order),
              [Path(g) for g in args.generated], [Path(c) for c in args.controls], args.methods,
              args.n_per_draw, args.seed_offset, args.base, Path(args.out),
              membership=Path(args.membership) if args.membership else None,
              membership_score=args.membership_score)


def add_membership(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("membership", help="membership test of candidate images from θ and θ' (the loss gap)")
    _add_load_options(p)
    _add_finetuned_options(p)
    p.add_argument("--caption", default=None, help="the fine-tuning caption, as text (pass it as --caption=TEXT)")
    p.add_argument("--caption-file", default=None, help="read the caption from this file (what extract-caption chose)")
    p.add_argument("--candidates", required=True, help="candidate folder (images of one size; labels.csv to measure)")
    p.add_argument("--reference", default=None, help="folder of known non-members: the p-values' null")
    p.add_argument("--score", default=default_membership_score(), choices=MEMBERSHIP_SCORES,
                   help="the score whose p and q membership.csv carries (every score's values are in it; "
                        "default: the schema's audit.membership.score)")
    p.add_argument("--timesteps", type=int, required=True, help="K")
    p.add_argument("--draws", type=int, required=True, help="M")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--batch-size", type=int, required=True, help="UNet rows per forward")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_membership)


def _membership(args: argparse.Namespace) -> None:
    from finextract.audit.extraction import AuditInputError
    from finextract.audit.membership.run import membership_inputs, run_membership
    from finextract.audit.membership.score import LossGrid

    caption = _caption_from(args)  # one of the two; a missing or empty file is named
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


def add_audit_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit-summary", help="one table of every audit's counts and measured figures")
    p.add_argument("--measurements", nargs="+", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(func=_audit_summary)


def _audit_summary(args: argparse.Namespace) -> None:
    from finextract.audit.report import write_audit_summary

    table = write_audit_summary(args.measurements, Path(args.out_csv), Path(args.out_md))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
