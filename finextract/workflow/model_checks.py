"""The config's checks of the files and models it names, before any job: the results folder, devices, the base
model and fine-tuned checkpoints (local, cached or hub-shaped; whole; shaped like the base), LoRA targets, the
SSCD model file (an ONNX walk that needs no onnxruntime), τ values and caption lengths. Each error names the
config key or file and what was expected.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from finextract.backbones.specs import WEIGHT_SUFFIXES, hub_shaped

from finextract.backbones.specs import finetuned_kind
from finextract.workflow.config_messages import ConfigError, note


def check_results(results: str) -> None:
    path = Path(results).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"results: {results} is a file; expected a folder (it is created if missing)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"results: {parent} (a parent of {results}) is a file; expected a folder")
            break


def check_device(device: str, key: str) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"{key} = {device}: no CUDA device here (torch {torch.__version__}, CUDA build: "
                          f"{torch.version.cuda or 'no'}); use auto or cpu")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"{key} = {device}: only {torch.cuda.device_count()} CUDA device(s) here")


def _missing_path(key: str, spec: str, what: str) -> ConfigError:
    path = Path(spec).expanduser()
    parent = next((p for p in path.parents if p.is_dir()), None)
    hint = ""
    if parent is not None:
        close = difflib.get_close_matches(path.relative_to(parent).parts[0],
                                          [p.name for p in parent.iterdir()], n=3)
        if close:
            hint = f"; did you mean {', '.join(str(parent / c) for c in close)}?"
    return ConfigError(f"{key}: {spec} does not exist (expected {what}){hint}")


def _hub_cached(repo: str) -> bool:
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}").is_dir()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def check_base_model(spec: str, key: str) -> None:
    """A local base must exist and be a model; a hub id must be reachable (or cached when offline)."""
    what = ("a tiny-world model folder (finextract.json), a diffusers pipeline folder (model_index.json), "
            "a single .safetensors/.ckpt file, or a hub id owner/repo")
    path = Path(spec).expanduser()
    if path.is_dir():
        if not ((path / "finextract.json").is_file() or (path / "model_index.json").is_file()):
            raise ConfigError(f"{key}: {spec} is a folder but not a model: expected {what}")
        return
    if path.is_file():
        if not spec.lower().endswith(WEIGHT_SUFFIXES):
            raise ConfigError(f"{key}: {spec} is a file but not a checkpoint: expected {what}")
        return
    if not hub_shaped(spec):
        raise _missing_path(key, spec, what)
    if not _hub_cached("/".join(spec.split("/")[:2])) and not _offline():
        note(f"{key}: {spec} is no path under the working directory {Path.cwd()}; taken as a hub id owner/repo "
             "and downloaded (a local path needs ./ in front, or give it absolute)")
    _note_uncached(spec, key)


def _note_uncached(repo: str, key: str) -> None:
    repo = "/".join(repo.split("/")[:2])
    if _offline() and not _hub_cached(repo):
        note(f"{key}: {repo} is not a local path and not in the hub cache, and HF_HUB_OFFLINE is set: "
             "its jobs will fail until it is downloaded (a typo? a local path needs ./ in front)")


def _safetensors_keys(path: Path) -> list[str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise ValueError(f"not a readable .safetensors file ({error})") from error


def check_finetuned(spec: str, key: str) -> None:
    """θ' of a real-world target: a local path must exist and be what its prefix says."""
    ft, location = finetuned_kind(spec)
    path = Path(location).expanduser()
    lora_what = "lora: + a LoRA .safetensors file, a folder holding one, or a hub repo owner/repo"
    db_what = "a DreamBooth pipeline or UNet folder, a single checkpoint file, or a hub id owner/repo"
    if not path.exists():
        if not hub_shaped(location):
            raise _missing_path(key, location, lora_what if ft == "lora" else db_what)
        _note_uncached(location, key)
        return
    if path.is_file() and path.suffix == ".safetensors":
        try:
            keys = _safetensors_keys(path)
        except ValueError as error:
            raise ConfigError(f"{key}: {location}: {error}") from None
        is_lora = bool(keys) and all("lora" in k.lower() or k.endswith(".alpha") for k in keys)
        if is_lora and ft != "lora":
            raise ConfigError(f"{key}: {location} is a LoRA file (keys like {keys[0]!r}); write "
                              f"`finetuned: lora:{location}` so it is applied to the base as an adapter")
        if ft == "lora" and not is_lora:
            bad = next(k for k in keys if "lora" not in k.lower()) if keys else "(no tensors)"
            raise ConfigError(f"{key}: {location} is not a LoRA file (e.g. key {bad!r}); a DreamBooth "
                              "checkpoint is given without the lora: prefix")
    elif path.is_file() and not path.name.lower().endswith(WEIGHT_SUFFIXES):
        raise ConfigError(f"{key}: {location} is not a weight file (expected "
                          f"{', '.join(WEIGHT_SUFFIXES)}): expected {lora_what if ft == 'lora' else db_what}")


