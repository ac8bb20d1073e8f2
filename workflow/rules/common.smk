# Config validation (schema with its defaults, then the checks that touch the file system) runs
# while the DAG is built, so a bad config fails before any job starts: finextract.workflow.config.validate_config,
# the same function the tests call. Both modes — the embedded default (private sets we fine-tune on)
# and real-world mode (published checkpoints, `targets:`) — become one list of attack targets that
# the rules read. All helper functions of the rules live here.
import functools
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.iocontainers import Wildcards

from finextract.workflow import config as fxconfig
from finextract.workflow import provenance
from finextract.private_set import image_files, read_caption
from finextract.training.snapshots import snapshot_name
from finextract.experiments.study import Variant, study_variants

# The CLI that every shell command runs, with the interpreter that runs Snakemake, is $FINEXTRACT in
# the jobs' environment. Not a params entry, because params are provenance: a job would rerun
# whenever the venv moves. (Set, not read, here; each job process re-parses this file and sets it.)
FX = f"{shlex.quote(sys.executable)} -m finextract"
os.environ.update(FINEXTRACT=FX)
try:
    TARGETS = fxconfig.validate_config(config, Path(workflow.basedir) / "schemas", local_exec=workflow.local_exec)
except fxconfig.ConfigError as error:
    raise WorkflowError(f"config error: {error}")

RESULTS = config["results"]
CONTROL = config["defaults" if fxconfig.is_realworld(config) else "sampling"]["control"]
COMBOS = fxconfig.target_combos(TARGETS, CONTROL)
SCORED = [c for c in COMBOS if TARGETS[c.set].images]
N0 = {name: target.n0 for name, target in TARGETS.items()}
TAUS = " ".join(str(t) for t in config["metrics"]["taus"])
N0_SETS = config.get("n0_ablation", {}).get("sets", [])  # absent in real-world mode
SWEEP = config["n_sweep"]
SWEEP_MULTIPLES = sorted(SWEEP["n_per_image"])
SWEEP_COMBOS = [c for c in COMBOS if c.ft in SWEEP["ft"] and c.method in SWEEP["methods"] and c in SCORED]


def target(wildcards):
    return TARGETS[wildcards.set]


def set_folder(wildcards):
    return target(wildcards).images


def private_images(wildcards):
    """The images the jobs load, listed (not globbed: a folder may be named `set [1]`)."""
    folder = target(wildcards).images
    return [str(p) for p in image_files(Path(folder))] if folder else []


# Provenance: content digests as params, so Snakemake reruns a job when what it reads changes, whatever the
# file times say (docs/reliability.md). Remembered per (path, size, times, inode) in .snakemake/ of the working
# directory, and per process here: params are evaluated for every job of the DAG.
provenance.use_cache(Path(".snakemake") / "finextract-digests.json")


@functools.cache
def _digest(kind, spec):
    value = provenance.weights_digest(spec) if kind == "weights" else provenance.image_set_digest(spec)
    provenance.save_cache()
    return value


def weights_digest(wildcards):
    """θ's weights (and a real-world target's local θ'): a new model at the same path reruns what used it."""
    t = target(wildcards)
    digests = [_digest("weights", t.base)]
    if t.realworld and wildcards.get("ft", fxconfig.CONTROL_FT) != fxconfig.CONTROL_FT:
        digests.append(_digest("weights", t.finetuned[wildcards.ft]))
    return " ".join(digests)


def images_digest(wildcards):
    """The private images' names and bytes: an image replaced by one with an older mtime still reruns."""
    folder = target(wildcards).images
    return _digest("images", folder) if folder else ""


def extracted_caption(wildcards):
    """The folder of the extract_caption job (its caption.txt) for a `caption: extract` target, else nothing.
    A real-world target has one fine-tuning method; its never-fine-tuned control uses the same caption."""
    t = target(wildcards)
    return [f"{RESULTS}/captions/{t.name}/{t.ft_methods[0]}"] if t.extracts_caption else []


@functools.cache
def _caption_text(set_name):
    t = TARGETS[set_name]
    return t.caption if t.caption is not None else read_caption(Path(t.images))


