"""DreamBooth with one UNet in memory: θ' whole, θ kept as what differs from it (`sampling.memory`).

θ and θ' are two full UNets; at Stable Diffusion scale two of them may not fit. ``PatchedUNetPair`` holds θ''s
UNet and θ as its exact differences (``delta``), as compressed differences (``delta-fp16``, ``delta-bf16``,
``delta-int8``) or as a low-precision copy (``pretrained-bf16``, ``pretrained-fp16``), and answers the same
requests as :class:`~finextract.attack.model_pair.TwoUNetPair`; :func:`reduce_memory` turns one into the other.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
from typing import Iterator

import torch

from finextract.attack.model_pair import FINETUNED, PRETRAINED, ModelPair, TwoUNetPair
from finextract.backbones.base import Backbone

MEMORY_MODES = ("two-unets", "delta", "delta-fp16", "delta-bf16", "delta-int8", "pretrained-bf16", "pretrained-fp16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
_EXACT_BELOW = 4096  # 1-D tensors and tensors this small (biases, norms) are kept exactly in every mode


class _Stored:
    """θ's value of one tensor that differs from θ'."""

    nbytes: int

    def value(self, finetuned: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """θ's tensor, rebuilt from θ''s (``finetuned``), in ``out`` when given (a reused scratch buffer)."""
        raise NotImplementedError


class _Exact(_Stored):
    def __init__(self, pretrained: torch.Tensor, device: torch.device | None):
        # a copy, not the loaded tensor: loaded tensors share one memory map per safetensors file, and
        # keeping any of them kept all of θ resident (SD 1.5 with delta-int8: 9.5 GB peak instead of 6.3 GB)
        self.tensor = pretrained.detach().to(device, copy=True) if device is not None else pretrained.detach().clone()
        self.nbytes = self.tensor.numel() * self.tensor.element_size()

    def value(self, finetuned, out=None):
        return self.tensor.to(finetuned.device, non_blocking=True)  # no arithmetic: ``out`` is not needed


class _CastDelta(_Stored):
    """θ − θ' in a 16-bit float: fine-tuning differences are small, so their rounding error is too."""

    def __init__(self, pretrained, finetuned, dtype, device):
        delta = (pretrained.detach() - finetuned.detach()).to(dtype)
        self.delta = delta.to(device) if device is not None else delta
        self.nbytes = self.delta.numel() * self.delta.element_size()

    def value(self, finetuned, out=None):
        if out is None:
            return finetuned + self.delta.to(finetuned.device, non_blocking=True).to(finetuned.dtype)
        out.copy_(self.delta, non_blocking=True)
        return out.add_(finetuned)


class _Int8Delta(_Stored):
    """θ − θ' as int8 with one scale per output row (absmax / 127): a quarter of fp32's bytes."""

    def __init__(self, pretrained, finetuned, device):
        delta = (pretrained.detach().float() - finetuned.detach().float()).reshape(pretrained.shape[0], -1)
        scale = delta.abs().amax(dim=1, keepdim=True) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.round(delta / scale).clamp_(-127, 127).to(torch.int8)
        del delta
        self.q = q.to(device) if device is not None else q
        self.scale = scale.to(self.q.device)
        self.nbytes = self.q.numel() + self.scale.numel() * 4

    def value(self, finetuned, out=None):
        scale = self.scale.to(finetuned.device, non_blocking=True).to(finetuned.dtype)
        if out is None:
            q = self.q.to(finetuned.device, non_blocking=True).to(finetuned.dtype)
            return torch.addcmul(finetuned.reshape(q.shape), q, scale).reshape(finetuned.shape)
        flat = out.view(self.q.shape)
        flat.copy_(self.q, non_blocking=True)
        torch.addcmul(finetuned.reshape(self.q.shape), flat, scale, out=flat)  # two passes over the layer
        return out


def release_memory(device: torch.device | str | None = None) -> None:
    """Give freed tensors back: the CUDA cache, and glibc's free lists on CPU (so RSS shows the saving)."""
    gc.collect()
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _rebuilt_numel(unet: torch.nn.Module, name: str, entries: dict) -> list[int]:
    """Element counts of a module's tensors that are rebuilt arithmetically (what needs scratch space)."""
    tensors = _module_tensors(unet.get_submodule(name))
    return [tensors[t].numel() for t, stored in entries.items() if not isinstance(stored, _Exact)]


_DROP_AT_LEAST = 1 << 20  # bytes; smaller tensors are not worth a system call


