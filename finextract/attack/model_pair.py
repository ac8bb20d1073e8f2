"""The pretrained θ and the fine-tuned θ' behind one backbone, asked for noise predictions.

Every sampling method needs one or two predictions per step, each from θ or θ' under some
conditioning. A pair answers a list of such requests with as few UNet forwards as it can:

- ``LoraPair``: one UNet carrying the adapter; all requests go through **one** forward over the
  stacked batch, with the adapter switched on per row (pretrained rows use no adapter).
- ``TwoUNetPair`` (DreamBooth): two UNets sharing the backbone's VAE and text encoders; one
  forward per model that is asked for.
- ``SingleModel`` (the never-fine-tuned control row): θ answers for θ'.
- ``PatchedUNetPair`` (DreamBooth, one UNet in memory) lives in :mod:`finextract.attack.dreambooth_memory`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from finextract.backbones.base import Backbone, Conditioning

PRETRAINED = "pretrained"
FINETUNED = "finetuned"
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass(frozen=True)
class EpsRequest:
    model: str  # PRETRAINED or FINETUNED
    cond: Conditioning


class ModelPair:
    backbone: Backbone

    def predict(self, latents: torch.Tensor, t: torch.Tensor, requests: list[EpsRequest]) -> list[torch.Tensor]:
        raise NotImplementedError

    def rows_per_image(self, models: list[str]) -> int:
        """UNet batch rows one image takes in the largest forward of a step that serves ``models``.

        One forward over every request here; a pair that splits requests across UNets says less.
        """
        return len(models)

    def _forward(self, unet: torch.nn.Module, latents: torch.Tensor, t: torch.Tensor,
                 conds: list[Conditioning], **kwargs) -> list[torch.Tensor]:
        """One UNet forward over len(conds) copies of ``latents``; split back per request."""
        b = latents.shape[0]
        stacked = latents.repeat(len(conds), *([1] * (latents.ndim - 1)))
        cond = Conditioning.cat([c.repeat(b) for c in conds])
        prediction = self.backbone.predict(unet, stacked, t, cond, **kwargs)
        return list(prediction.split(b))


class SingleModel(ModelPair):
    """θ' = θ: the control row, sampled from the pretrained model with the same caption."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone

    def predict(self, latents, t, requests):
        return self._forward(self.backbone.unet, latents, t, [r.cond for r in requests])


class TwoUNetPair(ModelPair):
    """DreamBooth: θ is ``backbone.unet``, θ' a second full UNet; VAE and text encoders are shared."""

    def __init__(self, backbone: Backbone, finetuned_unet: torch.nn.Module):
        self.backbone = backbone
        self.finetuned_unet = finetuned_unet

    def rows_per_image(self, models):
        return max(models.count(PRETRAINED), models.count(FINETUNED))  # one forward per UNet

    def predict(self, latents, t, requests):
        out: list[torch.Tensor | None] = [None] * len(requests)
        for model, unet in ((PRETRAINED, self.backbone.unet), (FINETUNED, self.finetuned_unet)):
            rows = [i for i, r in enumerate(requests) if r.model == model]
            if rows:
                for i, eps in zip(rows, self._forward(unet, latents, t, [requests[i].cond for i in rows])):
                    out[i] = eps
        return out  # type: ignore[return-value]


def lora_layers(unet: torch.nn.Module) -> list[torch.nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [m for m in unet.modules() if isinstance(m, LoraLayer)]


@contextlib.contextmanager
def per_row_adapters(unet: torch.nn.Module, adapter_names: list[str]) -> Iterator[None]:
    """Route each batch row through its own adapter (peft's mixed-batch forward).

    diffusers' UNet.forward does not take ``adapter_names``; peft's LoRA layers do. A forward
    pre-hook on every LoRA layer hands them the per-row names. peft allows this only in eval mode.
    """
    if unet.training:
        raise RuntimeError("mixed-adapter batches need the UNet in eval mode")

    def hook(_module, args, kwargs):
        kwargs["adapter_names"] = adapter_names
        return args, kwargs

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in lora_layers(unet)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class LoraPair(ModelPair):
    """LoRA: θ' = θ + adapter ``adapter_name`` on ``backbone.unet``; one forward per step."""

    def __init__(self, backbone: Backbone, adapter_name: str = FINETUNED):
        self.backbone = backbone
        self.adapter_name = adapter_name
        if not lora_layers(backbone.unet):
            raise ValueError("LoraPair needs a UNet with LoRA adapters loaded")

    def predict(self, latents, t, requests):
        b = latents.shape[0]
        names = [self.adapter_name if r.model == FINETUNED else BASE_ADAPTER
                 for r in requests for _ in range(b)]
        with per_row_adapters(self.backbone.unet, names):
            return self._forward(self.backbone.unet, latents, t, [r.cond for r in requests])
