"""Reading the workflow config: what to run, and semantic checks before any heavy work.

The JSON schema (workflow/schemas/config.schema.yaml) checks shapes and types; the checks
here need the file system: do the private sets load, is w' positive, does the SSCD model load,
does the base model exist. Each error names the key or file and what was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import load_private_set

FT_METHODS = ("dreambooth", "lora")
CONTROL_FT = "none"
CONTROL_METHOD = "direct"
# Paper defaults (Sec. 5.1), used when a method gives no w / k.
DEFAULT_W = {"cfg": {"dreambooth": 3.0, "lora": 3.0}, "finextract": {"dreambooth": 3.0, "lora": 5.0},
             "finextract_uncond": {"dreambooth": 3.0, "lora": 5.0}}
DEFAULT_K = {"finextract": {"dreambooth": -0.02, "lora": -0.02}}


class ConfigError(ValueError):
    """The configuration cannot be run; the message names the key and what was expected."""


@dataclass(frozen=True)
class Combo:
    """One row of the result table: a private set, a fine-tuning method and a sampling method."""

    set: str
    ft: str
    method: str


def schema_path() -> Path:
    return Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


def enabled_ft_methods(config: dict) -> list[str]:
    ft = config.get("finetune", {})
    return [m for m in FT_METHODS if m in ft and ft[m].get("enabled", True)]


def combos(config: dict) -> list[Combo]:
    sampling = config["sampling"]
    out = [Combo(s, ft, method) for s in config["private_sets"] for ft in enabled_ft_methods(config)
           for method in sampling["methods"]]
    if sampling.get("control", True):
        out += [Combo(s, CONTROL_FT, CONTROL_METHOD) for s in config["private_sets"]]
    return out


def per_ft_value(value: Any, ft: str, default: float, key: str) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    if ft in value:
        return float(value[ft])
    return default


def guidance_params(config: dict, method: str, ft: str) -> tuple[float, float]:
    """(w', k) for a sampling method under a fine-tuning method; direct uses w' = 1, k = 0."""
    spec = config["sampling"]["methods"].get(method, {}) or {}
    ft_key = ft if ft in FT_METHODS else "dreambooth"
    w = per_ft_value(spec.get("w"), ft_key, DEFAULT_W.get(method, {}).get(ft_key, 1.0),
                     f"sampling.methods.{method}.w")
    k = per_ft_value(spec.get("k"), ft_key, DEFAULT_K.get(method, {}).get(ft_key, 0.0),
                     f"sampling.methods.{method}.k")
    return w, k


def n_generated(config: dict, n0: int) -> int:
    return int(config["sampling"]["n_per_image"]) * n0


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


def check_config(config: dict, resolution: int | None = None) -> dict[str, int]:
    """Semantic checks; returns N0 per private set. Raises ConfigError before any job runs."""
    for method, spec in config["sampling"]["methods"].items():
        for ft in FT_METHODS:
            w, _ = guidance_params(config, method, ft)
            if w <= 0:
                raise ConfigError(f"sampling.methods.{method}.w = {w} for {ft}: w' must be > 0")
    if not enabled_ft_methods(config):
        raise ConfigError("finetune: enable at least one of dreambooth, lora")
    n0 = {}
    for name, spec in config["private_sets"].items():
        try:
            private = load_private_set(name, spec["folder"], resolution or 32, spec.get("caption"))
        except ValueError as error:
            raise ConfigError(f"private_sets.{name}: {error}") from error
        n0[name] = private.n0
    sscd = config.get("sscd", {})
    calibration = sscd.get("calibration")
    if calibration and not Path(calibration).exists():
        raise ConfigError(f"sscd.calibration: file {calibration} does not exist "
                          "(set it to null for raw SSCD descriptors)")
    from .similarity import check_descriptor_model

    try:
        check_descriptor_model(sscd.get("model", "distilled"))
    except ValueError as error:
        raise ConfigError(f"sscd.model: {error}") from error
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


SAMPLING_DEFAULTS = {"n_per_image": 50, "steps": 50, "seed_offset": 0, "shard_size": 100, "batch_size": 25}


def is_realworld(config: dict) -> bool:
    return "targets" in config


def _finetuned_kind(spec: str) -> tuple[str, str]:
    return ("lora", spec[len("lora:"):]) if spec.startswith("lora:") else ("dreambooth", spec)


def attack_targets(config: dict, n0: dict[str, int] | None = None) -> dict[str, AttackTarget]:
    if not is_realworld(config):
        sampling = {**SAMPLING_DEFAULTS, **config["sampling"]}
        options = {"allow_pickle": bool(config.get("allow_pickle", False)),
                   "base_kind": config.get("base_kind", "auto"), "precision": config.get("precision", "auto"),
                   "device": config.get("device", "auto")}
        return {name: AttackTarget(name, config["base_model"], spec.get("caption"), spec["folder"],
                                   (n0 or {}).get(name, 0), enabled_ft_methods(config),
                                   config["sampling"]["methods"], sampling, {}, options)
                for name, spec in config["private_sets"].items()}
    defaults = config.get("defaults", {})
    out = {}
    for target in config["targets"]:
        merged = {**defaults, **target}
        ft, spec = _finetuned_kind(merged["finetuned"])
        sampling = {**SAMPLING_DEFAULTS, **{k: merged[k] for k in SAMPLING_DEFAULTS if k in merged}}
        options = {"allow_pickle": bool(merged.get("allow_pickle", False)),
                   "base_kind": merged.get("kind", "auto"), "precision": merged.get("precision", "auto"),
                   "device": merged.get("device", "auto")}
        for key in ("config", "variant", "lora_weight_name", "resolution"):
            if merged.get(key) is not None:
                options[key] = merged[key]
        out[merged["name"]] = AttackTarget(merged["name"], merged["pretrained"], merged["caption"],
                                           merged.get("images"), int(merged["n0"]), [ft],
                                           merged.get("methods", {"direct": {}, "cfg": {}, "finextract": {}}),
                                           sampling, {ft: spec}, options)
    return out


def target_combos(targets: dict[str, AttackTarget], control: bool = True) -> list[Combo]:
    out = [Combo(t.name, ft, method) for t in targets.values() for ft in t.ft_methods for method in t.methods]
    if control:
        out += [Combo(t.name, CONTROL_FT, CONTROL_METHOD) for t in targets.values()]
    return out


def target_guidance(target: AttackTarget, method: str, ft: str) -> tuple[float, float]:
    return guidance_params({"sampling": {"methods": target.methods}}, method, ft)


def check_realworld(config: dict) -> dict[str, AttackTarget]:
    """Checks that need no model download: names unique, w' > 0, scoring folders load."""
    targets = attack_targets(config)
    if len(targets) != len(config["targets"]):
        raise ConfigError("targets: names must be unique")
    for target in targets.values():
        for method in target.methods:
            w, _ = target_guidance(target, method, target.ft_methods[0])
            if w <= 0:
                raise ConfigError(f"targets.{target.name}.methods.{method}.w = {w}: w' must be > 0")
        if target.n0 < 2:
            raise ConfigError(f"targets.{target.name}.n0 = {target.n0}: need at least 2 training images")
        if target.images and not Path(target.images).exists():
            print(f"warning: targets.{target.name}.images: {target.images} does not exist; "
                  "this target is sampled and clustered but not scored", flush=True)
            target.images = None
        if target.images:
            try:
                load_private_set(target.name, target.images, 32, target.caption or "-")
            except ValueError as error:
                raise ConfigError(f"targets.{target.name}.images: {error}") from error
    return targets