def _drop_pages(tensor: torch.Tensor) -> None:
    """Hand a CPU tensor's resident pages back to the OS (madvise DONTNEED) before it is discarded.

    Only for tensors nothing reads again: θ's tensors while θ' is streamed in. Its whole pages are
    dropped (a file-backed map re-reads them if touched, anonymous memory reads zeros); neighbours
    sharing its first or last page are left alone.
    """
    if tensor.device.type != "cpu" or tensor.nbytes < _DROP_AT_LEAST:
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        page = __import__("os").sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):  # not glibc / Linux
        return
    start, end = tensor.data_ptr(), tensor.data_ptr() + tensor.nbytes
    first, last = -(-start // page) * page, end // page * page
    if last > first:
        libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), 4)  # MADV_DONTNEED


def _json_value(value):
    """Config values as JSON has them (tuples are lists there)."""
    return [_json_value(v) for v in value] if isinstance(value, (list, tuple)) else value


def _module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = dict(module.named_parameters(recurse=False))
    out.update({k: v for k, v in module.named_buffers(recurse=False) if v is not None})
    return out


class PatchedUNetPair(ModelPair):
    """DreamBooth with **one** UNet in memory: θ''s, and θ as what it needs to differ from θ'.

    On construction θ''s UNet becomes ``backbone.unet`` and θ's UNet is given up. For θ's requests
    each layer whose tensors differ is patched just before its forward and restored right after
    (forward hooks; one layer's worth of temporary memory). ``memory`` says how θ is kept:

    - ``delta``: θ's tensors where they differ from θ', exactly (the same predictions as
      :class:`TwoUNetPair`; saves only the layers fine-tuning left unchanged);
    - ``delta-fp16`` / ``delta-bf16`` / ``delta-int8``: θ − θ' in that format (int8: one scale per
      output row), θ rebuilt as θ' + Δ per layer; 1-D tensors and those under 4,096 elements stay exact;
    - ``pretrained-bf16`` / ``pretrained-fp16``: θ's whole UNet cast down, run in that dtype.

    ``storage_device`` (e.g. ``"cpu"`` when sampling on a GPU) keeps θ's part off the accelerator,
    copied in layer by layer. ``needs_pretrained=False`` (direct, CFG) keeps nothing of θ at all.
    θ''s requests run the UNet untouched: ``direct`` and ``cfg`` images are identical to the
    two-UNet pair's.
    """

    def __init__(self, backbone: Backbone, finetuned_unet: torch.nn.Module, memory: str = "delta", *,
                 storage_device: torch.device | str | None = None, needs_pretrained: bool = True):
        if memory not in MEMORY_MODES or memory == "two-unets":
            raise ValueError(f"memory must be one of {MEMORY_MODES[1:]}, not {memory!r}")
        if storage_device is not None and memory.startswith("pretrained-"):
            raise ValueError(f"{memory} keeps a whole UNet that runs beside θ'; @{storage_device} is for the delta modes")
        self.backbone = backbone
        self.memory = memory
        self.needs_pretrained = needs_pretrained
        self.pretrained_unet: torch.nn.Module | None = None
        self._patches: dict[str, dict[str, _Stored]] = {}
        device = torch.device(storage_device) if storage_device is not None else None
        pretrained = backbone.unet
        backbone.unet = finetuned_unet
        if needs_pretrained and memory.startswith("pretrained-"):
            self.pretrained_dtype = _DTYPES[memory.split("-", 1)[1]]
            self.pretrained_unet = pretrained.to(device or finetuned_unet.device, self.pretrained_dtype).eval()
        elif needs_pretrained:
            finetuned_modules = dict(finetuned_unet.named_modules())
            for name, module in pretrained.named_modules():
                theirs = _module_tensors(finetuned_modules[name])
                for tname, tensor in _module_tensors(module).items():
                    self._keep(name, tname, tensor, theirs[tname], device)
                    tensor.data = torch.empty(0, dtype=tensor.dtype, device=tensor.device)  # free as we go
        del pretrained
        self._finish(device)

    def _keep(self, name: str, tname: str, tensor: torch.Tensor, other: torch.Tensor,
              device: torch.device | None) -> None:
        """Record what θ's ``tensor`` needs beside θ''s ``other`` (nothing when they are equal)."""
        if tensor.shape != other.shape:
            raise ValueError(f"{name}.{tname}: θ {tuple(tensor.shape)} vs θ' {tuple(other.shape)}")
        if torch.equal(tensor, other):
            return
        kind = self.memory.split("-", 1)[1] if "-" in self.memory else None
        if kind is None or tensor.ndim < 2 or tensor.numel() < _EXACT_BELOW or not tensor.is_floating_point():
            stored: _Stored = _Exact(tensor, device)
        elif kind == "int8":
            stored = _Int8Delta(tensor, other, device)
        else:
            stored = _CastDelta(tensor, other, _DTYPES[kind], device)
        self._patches.setdefault(name, {})[tname] = stored

    def _finish(self, device: torch.device | None) -> None:
        unet = self.backbone.unet
        self._largest = max((sum(_rebuilt_numel(unet, name, entries))
                             for name, entries in self._patches.items()), default=0)
        if device is not None and device.type == "cpu" and torch.cuda.is_available():
            for stored in (s for entries in self._patches.values() for s in entries.values()):
                for attr in ("tensor", "delta", "q", "scale"):
                    if hasattr(stored, attr):
                        setattr(stored, attr, getattr(stored, attr).pin_memory())
        release_memory(next(unet.parameters()).device)

    @classmethod
    @torch.no_grad()
    def from_folder(cls, backbone: Backbone, folder, memory: str = "delta", *,
                    storage_device: torch.device | str | None = None,
                    needs_pretrained: bool = True) -> "PatchedUNetPair | None":
        """Stream θ' from a diffusers UNet folder (or a folder holding ``unet/``, as the workflow's DreamBooth
        fine-tuning writes) into ``backbone.unet`` tensor by tensor, so θ and θ' are never both whole in memory.

        Returns ``None`` where it cannot stream — no safetensors, text encoders next to the UNet (the
        loaders attach those), a ``pretrained-*`` mode — and the caller loads the usual way.
        """
        import json
        from pathlib import Path

        from safetensors import safe_open

        root = Path(folder)
        unet_dir = root / "unet" if (root / "unet").is_dir() else root
        import re

        # the plain weights, whole or sharded; weight variants (.fp16.safetensors) are left to the loaders
        files = sorted(f for f in unet_dir.glob("diffusion_pytorch_model*.safetensors")
                       if re.fullmatch(r"diffusion_pytorch_model(-\d{5}-of-\d{5})?\.safetensors", f.name))
        if (memory not in MEMORY_MODES or memory == "two-unets" or memory.startswith("pretrained-")
                or not (unet_dir / "config.json").is_file() or not files
                or (unet_dir != root and any(root.glob("text_encoder*")))):
            return None
        if storage_device is not None and memory.startswith("pretrained-"):
            raise ValueError(f"{memory}: @{storage_device} is for the delta modes")
        unet = backbone.unet
        config = json.loads((unet_dir / "config.json").read_text())
        mine = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
        differing = sorted(k for k in mine if k in config and _json_value(config[k]) != _json_value(mine[k]))
        handles = [safe_open(str(f), framework="pt") for f in files]
        where = {key: h for h in handles for key in h.keys()}
        ours = {f"{name}.{t}": (name, t, tensor) for name, module in unet.named_modules()
                for t, tensor in _module_tensors(module).items()}
        if differing or set(where) != set(ours):
            extra, missing = sorted(set(where) - set(ours)), sorted(set(ours) - set(where))
            raise ValueError(f"{unet_dir}: fine-tuned UNet does not match the base model (config keys differing: "
                             f"{differing[:3]}, {len(missing)} tensors missing, {len(extra)} extra, "
                             f"e.g. {(missing or extra or ['-'])[0]})")
        self = cls.__new__(cls)
        self.backbone, self.memory, self.needs_pretrained = backbone, memory, needs_pretrained
        self.pretrained_unet, self._patches = None, {}
        device = torch.device(storage_device) if storage_device is not None else None
        for key, (name, tname, tensor) in ours.items():
            other = where[key].get_tensor(key).to(tensor.device, tensor.dtype)
            if tuple(other.shape) != tuple(tensor.shape):
                raise ValueError(f"{unet_dir}: {key} is {tuple(other.shape)} in θ', {tuple(tensor.shape)} in θ")
            if needs_pretrained:
                self._keep(name, tname, tensor, other, device)
            _drop_pages(tensor)  # θ's loaded tensors share a memory map that lives until the last one goes
            tensor.data = other  # θ's UNet becomes θ', one tensor at a time
        del handles, where
        self._finish(device)
        return self

    @property
    def stored_bytes(self) -> int:
        """Bytes held for θ beyond θ''s UNet."""
        if self.pretrained_unet is not None:
            return sum(t.numel() * t.element_size() for t in self.pretrained_unet.state_dict().values())
        return sum(s.nbytes for entries in self._patches.values() for s in entries.values())

    @property
    def patched_tensors(self) -> int:
        return sum(len(entries) for entries in self._patches.values())

    def rows_per_image(self, models):
        return max(models.count(PRETRAINED), models.count(FINETUNED))  # one forward per model, as TwoUNetPair

    @torch.no_grad()
    def rebuild_seconds(self) -> float:
        """Wall time to rebuild every differing layer of θ once, without running it: what a θ forward costs
        beyond the forward itself (for benchmarks)."""
        import time

        unet = self.backbone.unet
        ref = next(unet.parameters())
        scratch = torch.empty(max(self._largest, 1), dtype=ref.dtype, device=ref.device)
        if ref.device.type == "cuda":
            torch.cuda.synchronize(ref.device)
        start = time.perf_counter()
        for name, entries in self._patches.items():
            module, offset = unet.get_submodule(name), 0
            for tname, stored in entries.items():
                tensor = getattr(module, tname)
                out = None
                if not isinstance(stored, _Exact):
                    out = scratch[offset:offset + tensor.numel()].view(tensor.shape)
                    offset += tensor.numel()
                stored.value(tensor.data, out)
        if ref.device.type == "cuda":
            torch.cuda.synchronize(ref.device)
        return time.perf_counter() - start

    @contextlib.contextmanager
    def pretrained_weights(self) -> Iterator[None]:
        """``backbone.unet`` computes θ inside this block (each differing layer patched for its forward)."""
        unet = self.backbone.unet
        modules = dict(unet.named_modules())
        patched: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # per running layer: (tensor, θ''s data)

        # Rebuilt tensors go into scratch buffers reused from layer to layer (one per nesting depth), so a
        # forward of θ allocates nothing per layer: fresh allocations of every layer's size cost page faults.
        scratch: list[torch.Tensor] = []
        ref = next(unet.parameters())

        def before(module, _args, entries):
            depth = len(patched)
            saved = patched.setdefault(id(module), [])
            need = sum(t.numel() for name, t in _module_tensors(module).items()
                       if name in entries and not isinstance(entries[name], _Exact))
            if need and (len(scratch) <= depth or scratch[depth].numel() < need):
                buffer = torch.empty(max(need, self._largest), dtype=ref.dtype, device=ref.device)
                scratch[depth:depth + 1] = [buffer]
            offset = 0
            for tname, stored in entries.items():
                tensor = getattr(module, tname)
                saved.append((tensor, tensor.data))
                out = None
                if not isinstance(stored, _Exact):
                    out = scratch[depth][offset:offset + tensor.numel()].view(tensor.shape)
                    offset += tensor.numel()
                tensor.data = stored.value(tensor.data, out)

        def restore(saved):
            for tensor, original in saved:
                tensor.data = original

        def after(module, _args, _output):
            restore(patched.pop(id(module), []))

        handles = []
        for name, entries in self._patches.items():
            module = modules[name]
            handles.append(module.register_forward_pre_hook(lambda m, a, e=entries: before(m, a, e)))
            handles.append(module.register_forward_hook(after))
        try:
            yield
        finally:
            for saved in patched.values():  # a forward that raised left its layer patched
                restore(saved)
            patched.clear()
            for handle in handles:
                handle.remove()

    def predict(self, latents, t, requests):
        if not self.needs_pretrained and any(r.model == PRETRAINED for r in requests):
            raise RuntimeError("this pair was built with needs_pretrained=False: it keeps nothing of θ")
        out: list[torch.Tensor | None] = [None] * len(requests)
        for model in (PRETRAINED, FINETUNED):
            rows = [i for i, r in enumerate(requests) if r.model == model]
            if not rows:
                continue
            conds = [requests[i].cond for i in rows]
            if model == FINETUNED:
                eps = self._forward(self.backbone.unet, latents, t, conds)
            elif self.pretrained_unet is not None:
                dtype = self.pretrained_dtype
                low = self._forward(self.pretrained_unet, latents.to(dtype), t,
                                    [c.to(latents.device, dtype) for c in conds])
                eps = [e.to(latents.dtype) for e in low]
            else:
                with self.pretrained_weights():
                    eps = self._forward(self.backbone.unet, latents, t, conds)
            for i, e in zip(rows, eps):
                out[i] = e
        return out  # type: ignore[return-value]


def reduce_memory(pair: ModelPair, memory: str = "two-unets", *, needs_pretrained: bool = True,
                  storage_device: torch.device | str | None = None) -> ModelPair:
    """Apply a sampling memory option (:data:`MEMORY_MODES`) to a DreamBooth :class:`TwoUNetPair`.

    ``two-unets`` and pairs that hold one UNet already (LoRA, the control row) come back unchanged.
    """
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory must be one of {MEMORY_MODES}, not {memory!r}")
    if memory == "two-unets" or not isinstance(pair, TwoUNetPair):
        return pair
    patched = PatchedUNetPair(pair.backbone, pair.finetuned_unet, memory, storage_device=storage_device,
                              needs_pretrained=needs_pretrained)
    pair.finetuned_unet = None  # type: ignore[assignment]  # the old pair no longer describes the backbone
    return patched
