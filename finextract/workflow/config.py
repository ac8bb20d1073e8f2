"""Reading the workflow config: what to run, and every check that runs before the first job.

:func:`validate_config` is what the Snakefile runs while the DAG is built: the JSON schema
(``workflow/schemas/*.schema.yaml``, whose ``default:``\\ s are the only defaults — snakemake's
``validate`` fills them in), then the checks that need the file system or arithmetic the schema
cannot express: numbers are finite, private sets load, the base model and fine-tuned checkpoints
exist where they are local, the SSCD model is a model file, the results folder is a folder. Each
error names the config key or file and what was expected; notes (things that run, but perhaps
not as the user thinks) go to stderr with ``note:`` in front.

This module holds the plan (which targets, fine-tuning and sampling methods, shards) and the checks of the
config's sections; reading a file and the schema live in :mod:`~finextract.workflow.config_file`, the checks of
the files and models a config names in :mod:`~finextract.workflow.model_checks`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finextract.private_set import load_private_set
from finextract.backbones.specs import finetuned_kind
from finextract.workflow.config_file import validate_schema, check_key_names, expand_home
from finextract.workflow.config_messages import ConfigError, note
from finextract.workflow.model_checks import (check_base_kind, check_base_model, check_caption_length, check_device, check_finetuned, check_fits_base, check_lora_targets, check_results, check_sscd, check_taus)

FT_METHODS = ("dreambooth", "lora")
CONTROL_FT = "none"
CONTROL_METHOD = "direct"
# Seed shard names, "first-last" with at least six digits each: the rules' wildcard constraint.
SHARD_PATTERN = r"\d{6}\d*-\d{6}\d*"


@dataclass(frozen=True)
class Combo:
    """One row of the result table: a private set, a fine-tuning method and a sampling method."""

    set: str
    ft: str
    method: str


def enabled_ft_methods(config: dict) -> list[str]:
    ft = config.get("finetune", {})
    return [m for m in FT_METHODS if m in ft and ft[m]["enabled"]]


AUTO = "auto"  # w: auto — chosen per target from the generated images (finextract.experiments.auto_w)


def per_ft_value(value: Any, ft: str, key: str) -> float | str:
    """A number (or ``auto``) given once for every fine-tuning method, or per method ({dreambooth: .., lora: ..})."""
    if value == AUTO:
        return AUTO
    if isinstance(value, (int, float)):
        return float(value)
    if ft in value:
        return value[ft] if value[ft] == AUTO else float(value[ft])
    raise ConfigError(f"{key}: no value for {ft} (give one number, or one per fine-tuning method: "
                      f"{{{', '.join(f'{m}: ...' for m in FT_METHODS)}}})")


def guidance_params(methods: dict, method: str, ft: str, key: str = "sampling.methods") -> tuple[float | str, float]:
    """(w', k) of a sampling method under a fine-tuning method.

    Direct sampling is w' = 1, k = 0 by definition; CFG has no k. The paper's values are the
    schema's defaults, so a method listed without w / k gets them from there.
    """
    spec = methods.get(method) or {}
    ft_key = ft if ft in FT_METHODS else "dreambooth"  # the control row samples θ with direct (w' = 1)
    w = per_ft_value(spec["w"], ft_key, f"{key}.{method}.w") if "w" in spec else 1.0
    k = per_ft_value(spec["k"], ft_key, f"{key}.{method}.k") if "k" in spec else 0.0
    if k == AUTO:
        raise ConfigError(f"{key}.{method}.k: 'auto' is for w' only; give k as a number")
    return w, k


def seed_shards(n_images: int, shard_size: int, offset: int = 0) -> list[str]:
    """Shard names 'first-last' (inclusive seeds); boundaries depend only on shard_size."""
    names = []
    for start in range(0, n_images, shard_size):
        end = min(start + shard_size, n_images) - 1
        names.append(f"{offset + start:06d}-{offset + end:06d}")
    return names


def shard_seeds(shard: str) -> list[int]:
    first, last = (int(x) for x in shard.split("-"))
    return list(range(first, last + 1))




# --- validation: schema, then the checks a schema cannot make --------------------------------


def validate_config(config: dict, schema_dir: str | Path, *, local_exec: bool = True) -> dict[str, AttackTarget]:
    """Everything the Snakefile checks before building the DAG; returns the attack targets.

    ``local_exec``: jobs run on this machine, so a requested CUDA device must exist here (on a
    cluster, the submit host need not have the GPUs the jobs get).
    """
    schema_dir = Path(schema_dir)
    check_key_names(config)
    if is_realworld(config):
        validate_schema(config, schema_dir / "realworld.schema.yaml")
        expand_home(config)
        targets = check_realworld(config)
    else:
        asked_for_defences = "defences" in config  # the schema's defaults must not fail a config without them
        asked_for_sweep = "n_sweep" in config
        validate_schema(config, schema_dir / "config.schema.yaml")
        expand_home(config)
        targets = attack_targets(config, check_config(config))
        if asked_for_sweep:
            check_sweep(config)
        check_study(config.get("study") or {}, targets)
        missing = [m for m in config["defences"]["methods"] if m != "direct" and m not in config["sampling"]["methods"]]
        if asked_for_defences and missing:
            raise ConfigError(f"defences.methods: {', '.join(missing)} not in sampling.methods, which give w' and k")
        check_n0_ablation(config["n0_ablation"], targets)
    if config.get("audit"):
        # validated again on its own: defaults under a $ref are not filled in by the whole-config pass
        validate_schema(config["audit"], schema_dir / "audit.schema.yaml", prefix="audit")
        check_audit(config["audit"], targets)
    check_results(config["results"])
    note_scale(config, targets)
    if local_exec:
        for target in targets.values():
            key = f"targets.{target.name}.device" if target.realworld else "device"
            check_device(target.load_options["device"], key)
    return targets


def check_interval(interval, key: str) -> None:
    lo, hi = interval
    if lo > hi:
        raise ConfigError(f"{key}: {list(interval)}: the first timestep must not exceed the second "
                          "([lo, hi] of the 1000 training steps; [0, 1000]: guide everywhere)")


def check_sweep(config: dict) -> None:
    """An explicit n_sweep section selects at least one (fine-tuning, sampling) method pair that runs."""
    sweep = config["n_sweep"]
    off = [ft for ft in sweep["ft"] if ft not in enabled_ft_methods(config)]
    if off:
        raise ConfigError(f"n_sweep.ft: {', '.join(off)} is not enabled (finetune.<method>.enabled; enabled: "
                          f"{', '.join(enabled_ft_methods(config))})")
    missing = [m for m in sweep["methods"] if m not in config["sampling"]["methods"]]
    if missing:
        raise ConfigError(f"n_sweep.methods: {', '.join(missing)} not in sampling.methods "
                          f"({', '.join(config['sampling']['methods'])}), which give w' and k")


def check_study(study: dict, targets: dict[str, AttackTarget]) -> None:
    unknown = [s for s in study.get("sets", []) if s not in targets]
    if unknown:
        raise ConfigError(f"study.sets: {', '.join(map(str, unknown))} not in private_sets ({', '.join(targets)})")
    for i, variant in enumerate(study.get("variants", [])):
        if "interval" in variant:
            check_interval(variant["interval"], f"study.variants.{i}.interval")


LARGE_RUN_IMAGES = 100_000


def note_scale(config: dict, targets: dict[str, AttackTarget]) -> None:
    """A config that samples more than 10^5 images is said so before its jobs are planned."""
    combos = target_combos(targets, config.get("defaults" if is_realworld(config) else "sampling", {}).get(
        "control", True))
    images = sum(targets[c.set].sampling["n_per_image"] * targets[c.set].n0 for c in combos)
    if images > LARGE_RUN_IMAGES:
        shards = sum(len(seed_shards(targets[c.set].sampling["n_per_image"] * targets[c.set].n0,
                                     targets[c.set].sampling["shard_size"])) for c in combos)
        note(f"sampling plans {images:,} images in {shards:,} sampling jobs ({len(combos)} combinations of "
             "set, fine-tuning and method; sampling.n_per_image x N0 each): hours of GPU time; the paper's "
             "setting is 50 per image")


def check_n0_ablation(section: dict, targets: dict[str, AttackTarget]) -> None:
    """The sets of an N0 ablation exist, differ in size and share one caption (else the curve mixes them)."""
    names = section["sets"]
    if not names:
        return
    if len(names) < 2:
        raise ConfigError("n0_ablation.sets: name at least two private sets of different sizes")
    unknown = [n for n in names if n not in targets]
    if unknown:
        raise ConfigError(f"n0_ablation.sets: {', '.join(unknown)} not in private_sets ({', '.join(targets)})")
    sizes = [targets[n].n0 for n in names]
    if len(set(sizes)) < len(sizes):
        raise ConfigError(f"n0_ablation.sets: two sets have the same number of images ({dict(zip(names, sizes))})")
    from finextract.private_set import read_caption

    captions = {targets[n].caption if targets[n].caption is not None else read_caption(Path(targets[n].images))
                for n in names}
    if len(captions) > 1:
        raise ConfigError(f"n0_ablation.sets: the sets have different captions ({sorted(map(str, captions))}); "
                          "an N0 curve compares one style and caption")


def check_config(config: dict) -> dict[str, int]:
    """Semantic checks of a schema-validated config; returns N0 per private set."""
    methods = config["sampling"]["methods"]
    ft_methods = enabled_ft_methods(config)
    if not ft_methods:
        raise ConfigError("finetune: enable at least one of dreambooth, lora")
    for method in methods:
        for ft in ft_methods:
            guidance_params(methods, method, ft)
    check_interval(config["sampling"]["guidance_interval"], "sampling.guidance_interval")
    check_taus(config["metrics"]["taus"])
    check_base_model(config["base_model"], "base_model")
    check_base_kind(config["base_kind"], config["base_model"], "base_kind")
    if "lora" in ft_methods:
        check_lora_targets(config["finetune"]["lora"]["targets"], config["base_model"], "finetune.lora.targets")
    n0 = {}
    folders: dict[Path, str] = {}
    for name, spec in config["private_sets"].items():
        try:
            private = load_private_set(name, spec["folder"], 32, spec.get("caption"))
        except ValueError as error:
            raise ConfigError(f"private_sets.{name}: {error}") from None
        for text in private.notes:
            if text is not private.routine_resize:  # resizing one size to the base's is normal
                note(f"private_sets.{name}: {text}")
        same = folders.setdefault(Path(spec["folder"]).resolve(), name)
        if same != name:
            note(f"private_sets.{name} and private_sets.{same} use the same folder {spec['folder']}: "
                 "both are fine-tuned and attacked (on purpose, with other captions?)")
        check_caption_length(name, private.caption, config["base_model"])
        n0[name] = private.n0
    check_sscd(config["sscd"])
    return n0


# --- one plan for both modes ---------------------------------------------------------------
@dataclass
class AttackTarget:
    """One row group of the results: a private set we fine-tune on, or a published checkpoint.

    ``finetuned`` maps a fine-tuning method to an existing checkpoint (real-world mode); when it is
    empty, the workflow fine-tunes ``base`` itself on ``images``.
    """

    name: str
    base: str
    caption: str | None
    images: str | None
    n0: int
    ft_methods: list[str]
    methods: dict
    sampling: dict
    finetuned: dict[str, str]
    load_options: dict

    @property
    def realworld(self) -> bool:
        return bool(self.finetuned)

    @property
    def extracts_caption(self) -> bool:
        """Real-world ``caption: extract``: the training caption is recovered from the weights first."""
        return self.realworld and self.caption == EXTRACT_CAPTION


EXTRACT_CAPTION = "extract"  # targets[].caption: recover it from θ and θ' (finextract.experiments.caption_extraction) before sampling

SAMPLING_KEYS = ("n_per_image", "steps", "scheduler", "guidance_interval", "auto_w_candidates", "seed_offset",
                 "shard_size", "batch_size", "memory")


def is_realworld(config: dict) -> bool:
    return "targets" in config


def attack_targets(config: dict, n0: dict[str, int] | None = None) -> dict[str, AttackTarget]:
    """The attack targets of a schema-validated config (defaults already filled in)."""
    if not is_realworld(config):
        options = {"allow_pickle": config["allow_pickle"], "base_kind": config["base_kind"],
                   "precision": config["precision"], "device": config["device"]}
        return {name: AttackTarget(name, config["base_model"], spec.get("caption"), spec["folder"],
                                   (n0 or {}).get(name, 0), enabled_ft_methods(config),
                                   config["sampling"]["methods"], config["sampling"], {}, options)
                for name, spec in config["private_sets"].items()}
    out = {}
    for target in config["targets"]:
        merged = {**config["defaults"], **target}
        ft, spec = finetuned_kind(merged["finetuned"])
        options = {"allow_pickle": merged["allow_pickle"], "base_kind": merged.get("kind", "auto"),
                   "precision": merged["precision"], "device": merged["device"]}
        for key in ("config", "variant", "lora_weight_name", "resolution"):
            if merged.get(key) is not None:
                options[key] = merged[key]
        out[merged["name"]] = AttackTarget(merged["name"], merged["pretrained"], merged["caption"],
                                           merged.get("images"), int(merged["n0"]), [ft], merged["methods"],
                                           {k: merged[k] for k in SAMPLING_KEYS}, {ft: spec}, options)
    return out


def target_combos(targets: dict[str, AttackTarget], control: bool = True) -> list[Combo]:
    out = [Combo(t.name, ft, method) for t in targets.values() for ft in t.ft_methods for method in t.methods]
    if control:
        out += [Combo(t.name, CONTROL_FT, CONTROL_METHOD) for t in targets.values()]
    return out


def target_guidance(target: AttackTarget, method: str, ft: str) -> tuple[float, float]:
    key = f"targets.{target.name}.methods" if target.realworld else "sampling.methods"
    return guidance_params(target.methods, method, ft, key)


def check_realworld(config: dict) -> dict[str, AttackTarget]:
    """Checks that need no model download: names unique, paths exist, scoring folders load."""
    targets = attack_targets(config)
    if len(targets) != len(config["targets"]):
        raise ConfigError("targets: names must be unique")
    for index, target in enumerate(targets.values()):
        if target.extracts_caption and target.load_options["base_kind"] == "sdxl":
            raise ConfigError(f"targets[{index}].caption ({target.name}): 'extract' works with one text encoder "
                              "(the tiny world, SD 1.x/2.x, AltDiffusion), not SDXL's two; give the caption")
        for method in target.methods:
            target_guidance(target, method, target.ft_methods[0])
        check_interval(target.sampling["guidance_interval"], f"targets[{index}].guidance_interval ({target.name})")
        check_base_model(target.base, f"targets[{index}].pretrained ({target.name})")
        check_finetuned(config["targets"][index]["finetuned"], f"targets[{index}].finetuned ({target.name})")
        check_fits_base(target.base, config["targets"][index]["finetuned"],
                        f"targets[{index}].finetuned ({target.name})")
        if target.images and not Path(target.images).exists():
            note(f"targets.{target.name}.images: {target.images} does not exist; "
                 "this target is sampled and clustered but not scored")
            target.images = None
        if target.images:
            try:
                load_private_set(target.name, target.images, 32,
                                 "-" if target.extracts_caption else (target.caption or "-"))
            except ValueError as error:
                raise ConfigError(f"targets.{target.name}.images: {error}") from None
    check_sscd(config["sscd"])
    return targets


@dataclass(frozen=True)
class AuditCase:
    """One audited suspect: an attack target's fine-tuned model under one fine-tuning method."""

    name: str
    target: str
    ft: str
    candidates: str


def audit_cases(audit: dict, targets: dict[str, AttackTarget]) -> list[AuditCase]:
    return [AuditCase(name, spec["target"], ft, spec["candidates"])
            for name, spec in audit["suspects"].items() for ft in targets[spec["target"]].ft_methods]


def check_audit(audit: dict, targets: dict[str, AttackTarget]) -> None:
    """Before any sampling: each suspect names a target that is fine-tuned, its methods are sampled
    for that target, and its candidates are readable images of one size (with valid labels)."""
    from finextract.audit.extraction import AuditInputError, candidate_files, check_candidate_sizes, check_reference, read_labels

    for name, spec in audit["suspects"].items():
        key = f"audit.suspects.{name}"
        target = targets.get(spec["target"])
        if target is None:
            raise ConfigError(f"{key}.target: {spec['target']!r} is not an attack target "
                              f"(targets here: {', '.join(targets) or 'none'})")
        if not target.ft_methods:
            raise ConfigError(f"{key}.target: {spec['target']} has no fine-tuned model (enable finetune.dreambooth "
                              "or finetune.lora)")
        missing = [m for m in audit["methods"] if m not in target.methods]
        if missing:
            where = f"targets.{target.name}.methods" if target.realworld else "sampling.methods"
            raise ConfigError(f"audit.methods: {', '.join(missing)} not in {where} of {target.name} "
                              f"(the audit searches the workflow's own samples; sampled: {', '.join(target.methods)})")
        for field_name in ("candidates", "reference"):
            if spec.get(field_name) and Path(spec[field_name]).is_file():
                raise ConfigError(f"{key}.{field_name}: {spec[field_name]} is a file; expected a folder of images")
        try:
            files = candidate_files(spec["candidates"])
            check_candidate_sizes(files)
            read_labels(spec["candidates"], files)
        except AuditInputError as error:
            raise ConfigError(f"{key}.candidates: {error}") from None
        smallest_p = 1.0 / (1 + audit["control_draws"] * len(files))  # finextract.audit.pvalues.empirical_p
        if smallest_p > 0.05:
            note(f"{key}: no p-value of this audit can be below {smallest_p:.3g} (1 / (1 + audit.control_draws "
                 f"{audit['control_draws']} x {len(files)} candidates)), so none reaches p <= 0.05; raise "
                 "audit.control_draws")
        if spec.get("reference"):
            try:
                check_reference(spec["reference"], files)
            except AuditInputError as error:
                raise ConfigError(f"{key}.reference: {error}") from None
