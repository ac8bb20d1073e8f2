"""Reading a diffusers pipeline (hub id, folder or single file) with the project's pickle policy."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from .kinds import Kind, check_pickle, is_single_file, no_safetensors_hint, safetensors_flag

PIPELINES: dict[str, type] = {"sd": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline}


def load_pipeline(kind: Kind, spec: str, torch_dtype: torch.dtype, allow_pickle: bool, *,
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
        return cls.from_pretrained(spec, dtype=torch_dtype, use_safetensors=safetensors_flag(allow_pickle),
                                   variant=variant, local_files_only=local_files_only, **extra)
    except (OSError, ValueError) as err:
        hint = no_safetensors_hint(err, spec, allow_pickle)
        if hint is None:
            raise
        raise hint from err


def _single_file_config_message(spec: str) -> str:
    return (f"{spec}: a single-file checkpoint has weights but no component configs. Pass config=<local diffusers "
            "folder or cached hub id of the matching base> (e.g. a snapshot of stable-diffusion-v1-5/"
            "stable-diffusion-v1-5 or stabilityai/stable-diffusion-xl-base-1.0); otherwise diffusers must "
            "download those configs from the Hugging Face hub, which is not reachable here")
