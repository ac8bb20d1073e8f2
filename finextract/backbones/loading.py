"""Loading real Stable Diffusion checkpoints: base models, DreamBooth UNets, LoRA files.

The attack needs θ (a published base) and θ' (someone's fine-tune of it). Both come in several
shapes: a hub id or a local diffusers folder, a single ``.safetensors``/``.ckpt`` file as
A1111/Civitai ship them, a DreamBooth UNet or whole pipeline, a LoRA in diffusers or
kohya-ss format. Each loader here turns one of them into the objects the model pairs use: a
:class:`~finextract.backbones.sd.LatentDiffusionBackbone`, a second UNet, or peft LoRA layers
on ``backbone.unet`` under one adapter name.

Two rules hold throughout:

- **No unpickling unless asked.** ``.ckpt``/``.bin``/``.pt`` files can run code when loaded;
  they are refused unless ``allow_pickle=True`` (even then diffusers loads them with
  ``torch.load(weights_only=True)``). Folders and hub repos are read as safetensors only.
- **A θ' that does not fit θ fails at load time**, naming the file and the base, never
  half-way through a sampling job (an SDXL LoRA on SD 1.5 would otherwise load with only a
  warning about unexpected keys and silently sample from θ).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

from .base import Backbone
from .sd import LatentDiffusionBackbone, SDBackbone
from .sdxl import SDXLBackbone

logger = logging.getLogger(__name__)

Kind = Literal["sd", "sdxl"]
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
SINGLE_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
PIPELINES: dict[str, type] = {"sd": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}
BACKBONES: dict[str, type[LatentDiffusionBackbone]] = {"sd": SDBackbone, "sdxl": SDXLBackbone}


# --- precision and device ------------------------------------------------------------------
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(precision: str | torch.dtype, device: str | torch.device = "auto") -> torch.dtype:
    """``"auto"`` → fp16 on CUDA, fp32 elsewhere; CPU kernels for fp16 convolutions are slow or missing."""
    device = resolve_device(device)
    if isinstance(precision, torch.dtype):
        dtype = precision
    elif precision == "auto":
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    elif precision in _DTYPES:
        dtype = _DTYPES[precision]
    else:
        raise ValueError(f"unknown precision {precision!r}; use auto, fp32, fp16 or bf16")
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("fp16 on CPU is not supported here: use precision 'fp32' (or 'bf16') on CPU")
    return dtype


# --- what a spec names ---------------------------------------------------------------------
def is_single_file(spec: str | Path) -> bool:
    return str(spec).lower().endswith(SINGLE_FILE_SUFFIXES)


def check_pickle(spec: str | Path, allow_pickle: bool, what: str = "checkpoint") -> None:
    """Refuse pickle-based weights unless the caller opted in: unpickling a stranger's file runs its code."""
    if str(spec).lower().endswith(PICKLE_SUFFIXES) and not allow_pickle:
        raise ValueError(
            f"{spec}: refusing to load a pickle-based {what} ({Path(str(spec)).suffix}): unpickling an untrusted "
            "file can execute arbitrary code. Convert it to .safetensors, or, if you trust it, opt in with "
            "allow_pickle=True (in config/realworld.yaml: `allow_pickle: true` on the target).")


def _safetensors_flag(allow_pickle: bool) -> bool | None:
    """diffusers' ``use_safetensors``: True refuses .bin weights; None prefers safetensors, falls back."""
    return None if allow_pickle else True


def _no_safetensors_hint(err: Exception, spec: str, allow_pickle: bool) -> Exception | None:
    """A clearer error when diffusers found only pickle weights because we asked for safetensors."""
    if not allow_pickle and "safetensors" in str(err).lower():
        return ValueError(f"{spec}: no safetensors weights found (only pickle-based .bin/.ckpt ones, or none). "
                          "Opt in with allow_pickle=True (config: `allow_pickle: true`) if you trust the source. "
                          f"diffusers said: {err}")
    return None