def _local_unet_weights(spec: str) -> Path | None:
    """The UNet weight file of a local model folder (tiny world, diffusers pipeline or bare UNet)."""
    path = Path(spec).expanduser()
    for candidate in (path / "unet" / "diffusion_pytorch_model.safetensors", path / "diffusion_pytorch_model.safetensors"):
        if candidate.is_file():
            return candidate
    return None


def unet_module_names(base: str) -> set[str] | None:
    """The module names of a local base's UNet, read from its safetensors header (no weights loaded):
    every parameter ``a.b.c.weight`` gives modules ``a``, ``a.b`` and ``a.b.c``. None when not local."""
    weights = _local_unet_weights(base)
    if weights is None:
        return None
    try:
        keys = _safetensors_keys(weights)
    except ValueError:
        return None  # check_base_model's business; the loader names the file
    names = set()
    for key in keys:
        parts = key.split(".")[:-1]
        names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def check_lora_targets(targets: list[str], base: str, key: str) -> None:
    """LoRA targets name UNet modules as peft matches them (the name, or its last dotted parts). A name
    matching nothing would be dropped by peft without a word while the run's records list it."""
    names = unet_module_names(base)
    if names is None:
        return
    unknown = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if unknown:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names if "attn" in n and not n.rsplit(".", 1)[-1].isdigit()})
        raise ConfigError(f"{key}: {', '.join(map(repr, unknown))} match no module of the base UNet {base} "
                          f"(attention modules there: {', '.join(leaves[:12])}; e.g. to_q, to_k, to_v, to_out.0)")


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _lora_file(location: str) -> Path | None:
    path = Path(location).expanduser()
    if path.is_file() and path.suffix == ".safetensors":
        return path
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    return files[0] if len(files) == 1 else None


def check_fits_base(base: str, spec: str, key: str) -> None:
    """Before any job: a local θ' whose weights cannot belong to the local θ (another architecture or
    size) is an error naming a tensor and both shapes. Checked from the safetensors headers only;
    formats this cannot map (single-file SD checkpoints, kohya LoRA names) are left to the loaders."""
    base_weights = _local_unet_weights(base)
    if base_weights is None:
        return
    ft, location = finetuned_kind(spec)
    base_shapes = _shapes(base_weights)
    if ft == "dreambooth":
        weights = _local_unet_weights(location)
        if weights is None:
            return
        shapes = _shapes(weights)
        common = set(shapes) & set(base_shapes)
        if not common:
            raise ConfigError(f"{key}: {location} shares no UNet tensor with the base {base} "
                              f"(e.g. {next(iter(shapes), '(none)')!r}): a checkpoint of another model")
        for name in sorted(common):
            if shapes[name] != base_shapes[name]:
                raise ConfigError(f"{key}: {location} does not fit the base {base}: {name} is "
                                  f"{list(shapes[name])} there and {list(base_shapes[name])} in the base")
        return
    lora = _lora_file(location)
    if lora is None:
        return
    for name, shape in _shapes(lora).items():
        for marker in (".lora_A.weight", ".lora_down.weight"):
            if name.endswith(marker):
                module = name[:-len(marker)]
                for prefix in ("base_model.model.", "unet."):
                    module = module[len(prefix):] if module.startswith(prefix) else module
                target = base_shapes.get(f"{module}.weight")
                if target is None:
                    if module.startswith(("down_blocks", "up_blocks", "mid_block")):
                        raise ConfigError(f"{key}: {location} adapts {module}, which the base {base} does not have: "
                                          "a LoRA made for another model")
                elif shape[1] != target[1]:
                    raise ConfigError(f"{key}: {location} does not fit the base {base}: {module} takes "
                                      f"{shape[1]} input channels in the LoRA and {target[1]} in the base")


def check_onnx_file(path: Path) -> None:
    """Walk the top-level protobuf fields of an ONNX ModelProto without loading it.

    Cheap at any size (length-delimited fields are skipped by seeking), and random bytes fail
    (bad wire types, lengths past the end of the file, no ir_version or graph field).
    """
    size = path.stat().st_size
    seen: set[int] = set()
    with path.open("rb") as f:

        def varint() -> int:
            shift = value = 0
            while True:
                byte = f.read(1)
                if not byte or shift > 63:
                    raise ValueError("truncated varint")
                value |= (byte[0] & 0x7F) << shift
                if byte[0] < 0x80:
                    return value
                shift += 7

        try:
            while f.tell() < size:
                tag = varint()
                field_number, wire = tag >> 3, tag & 7
                if not 1 <= field_number <= 64 or wire not in (0, 1, 2, 5):
                    raise ValueError(f"field {field_number} with wire type {wire} at byte {f.tell()}")
                if wire == 0:
                    varint()
                else:
                    length = {1: 8, 5: 4}.get(wire) or varint()
                    if f.tell() + length > size:
                        raise ValueError(f"field {field_number} runs past the end of the file")
                    f.seek(length, os.SEEK_CUR)
                seen.add(field_number)
        except ValueError as error:
            raise ValueError(f"{path} is not an ONNX model ({error})") from None
    if not {1, 7} <= seen:
        raise ValueError(f"{path} is not an ONNX model (no ir_version / graph field)")


