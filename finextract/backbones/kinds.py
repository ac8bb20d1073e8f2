"""What a checkpoint spec names, read without loading weights: SD 1.x/2.x, SDXL or AltDiffusion, its resolution.

Also the pickle policy every loader follows: ``.ckpt``/``.bin``/``.pt`` files can run code when
loaded; they are refused unless ``allow_pickle=True`` (even then diffusers loads them with
``torch.load(weights_only=True)``). Folders and hub repos are read as safetensors only.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from diffusers import UNet2DConditionModel

Kind = Literal["sd", "sdxl", "altdiffusion"]
PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth")
SINGLE_FILE_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


def is_single_file(spec: str | Path) -> bool:
    return str(spec).lower().endswith(SINGLE_FILE_SUFFIXES)


def check_pickle(spec: str | Path, allow_pickle: bool, what: str = "checkpoint") -> None:
    """Refuse pickle-based weights unless the caller opted in: unpickling a stranger's file runs its code."""
    if str(spec).lower().endswith(PICKLE_SUFFIXES) and not allow_pickle:
        raise ValueError(
            f"{spec}: refusing to load a pickle-based {what} ({Path(str(spec)).suffix}): unpickling an untrusted "
            "file can execute arbitrary code. Convert it to .safetensors, or, if you trust it, opt in with "
            "allow_pickle=True (in config/realworld.yaml: `allow_pickle: true` on the target).")


def safetensors_flag(allow_pickle: bool) -> bool | None:
    """diffusers' ``use_safetensors``: True refuses .bin weights; None prefers safetensors, falls back."""
    return None if allow_pickle else True


def no_safetensors_hint(err: Exception, spec: str, allow_pickle: bool) -> Exception | None:
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
    """SD 1.x/2.x, SDXL or AltDiffusion, from the checkpoint's own description (model_index.json or key names).

    AltDiffusion is told apart only by its model_index.json (``AltDiffusionPipeline``); a single file
    is read as SD, since its UNet and VAE have SD 1.x keys.
    """
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
    if class_name.startswith("AltDiffusion"):
        return "altdiffusion"
    if "XL" in class_name:
        return "sdxl"
    if class_name.startswith("StableDiffusion") or class_name == "DiffusionPipeline":
        return "sd"
    raise ValueError(f"{spec}: pipeline class {class_name!r} is neither Stable Diffusion 1.x/2.x, SDXL nor AltDiffusion")


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