def _single_file_keys(spec: str) -> list[str]:
    path = Path(spec)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    from diffusers.loaders.single_file_utils import load_single_file_checkpoint

    return list(load_single_file_checkpoint(spec).keys())


def detect_kind(spec: str | Path, *, allow_pickle: bool = False, local_files_only: bool = False) -> Kind:
    """SD 1.x/2.x or SDXL, from the checkpoint's own description (model_index.json or key names)."""
    spec = str(spec)
    if is_single_file(spec):
        check_pickle(spec, allow_pickle)
        keys = _single_file_keys(spec)
        if any(k.startswith("conditioner.embedders.1.") for k in keys):
            return "sdxl"
        if any(k.startswith(("model.diffusion_model.", "cond_stage_model.")) for k in keys):
            return "sd"
        raise ValueError(f"{spec}: not an original-format Stable Diffusion checkpoint "
                         "(no model.diffusion_model.* / conditioner.* keys)")
    path = Path(spec)
    if path.is_dir():
        index = path / "model_index.json"
        if not index.exists():
            raise ValueError(f"{spec}: not a diffusers pipeline folder (no model_index.json)")
        class_name = json.loads(index.read_text()).get("_class_name", "")
    else:
        from diffusers import DiffusionPipeline

        class_name = DiffusionPipeline.load_config(spec, local_files_only=local_files_only).get("_class_name", "")
    if "XL" in class_name:
        return "sdxl"
    if class_name.startswith("StableDiffusion") or class_name == "DiffusionPipeline":
        return "sd"
    raise ValueError(f"{spec}: pipeline class {class_name!r} is neither Stable Diffusion 1.x/2.x nor SDXL")


# --- the base model -------------------------------------------------------------------------
def load_backbone(spec: str | Path, kind: Kind | Literal["auto"] = "auto", dtype: str | torch.dtype = "auto",
                  device: str | torch.device = "auto", allow_pickle: bool = False, *,
                  config: str | Path | None = None, variant: str | None = None, resolution: int | None = None,
                  local_files_only: bool = False, latent_sampling: Literal["sample", "mean"] = "sample",
                  vae_batch_size: int = 1, precision: str | torch.dtype | None = None,
                  ) -> LatentDiffusionBackbone:
    """Load θ from a hub id, a local diffusers folder, or a single-file checkpoint.

    ``dtype`` (alias ``precision``, as the workflow config calls it): "auto" (fp16 on CUDA,
    fp32 on CPU), "fp32", "fp16", "bf16" or a torch dtype. ``config`` (single files only)
    names a local diffusers folder or hub id whose component configs match the checkpoint: a
    single file carries weights but no configs, so without it diffusers fetches the configs of
    the architecture it guesses from the hub.
    """
    spec = str(spec)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(precision if precision is not None else dtype, device)
    found = detect_kind(spec, allow_pickle=allow_pickle, local_files_only=local_files_only)
    if kind == "auto":
        kind = found
    elif kind != found:
        raise ValueError(f"{spec} is an {found.upper()} checkpoint but kind={kind!r} was asked for")
    if kind not in PIPELINES:
        raise ValueError(f"kind must be 'sd', 'sdxl' or 'auto', not {kind!r}")
    pipe = _load_pipeline(kind, spec, torch_dtype, allow_pickle, config=config, variant=variant,
                          local_files_only=local_files_only)
    if torch_dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)  # SDXL's VAE overflows in fp16; diffusers upcasts it the same way
    config_source = str(config) if config is not None else (None if is_single_file(spec) else spec)
    backbone = BACKBONES[kind].from_pipeline(pipe, source=spec, config_source=config_source,
                                             resolution=resolution, latent_sampling=latent_sampling,
                                             vae_batch_size=vae_batch_size)
    for module in backbone.modules():
        module.eval()
    return backbone.to(device)


