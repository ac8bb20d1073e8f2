# Config validation (schema, then semantic checks that touch the file system) runs while the
# DAG is built, so a bad config fails before any job starts. Both modes — the embedded default
# (private sets we fine-tune on) and real-world mode (published checkpoints, `targets:`) — become
# one list of attack targets that the rules read.
import glob
import shlex
import sys

from snakemake.utils import validate

from finextract import config as fxconfig

PY = sys.executable
FX = f"{PY} -m finextract"
try:
    if fxconfig.is_realworld(config):
        validate(config, workflow.source_path("../schemas/realworld.schema.yaml"))
        TARGETS = fxconfig.check_realworld(config)
    else:
        validate(config, workflow.source_path("../schemas/config.schema.yaml"))
        TARGETS = fxconfig.attack_targets(config, fxconfig.check_config(config))
except fxconfig.ConfigError as error:
    raise WorkflowError(f"config error: {error}")

RESULTS = config.get("results", "results/realworld" if fxconfig.is_realworld(config) else "results")
CONTROL = config.get("sampling", config.get("defaults", {})).get("control", True)
COMBOS = fxconfig.target_combos(TARGETS, CONTROL)
SCORED = [c for c in COMBOS if TARGETS[c.set].images]
N0 = {name: target.n0 for name, target in TARGETS.items()}


def target(wildcards):
    return TARGETS[wildcards.set]


def set_folder(wildcards):
    return target(wildcards).images


def private_images(wildcards):
    folder = target(wildcards).images
    return sorted(glob.glob(f"{folder}/images/*")) if folder else []


def caption_args(wildcards):
    t = target(wildcards)
    args = f"--set-folder {shlex.quote(t.images)}" if t.images else ""
    if t.caption is not None:
        args += f" --caption {shlex.quote(t.caption)}"
    return args


def load_args(wildcards):
    """Base model and how to load it, as CLI options."""
    t = target(wildcards)
    args = [f"--base {shlex.quote(t.base)}"]
    for key, value in t.load_options.items():
        if key == "allow_pickle":
            args.append("--allow-pickle" if value else "")
        else:
            args.append(f"--{key.replace('_', '-')} {shlex.quote(str(value))}")
    return " ".join(a for a in args if a)


def shards_of(set_name):
    t = TARGETS[set_name]
    return fxconfig.seed_shards(t.sampling["n_per_image"] * t.n0, t.sampling["shard_size"],
                                t.sampling["seed_offset"])


def shard_dirs(wildcards):
    return expand(f"{RESULTS}/samples/{{set}}/{{ft}}/{{method}}/shard_{{shard}}",
                  set=wildcards.set, ft=wildcards.ft, method=wildcards.method,
                  shard=shards_of(wildcards.set))


def finetune_output(wildcards):
    """The fine-tuning job's output folder, when this workflow fine-tunes (not in real-world mode)."""
    if wildcards.ft == fxconfig.CONTROL_FT or target(wildcards).realworld:
        return []
    return f"{RESULTS}/finetune/{wildcards.set}/{wildcards.ft}"


def finetuned_arg(wildcards, input):
    t = target(wildcards)
    if wildcards.ft == fxconfig.CONTROL_FT:
        return ""
    if t.realworld:
        return f"--ft-dir {shlex.quote(t.finetuned[wildcards.ft])}"
    return f"--ft-dir {input.finetuned}"


def guidance(wildcards):
    return fxconfig.target_guidance(target(wildcards), wildcards.method, wildcards.ft)


def min_threshold_arg():
    value = config.get("clustering", {}).get("min_threshold", 0.6)
    return "none" if value is None else value


def finetune_params(ft):
    return dict(config["finetune"][ft])


wildcard_constraints:
    set="[A-Za-z0-9][A-Za-z0-9_.-]*",
    ft="dreambooth|lora|none",
    method="direct|cfg|finextract|finextract_uncond",
    shard=r"\d{6}-\d{6}",
    multiple=r"\d+",