def caption_args(wildcards):
    """The caption as a param (its text, so editing caption.txt reruns fine-tuning and sampling), passed as
    one `--caption=TEXT` word: a caption starting with @ or - is text, never a file or a flag. A
    `caption: extract` target reads the extracted caption.txt, an input of its jobs, with --caption-file."""
    t = target(wildcards)
    if t.extracts_caption:
        return f"--caption-file {shlex.quote(os.path.join(extracted_caption(wildcards)[0], 'caption.txt'))}"
    return shlex.quote(f"--caption={_caption_text(t.name)}")


def true_caption_args(wildcards):
    """What extract_caption scores its recall against: the known caption, none for `caption: extract`."""
    return "" if target(wildcards).extracts_caption else caption_args(wildcards)


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
    return fxconfig.seed_shards(t.sampling["n_per_image"] * t.n0, t.sampling["shard_size"], t.sampling["seed_offset"])


def shard_dirs(wildcards):
    return expand(
        f"{RESULTS}/samples/{{set}}/{{ft}}/{{method}}/shard_{{shard}}",
        set=wildcards.set,
        ft=wildcards.ft,
        method=wildcards.method,
        shard=shards_of(wildcards.set),
    )


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
    return f"--ft-dir {shlex.quote(input.finetuned)}"


def sample_command(
    *,
    finetuned="{params.finetuned} ",
    ft="{wildcards.ft}",
    method="{wildcards.method}",
    w="{params.w}",
    k="{params.k}",
    interval="{params.interval}",
    seeds="{wildcards.shard}",
):
    """The `finextract sample` command of every sampling rule, its options written once.

    Each rule says only where its values come from (a wildcard, a param, a constant) and appends its log
    redirection. The other values are params that every sampling rule has (load, caption, steps, scheduler,
    batch_size).
    """
    return (
        f"$FINEXTRACT sample {{params.load}} {finetuned}--ft-method {ft} {{params.caption}} "
        f"--method {method} --w {w} --k {k} --steps {{params.steps}} --scheduler {{params.scheduler}} "
        f"--guidance-interval {interval} --seeds {seeds} --batch-size {{params.batch_size}} "
        "--threads {threads} --out {output:q}"
    )


def embed_command(source="--images {input:q}"):
    """The `finextract embed` command of every rule that embeds (generated images, a private set, audit
    candidates): what to embed, then the SSCD options and the two outputs every one of them writes."""
    return (
        f"$FINEXTRACT embed {source} {{params.sscd}} --threads {{threads}} "
        "--out {output.embeddings:q} --order {output.order:q}"
    )


def subshell(*commands):
    """Commands run one after the other, stopping at the first that fails, as one job with one log."""
    return "(" + " && ".join(commands) + ")"


def sampling_load_args(wildcards):
    """θ and how to load it, and for DreamBooth rows how θ is held beside θ' (`sampling.memory`).

    A lossy mode moves θ's predictions, so changing the key must rerun DreamBooth sampling: it rides on this
    param because Snakemake records no param that reads `input` (the checkpoint's). Written only when it is
    not the default, so a run that never sets the key keeps the params its results were made with.
    """
    memory = target(wildcards).sampling["memory"]
    held = f" --memory {memory}" if wildcards.ft == "dreambooth" and memory != "two-unets" else ""
    return load_args(wildcards) + held


def guidance(wildcards):
    return fxconfig.target_guidance(target(wildcards), wildcards.method, wildcards.ft)


def min_threshold_arg():
    value = config["clustering"]["min_threshold"]
    return "none" if value is None else value


def without_default_augment(hyper):
    """`augment: none` is left out of the params, so configs from before the key existed keep their jobs."""
    return {k: v for k, v in hyper.items() if not (k == "augment" and v == "none")}


def finetune_params(ft):
    return without_default_augment(config["finetune"][ft])


def sscd_args():
    sscd = config["sscd"]
    calibration = sscd["calibration"]
    return (
        f"--model {shlex.quote(str(sscd['model']))} "
        f"--calibration {shlex.quote(str(calibration)) if calibration else 'none'} "
        f"--resolution {sscd['resolution']} --batch-size {sscd['batch_size']} "
        f"--prefilter-sigma {'auto' if sscd.get('prefilter_sigma') is None else sscd['prefilter_sigma']}"
    )


def sweep_shard_dirs(wildcards):
    t = target(wildcards)
    n_images = max(SWEEP_MULTIPLES) * t.n0
    shards = fxconfig.seed_shards(n_images, t.sampling["shard_size"], t.sampling["seed_offset"])
    return expand(
        f"{RESULTS}/samples/{{set}}/{{ft}}/{{method}}/shard_{{shard}}",
        set=wildcards.set,
        ft=wildcards.ft,
        method=wildcards.method,
        shard=shards,
    )