def _load_pipeline(kind: Kind, spec: str, torch_dtype: torch.dtype, allow_pickle: bool, *,
                   config: str | Path | None, variant: str | None, local_files_only: bool,
                   **components: Any) -> Any:
    cls = PIPELINES[kind]
    extra: dict[str, Any] = dict(components)
    if kind == "sd":
        extra.update(safety_checker=None, requires_safety_checker=False)
    if is_single_file(spec):
        check_pickle(spec, allow_pickle)
        if config is None and local_files_only:
            raise ValueError(_single_file_config_message(spec))
        try:
            return cls.from_single_file(spec, config=str(config) if config else None, dtype=torch_dtype,
                                        local_files_only=local_files_only, **extra)
        except OSError as err:
            if config is None:
                raise OSError(_single_file_config_message(spec) + f" (diffusers said: {err})") from err
            raise
    try:
        return cls.from_pretrained(spec, dtype=torch_dtype, use_safetensors=_safetensors_flag(allow_pickle),
                                   variant=variant, local_files_only=local_files_only, **extra)
    except (OSError, ValueError) as err:
        hint = _no_safetensors_hint(err, spec, allow_pickle)
        if hint is None:
            raise
        raise hint from err


def _single_file_config_message(spec: str) -> str:
    return (f"{spec}: a single-file checkpoint has weights but no component configs. Pass config=<local diffusers "
            "folder or cached hub id of the matching base> (e.g. a snapshot of stable-diffusion-v1-5/"
            "stable-diffusion-v1-5 or stabilityai/stable-diffusion-xl-base-1.0); otherwise diffusers must "
            "download those configs from the Hugging Face hub, which is not reachable here")


