"""Command-line entry points: ``python -m finextract <command> ...``.

Each command is a thin wrapper over one package function; the Snakemake rules call these.
"""
from __future__ import annotations

import argparse
import sys

from finextract.workflow.commands import attack, audit, experiments, world

# Every subcommand, in the order `finextract --help` lists them; each module holds a command's options
# (add_<command>) beside its handler (_<command>).
SUBCOMMANDS = (
    world.add_corpus, world.add_private_sets, world.add_pretrain, world.add_world_criteria, world.add_choose_base,
    attack.add_finetune, attack.add_sample, attack.add_embed, audit.add_audit, audit.add_membership,
    audit.add_audit_summary, experiments.add_extract_caption, experiments.add_captions_summary,
    experiments.add_defence_quality, experiments.add_defences_summary, attack.add_cluster, attack.add_score,
    attack.add_similarity, attack.add_summary, attack.add_grid, experiments.add_sweep_point,
    experiments.add_separation, experiments.add_choose_w, experiments.add_study_point,
    experiments.add_study_summary, experiments.add_default_recipe,
    experiments.add_seed_noise, experiments.add_sweep_summary, experiments.add_n0_summary,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finextract", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
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
