"""DreamBooth θ': a second UNet (and the text encoders, when they were fine-tuned too), checked against θ.

A θ' that does not fit θ fails at load time, naming the file and the base, never half-way
through a sampling job.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from diffusers import UNet2DConditionModel

from finextract.backbones.base import check_unet_fits
from finextract.backbones.kinds import PICKLE_SUFFIXES, check_pickle, is_single_file, no_safetensors_hint, safetensors_flag
from finextract.backbones.pipelines import load_pipeline

if TYPE_CHECKING:
    from finextract.backbones.sd import LatentDiffusionBackbone

logger = logging.getLogger(__name__)


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
    st = safetensors_flag(allow_pickle)
    finetuned_tes: list[torch.nn.Module | None] = []
    te_names = ["text_encoder", "text_encoder_2"][:len(backbone.text_encoders)]
    if is_single_file(spec):
        check_pickle(spec, allow_pickle)
        if backbone.config_source is None:
            raise ValueError(f"{spec}: reading a single-file fine-tune needs the base's diffusers configs; "
                             "load the base from a diffusers folder/hub id or with config=...")
        kind = "sdxl" if backbone.name == "sdxl" else "sd"
        shared = {"vae": backbone.vae, "tokenizer": backbone.tokenizers[0]}
        if kind == "sdxl":
            shared["tokenizer_2"] = backbone.tokenizers[1]
        pipe = load_pipeline(kind, spec, dtype, allow_pickle, config=backbone.config_source, variant=None,
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
                    hint = no_safetensors_hint(err, spec, allow_pickle)
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