def check_sscd(sscd: dict) -> None:
    from finextract.attack.similarity import BUILTIN_MODELS, check_descriptor_model

    calibration = sscd["calibration"]
    if calibration and Path(calibration).is_dir():
        raise ConfigError(f"sscd.calibration: {calibration} is a folder; expected a calibration .npz file")
    if calibration and not Path(calibration).is_file():
        raise ConfigError(f"sscd.calibration: file {calibration} does not exist "
                          "(set it to null for raw SSCD descriptors)")
    try:
        info = check_descriptor_model(sscd["model"])
        if info.kind == "onnx" and str(sscd["model"]) not in BUILTIN_MODELS:
            check_onnx_file(Path(info.path))
    except ValueError as error:
        raise ConfigError(f"sscd.model: {error}") from None
    if calibration:
        check_calibration_agrees(sscd, info.model_id)
    if calibration is None:
        note("sscd.calibration is null: raw SSCD descriptors; on 32-px icons unrelated images already score "
             "near 0.6 (docs/sscd-calibration.md)")


def check_taus(taus: list[float]) -> None:
    """Each τ is a column A-ESR@<τ:g>: two that print alike would be one column."""
    seen = {}
    for tau in taus:
        name = f"{tau:g}"
        if name in seen:
            raise ConfigError(f"metrics.taus: {seen[name]} and {tau} are the same column A-ESR@{name}; "
                              "give thresholds that differ in the first six digits")
        seen[name] = tau


def check_base_kind(kind: str, base: str, key: str) -> None:
    """A tiny-world base (finextract.json) is loaded as such; any other kind would fail in the job."""
    tiny = (Path(base).expanduser() / "finextract.json").is_file()
    if tiny and kind not in ("auto", "tiny"):
        raise ConfigError(f"{key}: {kind}, but base_model {base} is a tiny-world model (finextract.json); "
                          "use auto or tiny")
    if kind == "tiny" and Path(base).expanduser().exists() and not tiny:
        raise ConfigError(f"{key}: tiny, but base_model {base} is not a tiny-world model (no finextract.json); "
                          "use auto")


def check_calibration_agrees(sscd: dict, model_id: str) -> None:
    """The calibration file records the model, resolution and blur it was fitted for (finextract.attack.similarity):
    a config that differs in any would fail in the first embedding job."""
    from finextract.attack.similarity import load_calibration

    try:
        post = load_calibration(sscd["calibration"])
    except ValueError as error:
        raise ConfigError(f"sscd.calibration: {error}") from None
    where = f"the calibration {sscd['calibration']}"
    if post.model_id and post.model_id != model_id:
        raise ConfigError(f"sscd.model: {sscd['model']}, but {where} was fitted for {post.model_id!r}")
    if sscd.get("resolution") is not None and post.resolution != sscd["resolution"]:
        raise ConfigError(f"sscd.resolution: {sscd['resolution']}, but {where} was fitted at {post.resolution}")
    sigma = sscd.get("prefilter_sigma")
    if sigma is not None and abs(post.prefilter_sigma - float(sigma)) > 1e-9:
        raise ConfigError(f"sscd.prefilter_sigma: {sigma}, but {where} was fitted on images blurred with "
                          f"σ = {post.prefilter_sigma} (null: the calibration's own)")


def check_caption_length(set_name: str, caption: str, base: str) -> None:
    """The tiny world's text encoder sees 16 tokens; a longer caption is cut (as SD cuts at 77)."""
    if not (Path(base) / "finextract.json").is_file():
        return  # SD tokenizers live in the checkpoint; the sampling job logs a truncation there
    from tokenizers import Tokenizer

    from finextract.backbones.text_encoder import MAX_TOKENS, minilm_path

    tokenizer = Tokenizer.from_file(str(Path(minilm_path()) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ids = tokenizer.encode(caption).ids
    if len(ids) > MAX_TOKENS:
        kept = tokenizer.decode(ids[:MAX_TOKENS])
        note(f"private_sets.{set_name}: the caption has {len(ids)} tokens; the tiny world's text encoder "
             f"sees the first {MAX_TOKENS}: {kept!r}")