class _LazyCheckpoint(Mapping):
    """A safetensors file as a read-on-demand mapping, so key/shape sniffing does not load 7 GB."""

    def __init__(self, path: str):
        from safetensors import safe_open

        self._file = safe_open(path, framework="pt")
        self._keys = list(self._file.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._file.get_tensor(key)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in set(self._keys)


def resolution_of(spec: str | Path, *, config: str | Path | None = None, allow_pickle: bool = False,
                  local_files_only: bool = False) -> int:
    """The image size a base generates (UNet sample_size × VAE factor), read from configs, not weights.

    A single file without ``config`` gets the default size diffusers assigns to the architecture
    it detects (512 for SD 1.x, 768 for SD 2.x v-models, 1024 for SDXL).
    """
    spec = str(spec)
    source = str(config) if config is not None else spec
    if is_single_file(spec) and config is None:
        from diffusers.loaders.single_file_utils import (DIFFUSERS_TO_LDM_DEFAULT_IMAGE_SIZE_MAP,
                                                         infer_diffusers_model_type,
                                                         load_single_file_checkpoint)

        check_pickle(spec, allow_pickle)
        path = Path(spec)
        checkpoint = (_LazyCheckpoint(str(path)) if path.suffix == ".safetensors" and path.is_file()
                      else load_single_file_checkpoint(spec, local_files_only=local_files_only))
        return int(DIFFUSERS_TO_LDM_DEFAULT_IMAGE_SIZE_MAP[infer_diffusers_model_type(checkpoint)])
    from diffusers import AutoencoderKL

    unet_cfg = UNet2DConditionModel.load_config(source, subfolder="unet", local_files_only=local_files_only)
    vae_cfg = AutoencoderKL.load_config(source, subfolder="vae", local_files_only=local_files_only)
    return int(unet_cfg["sample_size"]) * 2 ** (len(vae_cfg["block_out_channels"]) - 1)


# --- DreamBooth: a second UNet ----------------------------------------------------------------
def load_dreambooth_unet(spec: str | Path, backbone: LatentDiffusionBackbone, *, allow_pickle: bool = False,
                         text_encoders: bool = True, variant: str | None = None,
                         local_files_only: bool = False) -> UNet2DConditionModel:
    """θ''s UNet from a DreamBooth UNet folder, a whole pipeline (folder, hub id) or a single file.

    When the source also holds text encoders that differ from θ's (DreamBooth with
    ``--train_text_encoder``), they are attached to ``backbone`` as θ''s text encoders, so
    the caption goes through the encoder it was trained with. ``text_encoders=False`` skips that.
    """
    spec = str(spec)
    dtype, device = backbone.dtype, backbone.device
    st = _safetensors_flag(allow_pickle)
    finetuned_tes: list[torch.nn.Module | None] = []
    te_names = ["text_encoder", "text_encoder_2"][:len(backbone.text_encoders)]
    if is_single_file(spec):
        check_pickle(spec, allow_pickle)
        if backbone.config_source is None:
            raise ValueError(f"{spec}: reading a single-file fine-tune needs the base's diffusers configs; "
                             "load the base from a diffusers folder/hub id or with config=...")
        kind = "sdxl" if isinstance(backbone, SDXLBackbone) else "sd"
        shared = {"vae": backbone.vae, "tokenizer": backbone.tokenizers[0]}
        if kind == "sdxl":
            shared["tokenizer_2"] = backbone.tokenizers[1]
        pipe = _load_pipeline(kind, spec, dtype, allow_pickle, config=backbone.config_source, variant=None,
                              local_files_only=local_files_only, **shared)
        unet = pipe.unet
        finetuned_tes = [getattr(pipe, name) for name in te_names]
    else:
        path = Path(spec)
        if path.is_dir():
            if (path / "unet").is_dir():
                unet_dir, root = path / "unet", path
            elif (path / "config.json").exists():
                unet_dir, root = path, None
            else:
                raise ValueError(f"{spec}: neither a UNet folder (config.json) nor a pipeline folder (unet/)")
            _check_local_weights(unet_dir, allow_pickle)
            unet = UNet2DConditionModel.from_pretrained(unet_dir, dtype=dtype, use_safetensors=st)
            if root is not None and text_encoders:
                for name, base in zip(te_names, backbone.text_encoders):
                    if (root / name).is_dir():
                        _check_local_weights(root / name, allow_pickle)
                        finetuned_tes.append(type(base).from_pretrained(root, subfolder=name, dtype=dtype,
                                                                        use_safetensors=st))
                    else:
                        finetuned_tes.append(None)
        else:  # hub id: a pipeline repo (unet/ subfolder) or a bare UNet repo
            common = dict(dtype=dtype, use_safetensors=st, variant=variant, local_files_only=local_files_only)
            try:
                unet = UNet2DConditionModel.from_pretrained(spec, subfolder="unet", **common)
                is_pipeline = True
            except OSError as err:
                try:
                    unet = UNet2DConditionModel.from_pretrained(spec, **common)
                except OSError:
                    hint = _no_safetensors_hint(err, spec, allow_pickle)
                    if hint is None:
                        raise err from None
                    raise hint from err
                is_pipeline = False
            if is_pipeline and text_encoders:
                for name, base in zip(te_names, backbone.text_encoders):
                    try:
                        finetuned_tes.append(type(base).from_pretrained(
                            spec, subfolder=name, dtype=dtype, use_safetensors=st, variant=variant,
                            local_files_only=local_files_only))
                    except OSError:
                        finetuned_tes.append(None)
    check_unet_fits(unet, backbone, spec)
    unet = unet.to(device).eval()
    if text_encoders:
        _attach_changed_text_encoders(backbone, finetuned_tes, spec)
    return unet


def _check_local_weights(folder: Path, allow_pickle: bool) -> None:
    has_st = any(folder.glob("*.safetensors"))
    pickled = [p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if not has_st and pickled:
        check_pickle(pickled[0], allow_pickle, "model folder")


def check_unet_fits(unet: torch.nn.Module, backbone: LatentDiffusionBackbone, spec: str) -> None:
    """Same parameter names and shapes as θ's UNet, or a clear error (an SDXL UNet next to SD 1.5...)."""
    base = {k: v.shape for k, v in _base_state(backbone.unet).items()}
    other = {k: v.shape for k, v in unet.state_dict().items()}
    missing = sorted(set(base) - set(other))
    extra = sorted(set(other) - set(base))
    shapes = sorted(k for k in set(base) & set(other) if base[k] != other[k])
    if missing or extra or shapes:
        example = (f"{shapes[0]}: {tuple(other[shapes[0]])} vs base {tuple(base[shapes[0]])}" if shapes else
                   (missing or extra)[0])
        raise ValueError(f"fine-tuned UNet {spec} does not match the base model {backbone.source!r} "
                         f"({backbone.name}): {len(missing)} base parameters missing, {len(extra)} extra, "
                         f"{len(shapes)} with other shapes (e.g. {example}). Is `pretrained` the model this "
                         "checkpoint was fine-tuned from?")


def _base_state(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """θ's UNet parameters under their plain names, even when LoRA layers wrap them."""
    out = {}
    for key, value in unet.state_dict().items():
        if "lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device, sa[k].dtype)) for k in sa)


def _attach_changed_text_encoders(backbone: LatentDiffusionBackbone, loaded: list[torch.nn.Module | None],
                                  spec: str) -> None:
    if not loaded or all(m is None for m in loaded):
        return
    chosen, changed = [], False
    for base, ft in zip(backbone.text_encoders, loaded):
        if ft is None or _same_weights(base, ft):
            chosen.append(base)
        else:
            chosen.append(ft.to(backbone.device).eval())
            changed = True
    if changed:
        logger.info("%s: text encoder(s) were fine-tuned too; θ' encodes captions with them", spec)
        backbone.attach_finetuned_text_encoders(chosen)


# --- LoRA -----------------------------------------------------------------------------------------
@dataclass
class LoraInfo:
    """What :func:`load_lora` put where: for logs and for the run's provenance record."""

    file: str
    adapter_name: str
    unet_layers: int
    text_encoder_layers: int
    ranks: list[int] = field(default_factory=list)
    source_format: str = "diffusers"


def _lora_location(spec: str, weight_name: str | None, allow_pickle: bool) -> tuple[str, str | None, str]:
    """(folder or repo id, file name, label for messages) for a LoRA file, folder or hub repo."""
    path = Path(spec)
    if path.is_file():
        check_pickle(path, allow_pickle, "LoRA file")
        return str(path.parent), path.name, str(path)
    if path.is_dir():
        if weight_name is None:
            candidates = sorted(path.glob("*.safetensors")) or sorted(
                p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
            if not candidates:
                raise FileNotFoundError(f"{spec}: no LoRA weights (*.safetensors) in this folder")
            preferred = [p for p in candidates if p.name == LORA_WEIGHT_NAME]
            if not preferred and len(candidates) > 1:
                raise ValueError(f"{spec}: several weight files ({', '.join(p.name for p in candidates)}); "
                                 "name one (lora_weight_name / weight_name=)")
            weight_name = (preferred or candidates)[0].name
        check_pickle(weight_name, allow_pickle, "LoRA file")
        return str(path), weight_name, str(path / weight_name)
    if path.exists():
        raise ValueError(f"{spec}: not a file or folder")
    parts = spec.split("/")
    if len(parts) > 2 and is_single_file(spec):  # owner/repo/file.safetensors on the hub
        spec, weight_name = "/".join(parts[:2]), "/".join(parts[2:])
    if len(spec.split("/")) != 2 or spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{spec}: no such LoRA file or folder (and not a hub id owner/repo)")
    if weight_name is not None:
        check_pickle(weight_name, allow_pickle, "LoRA file")
    return spec, weight_name, f"{spec}/{weight_name or '<auto>'}"


def load_lora(backbone: LatentDiffusionBackbone, spec: str | Path, adapter_name: str = "finetuned", *,
              weight_name: str | None = None, allow_pickle: bool = False, text_encoders: bool = True,
              local_files_only: bool = False) -> LoraInfo:
    """Put a LoRA (diffusers or kohya/Civitai format) on ``backbone.unet`` as peft adapter ``adapter_name``.

    Text-encoder LoRA layers, when the file has them and ``text_encoders`` is true, go on θ's
    text encoders under the same name; :class:`LatentDiffusionBackbone` switches them off for
    the pretrained side. The file is checked against the base before anything is loaded.
    """
    from diffusers.loaders import StableDiffusionLoraLoaderMixin, StableDiffusionXLLoraLoaderMixin

    spec = str(spec)
    location, weight_name, label = _lora_location(spec, weight_name, allow_pickle)
    is_xl = isinstance(backbone, SDXLBackbone)
    mixin = StableDiffusionXLLoraLoaderMixin if is_xl else StableDiffusionLoraLoaderMixin
    if getattr(backbone.unet, "peft_config", {}).get(adapter_name) is not None:
        raise ValueError(f"adapter {adapter_name!r} is already loaded on this backbone's UNet")
    raw_format = "diffusers"
    kwargs: dict[str, Any] = dict(weight_name=weight_name, use_safetensors=_safetensors_flag(allow_pickle),
                                  local_files_only=local_files_only, return_lora_metadata=True)
    if is_xl:
        kwargs["unet_config"] = backbone.unet.config  # kohya SDXL files use SGM block names
    try:
        state_dict, alphas, metadata = mixin.lora_state_dict(location, **kwargs)
    except (KeyError, ValueError, IndexError) as err:
        raise ValueError(f"LoRA {label}: cannot be read as a LoRA for base {backbone.source!r} "
                         f"({backbone.name}): {err}") from err
    if alphas is not None:
        raw_format = "kohya"
    if not state_dict or not all("lora" in k for k in state_dict):
        bad = next((k for k in state_dict if "lora" not in k), None)
        raise ValueError(f"{label}: not a LoRA file (e.g. key {bad!r} is not a LoRA weight)")
    if not any(k.startswith(("unet.", "text_encoder.", "text_encoder_2.")) for k in state_dict):
        state_dict = {f"unet.{k}": v for k, v in state_dict.items()}  # bare UNet LoRA (save_attn_procs / peft)
    te_prefixes = ["text_encoder", "text_encoder_2"][:len(backbone.text_encoders)]
    unknown = [k for k in state_dict if k.split(".")[0] not in ("unet", *te_prefixes)]
    if unknown:
        raise ValueError(f"LoRA {label} has layers for components {sorted({k.split('.')[0] for k in unknown})} "
                         f"that the base {backbone.source!r} ({backbone.name}) has not (e.g. {unknown[0]})")
    targets = {"unet": backbone.unet, **dict(zip(te_prefixes, backbone.text_encoders))}
    if not text_encoders:
        dropped = [k for k in state_dict if not k.startswith("unet.")]
        if dropped:
            logger.warning("%s: ignoring %d text-encoder LoRA tensors (text_encoders=False)", label, len(dropped))
        state_dict = {k: v for k, v in state_dict.items() if k.startswith("unet.")}
        targets = {"unet": backbone.unet}
    counts, ranks = check_lora_fits(state_dict, targets, label, backbone)

    mixin.load_lora_into_unet(state_dict, network_alphas=alphas, unet=backbone.unet, adapter_name=adapter_name,
                              metadata=metadata)
    for prefix, encoder in targets.items():
        if prefix != "unet" and counts.get(prefix):
            mixin.load_lora_into_text_encoder(state_dict, network_alphas=alphas, text_encoder=encoder,
                                              prefix=prefix, adapter_name=adapter_name, metadata=metadata)
            encoder.eval()
    backbone.unet.eval()
    backbone.clear_caption_cache()
    return LoraInfo(file=label, adapter_name=adapter_name, unet_layers=counts.get("unet", 0),
                    text_encoder_layers=sum(v for k, v in counts.items() if k != "unet"),
                    ranks=sorted(ranks), source_format=raw_format)


def _peft_keys(part: dict[str, torch.Tensor], is_unet: bool, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Bring one component's LoRA tensors to peft names (``<module>.lora_A.weight``), as diffusers will."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft, \
        convert_unet_state_dict_to_peft

    if is_unet:
        return part if any("lora_A" in k for k in part) else convert_unet_state_dict_to_peft(part)
    converted = convert_state_dict_to_peft(convert_state_dict_to_diffusers(part))
    if not hasattr(module, "text_model"):  # CLIPTextModel is flattened in transformers >= 5.6
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    return converted


def check_lora_fits(state_dict: dict[str, torch.Tensor], targets: dict[str, torch.nn.Module], label: str,
                    backbone: Backbone) -> tuple[dict[str, int], set[int]]:
    """Every LoRA layer must name an existing Linear/Conv layer of the base with matching in/out sizes."""
    counts: dict[str, int] = {}
    ranks: set[int] = set()
    missing: list[str] = []
    shapes: list[str] = []
    for prefix, module in targets.items():
        part = {k[len(prefix) + 1:]: v for k, v in state_dict.items() if k.startswith(prefix + ".")}
        if not part:
            continue
        try:
            part = _peft_keys(part, prefix == "unet", module)
        except ValueError as err:
            raise ValueError(f"LoRA {label}: the {prefix} layers are in a format diffusers cannot convert: {err}") from err
        named = dict(module.named_modules())
        down_keys = [k for k in part if k.endswith("lora_A.weight")]
        counts[prefix] = len(down_keys)
        for key in down_keys:
            name = key[: -len(".lora_A.weight")]
            layer = named.get(name)
            layer = getattr(layer, "base_layer", layer)
            a, b = part[key], part.get(f"{name}.lora_B.weight")
            ranks.add(int(a.shape[0]))
            if layer is None or not hasattr(layer, "weight"):
                missing.append(f"{prefix}.{name}")
                continue
            w = layer.weight
            lora_in = a.shape[1]
            lora_out = b.shape[0] if b is not None else None
            if lora_in != w.shape[1] or (lora_out is not None and lora_out != w.shape[0]):
                shapes.append(f"{prefix}.{name}: LoRA {lora_in}->{lora_out}, base {w.shape[1]}->{w.shape[0]}")
    total = sum(counts.values())
    if total == 0:
        raise ValueError(f"LoRA {label}: no LoRA layers found for the UNet or text encoders")
    if missing or shapes:
        raise ValueError(
            f"LoRA {label} does not fit the base model {getattr(backbone, 'source', None)!r} "
            f"({backbone.name}, UNet cross-attention width {backbone.unet.config.cross_attention_dim}): "
            f"{len(missing)} of {total} LoRA layers name modules the base does not have"
            f"{' (e.g. ' + missing[0] + ')' if missing else ''}, {len(shapes)} have other shapes"
            f"{' (e.g. ' + shapes[0] + ')' if shapes else ''}. An SDXL LoRA does not apply to SD 1.x/2.x, nor "
            "the reverse: check `pretrained` (and `kind`) for this target.")
    return counts, ranks


def save_lora(model: Backbone | torch.nn.Module, path: str | Path, adapter_name: str = "finetuned") -> Path:
    """Write a UNet adapter in the format ``pipeline.load_lora_weights`` (and :func:`load_lora`) reads.

    ``path`` is a folder (→ ``pytorch_lora_weights.safetensors`` in it) or a ``.safetensors`` file.
    The adapter's LoraConfig goes into the file's metadata, so alpha ≠ rank survives the round trip.
    """
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    unet = model.unet if isinstance(model, Backbone) else model
    config = getattr(unet, "peft_config", {}).get(adapter_name)
    if config is None:
        raise ValueError(f"no LoRA adapter {adapter_name!r} on this UNet "
                         f"(adapters: {sorted(getattr(unet, 'peft_config', {}))})")
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet, adapter_name=adapter_name))
    path = Path(path)
    folder, name = (path.parent, path.name) if path.suffix == ".safetensors" else (path, LORA_WEIGHT_NAME)
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=layers, weight_name=name,
                                                     unet_lora_adapter_metadata=config.to_dict())
    return folder / name