# --- w: auto (rules/auto_w.smk) ---
def is_auto_w(wildcards):
    return guidance(wildcards)[0] == fxconfig.AUTO


def auto_w_choice_file(wildcards):
    if wildcards.ft == fxconfig.CONTROL_FT or not is_auto_w(wildcards):
        return []
    return f"{RESULTS}/auto_w/{wildcards.set}/{wildcards.ft}/{wildcards.method}/choice.json"


def sample_w(wildcards):
    """w' for the sampling command: the number, or @choice.json when it is `auto`. A function of the
    wildcards only (not of input), so that a changed w' is a params change Snakemake reruns for."""
    choice = auto_w_choice_file(wildcards)
    return f"@{choice}" if choice else guidance(wildcards)[0]


def auto_w_scores(wildcards):
    return [
        f"{RESULTS}/auto_w/{wildcards.set}/{wildcards.ft}/{wildcards.method}/w{w:g}.csv"
        for w in target(wildcards).sampling["auto_w_candidates"]
    ]


def auto_w_shards(wildcards):
    return expand(
        f"{RESULTS}/auto_w/{{set}}/{{ft}}/{{method}}/w{{w}}/shard_{{shard}}",
        set=wildcards.set,
        ft=wildcards.ft,
        method=wildcards.method,
        w=wildcards.w,
        shard=shards_of(wildcards.set),
    )


# --- the guidance study (rules/study.smk) ---
STUDY = config.get("study")  # absent in real-world mode, which has no study
STUDY_SETS = (STUDY["sets"] or [name for name in TARGETS if TARGETS[name].images]) if STUDY else []
STUDY_ROOT = f"{RESULTS}/study"


def study_points():
    return [
        f"{STUDY_ROOT}/points/{s}/{ft}/seed{seed}/spi{spi}/{v.id}.csv"
        for s in STUDY_SETS
        for ft in STUDY["ft"]
        for seed in STUDY["seeds"]
        for spi in sorted(STUDY["steps_per_image"])
        for v in study_variants(STUDY, ft, seed)
    ]


def default_recipe_points():
    """The default-recipe rule's inputs: direct sampling at every rung, for the rule's own seeds."""
    return [
        f"{STUDY_ROOT}/points/{s}/{ft}/seed{seed}/spi{spi}/direct.csv"
        for s in STUDY_SETS
        for ft in STUDY["ft"]
        for seed in STUDY["default_rule"]["seeds"]
        for spi in sorted(STUDY["steps_per_image"])
    ]


def study_hyper(ft, seed):
    hyper = {
        **without_default_augment(config["finetune"][ft]),
        "lr": STUDY["lr"][ft],
        "seed": int(seed),
        "steps_per_image": max(STUDY["steps_per_image"]),
    }
    hyper.pop("enabled", None)
    return json.dumps(hyper, sort_keys=True)


def study_seeds(wildcards):
    return f"{0:06d}-{STUDY['n_per_image'] * N0[wildcards.set] - 1:06d}"


def study_variant(wildcards):
    return Variant.from_id(wildcards.variant)


def study_point_cell(wildcards):
    """The cell of a point path: seed<S>/spi<N>/<variant>, or the control (seed -1, 0 steps)."""
    if wildcards.path == "control":
        return "--seed -1 --steps-per-image 0"
    seed, spi, _ = wildcards.path.split("/")
    return f"--seed {seed[len('seed'):]} --steps-per-image {spi[len('spi'):]}"


DEFENCES = config.get("defences")  # absent in real-world mode, which does not fine-tune
DEFENCE_ROOT = f"{RESULTS}/defences"
DEFENCE_METHODS = list(dict.fromkeys(["direct", *DEFENCES["methods"]])) if DEFENCES else []
DEFENCE_SETS = [name for name in TARGETS if TARGETS[name].images] if DEFENCES else []


def defence_hyper(wildcards):
    return json.dumps(
        {**without_default_augment(config["finetune"][wildcards.ft]), "augment": wildcards.augment}, sort_keys=True
    )


def defence_guidance(wildcards):
    w, k = guidance(wildcards)
    if w == fxconfig.AUTO:
        raise WorkflowError(f"defences: sampling.methods.{wildcards.method}.w is auto; the defences need a number")
    return w, k


