"""LoRA θ': adapters in diffusers or kohya-ss/Civitai format on θ's UNet (and text encoders), and writing them.

The file is checked against the base before anything is loaded: an SDXL LoRA on SD 1.5 would
otherwise load with only a warning about unexpected keys and silently sample from θ.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from finextract.backbones.base import ADAPTER_NAME, Backbone
from finextract.backbones.specs import hub_shaped
from finextract.backbones.kinds import PICKLE_SUFFIXES, check_pickle, safetensors_flag

if TYPE_CHECKING:
    from finextract.backbones.sd import LatentDiffusionBackbone

logger = logging.getLogger(__name__)
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


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
    if not hub_shaped(spec):  # checked on the spec as given, so the message names the path the user wrote
        raise FileNotFoundError(f"{spec}: no such LoRA file or folder (and not a hub id owner/repo)")
    repo, parts = spec, spec.split("/")
    if len(parts) > 2:  # owner/repo/file.safetensors on the hub
        repo, weight_name = "/".join(parts[:2]), "/".join(parts[2:])
    if weight_name is not None:
        check_pickle(weight_name, allow_pickle, "LoRA file")
    return repo, weight_name, f"{repo}/{weight_name or '<auto>'}"


def load_lora(backbone: LatentDiffusionBackbone, spec: str | Path, adapter_name: str = ADAPTER_NAME, *,
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
    is_xl = backbone.name == "sdxl"
    mixin = StableDiffusionXLLoraLoaderMixin if is_xl else StableDiffusionLoraLoaderMixin
    if getattr(backbone.unet, "peft_config", {}).get(adapter_name) is not None:
        raise ValueError(f"adapter {adapter_name!r} is already loaded on this backbone's UNet")
    raw_format = "diffusers"
    kwargs: dict[str, Any] = dict(weight_name=weight_name, use_safetensors=safetensors_flag(allow_pickle),
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


def save_lora(model: Backbone | torch.nn.Module, path: str | Path, adapter_name: str = ADAPTER_NAME) -> Path:
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
