"""Reading a diffusers pipeline (hub id, folder or single file) with the project's pickle policy.

AltDiffusion is read component by component (:func:`load_altdiffusion_pipeline`): diffusers 0.42 keeps it
under ``pipelines.deprecated`` and its ``from_pretrained`` can no longer resolve the text encoder class
that ``model_index.json`` names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AltDiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

from finextract.backbones.kinds import Kind, check_pickle, is_single_file, no_safetensors_hint, safetensors_flag

PIPELINES: dict[str, type] = {"sd": StableDiffusionPipeline, "sdxl": StableDiffusionXLPipeline,
                              "altdiffusion": AltDiffusionPipeline}


def load_pipeline(kind: Kind, spec: str, torch_dtype: torch.dtype, allow_pickle: bool, *,
                   config: str | Path | None, variant: str | None, local_files_only: bool,
                   **components: Any) -> Any:
    if kind == "altdiffusion":
        if is_single_file(spec):
            raise ValueError(f"{spec}: AltDiffusion loads from a diffusers folder or hub id (e.g. BAAI/AltDiffusion); "
                             "single-file checkpoints are not supported for it (no converter for its XLM-R text encoder)")
        return load_altdiffusion_pipeline(spec, torch_dtype, allow_pickle, variant=variant,
                                          local_files_only=local_files_only)
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


def load_altdiffusion_pipeline(spec: str, torch_dtype: torch.dtype, allow_pickle: bool, *, variant: str | None,
                               local_files_only: bool) -> AltDiffusionPipeline:
    """An AltDiffusionPipeline (no safety checker) from its subfolders, as ``from_pretrained`` would assemble it."""
    import diffusers
    from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.deprecated.alt_diffusion.modeling_roberta_series import \
        RobertaSeriesModelWithTransformation
    from transformers import XLMRobertaTokenizer

    st = safetensors_flag(allow_pickle)
    common = dict(variant=variant, local_files_only=local_files_only)
    try:
        path = Path(spec)
        if path.is_dir():
            import json

            index = json.loads((path / "model_index.json").read_text())
        else:
            index = DiffusionPipeline.load_config(spec, local_files_only=local_files_only)
        scheduler_cls = getattr(diffusers, index.get("scheduler", [None, "PNDMScheduler"])[1])
        unet = UNet2DConditionModel.from_pretrained(spec, subfolder="unet", dtype=torch_dtype, use_safetensors=st,
                                                    **common)
        vae = AutoencoderKL.from_pretrained(spec, subfolder="vae", dtype=torch_dtype, use_safetensors=st, **common)
        text_encoder = RobertaSeriesModelWithTransformation.from_pretrained(
            spec, subfolder="text_encoder", dtype=torch_dtype, use_safetensors=st, **common)
        tokenizer = XLMRobertaTokenizer.from_pretrained(spec, subfolder="tokenizer",
                                                        local_files_only=local_files_only)
        scheduler = scheduler_cls.from_pretrained(spec, subfolder="scheduler", local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        hint = no_safetensors_hint(err, spec, allow_pickle)
        if hint is None:
            raise
        raise hint from err
    return AltDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                requires_safety_checker=False)


def _single_file_config_message(spec: str) -> str:
    return (f"{spec}: a single-file checkpoint has weights but no component configs. Pass config=<local diffusers "
            "folder or cached hub id of the matching base> (e.g. a snapshot of stable-diffusion-v1-5/"
            "stable-diffusion-v1-5 or stabilityai/stable-diffusion-xl-base-1.0); otherwise diffusers must "
            "download those configs from the Hugging Face hub, which is not reachable here")