AUDIT = config.get("audit")
AUDIT_CASES = fxconfig.audit_cases(AUDIT, TARGETS) if AUDIT else []
AUDIT_ROOT = f"{RESULTS}/audit"


wildcard_constraints:
    set="[A-Za-z0-9][A-Za-z0-9_.-]*",
    ft="dreambooth|lora|none",
    method="direct|cfg|finextract|finextract_uncond",
    shard=fxconfig.SHARD_PATTERN,
    multiple=r"\d+",
    w=r"\d+(\.\d+)?",
    augment="none|cutout|randaugment",
    name="|".join(re.escape(n) for n in AUDIT["suspects"]) if AUDIT else "(?!x)x",  # never matches without an audit


# --- the audit (rules/audit.smk; AUDIT itself is set above the wildcard constraints) ---


def audit_spec(wildcards):
    return AUDIT["suspects"][wildcards.name]


def audit_candidate_files(wildcards):
    from finextract.audit.extraction import candidate_files

    return [str(p) for p in candidate_files(audit_spec(wildcards)["candidates"])]


def audit_set(wildcards):
    return audit_spec(wildcards)["target"]


def target_n(set_name):
    """The target's N (n_per_image x N0): the audit's control draws and the defences sample as many."""
    t = TARGETS[set_name]
    return t.sampling["n_per_image"] * t.n0


def audit_control_shards(wildcards):
    t = target(wildcards)
    shards = fxconfig.seed_shards(
        AUDIT["control_draws"] * target_n(wildcards.set), t.sampling["shard_size"], t.sampling["seed_offset"]
    )
    return expand(
        f"{AUDIT_ROOT}/control/{{set}}/{{ft}}/{{method}}/shard_{{shard}}",
        set=wildcards.set,
        ft=wildcards.ft,
        method=wildcards.method,
        shard=shards,
    )


def audit_method_inputs(kind):
    def inputs(wildcards):
        folder = "embeddings" if kind == "generated" else "audit/control"
        return [f"{RESULTS}/{folder}/{audit_set(wildcards)}/{wildcards.ft}/{m}.npy" for m in AUDIT["methods"]]

    return inputs


# --- the membership test (rules/audit.smk) ---

MEMBERSHIP = AUDIT["membership"] if AUDIT else {"enabled": False}


def suspect_wildcards(wildcards):
    """An audit job's {name, ft} as the {set, ft} the target helpers of common.smk read."""
    return Wildcards(fromdict={"set": audit_set(wildcards), "ft": wildcards.ft})


def audit_reference_files(wildcards):
    from finextract.audit.extraction import candidate_files

    folder = audit_spec(wildcards).get("reference")
    return [str(p) for p in candidate_files(folder)] if folder else []


def membership_caption(wildcards):
    """The caption θ' was fine-tuned with: the known one as text, or the file extract-caption wrote."""
    t = TARGETS[audit_set(wildcards)]
    if t.extracts_caption:
        return f"--caption-file {shlex.quote(os.path.join(extracted_caption(suspect_wildcards(wildcards))[0], 'caption.txt'))}"
    return shlex.quote(f"--caption={t.caption if t.caption is not None else read_caption(Path(t.images))}")


def membership_checkpoint(wildcards, input):
    t = TARGETS[audit_set(wildcards)]
    return shlex.quote(t.finetuned[wildcards.ft] if t.realworld else input.finetuned)


def audit_membership_input(wildcards):
    return [f"{AUDIT_ROOT}/{wildcards.name}/{wildcards.ft}/membership.csv"] if MEMBERSHIP["enabled"] else []


def audit_folders_digest(wildcards):
    """The candidate and reference images' names and bytes: a replaced image reruns the membership test."""
    spec = audit_spec(wildcards)
    return " ".join(_digest("images", spec[key]) for key in ("candidates", "reference") if spec.get(key))


# --- the tiny world's next base (rules/world.smk) ---


def committed_pretrain_state(wildcards, output):
    """Resume from the committed portable state when the run folder has none of its own yet."""
    state = Path(workflow.basedir).parent / "resources" / "pretrain-state" / "state.safetensors"
    own = Path(os.path.dirname(output[0])) / "state.pt"
    return f"--init-from {shlex.quote(str(state))}" if state.exists() and not own.exists() else ""
