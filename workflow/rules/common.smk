# Config validation (schema, then semantic checks that touch the file system) runs while the
# DAG is built, so a bad config fails before any job starts.
import glob
import shlex
import sys

from snakemake.utils import validate

from finextract import config as fxconfig

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

PY = sys.executable
FX = f"{PY} -m finextract"
RESULTS = config.get("results", "results")
try:
    N0 = fxconfig.check_config(config)
except fxconfig.ConfigError as error:
    raise WorkflowError(f"config error: {error}")
COMBOS = fxconfig.combos(config)
SAMPLING = config["sampling"]


def set_folder(wildcards):
    return config["private_sets"][wildcards.set]["folder"]


def set_caption_arg(wildcards):
    caption = config["private_sets"][wildcards.set].get("caption")
    return f"--caption {shlex.quote(caption)}" if caption else ""


def shards_of(set_name):
    return fxconfig.seed_shards(fxconfig.n_generated(config, N0[set_name]),
                                SAMPLING["shard_size"], SAMPLING["seed_offset"])


def shard_dirs(wildcards):
    return expand(f"{RESULTS}/samples/{{set}}/{{ft}}/{{method}}/shard_{{shard}}",
                  set=wildcards.set, ft=wildcards.ft, method=wildcards.method,
                  shard=shards_of(wildcards.set))


def finetune_output(wildcards):
    if wildcards.ft == fxconfig.CONTROL_FT:
        return []
    return f"{RESULTS}/finetune/{wildcards.set}/{wildcards.ft}"


def finetune_params(ft):
    return dict(config["finetune"][ft])



wildcard_constraints:
    set="[A-Za-z0-9][A-Za-z0-9_.-]*",
    ft="dreambooth|lora|none",
    method="direct|cfg|finextract|finextract_uncond",
    shard=r"\d{6}-\d{6}",
