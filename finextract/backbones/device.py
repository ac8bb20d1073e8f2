"""Which device and dtype to run on; light to import (no diffusers)."""
from __future__ import annotations

import torch

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` → CUDA when there is a GPU, else CPU; a CUDA device that is not there is a clear error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    target = torch.device(device)
    if target.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (target.index or 0) >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA device(s) "
                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                             "use device auto or cpu")
    return target


def resolve_dtype(precision: str | torch.dtype, device: str | torch.device = "auto") -> torch.dtype:
    """``"auto"`` → fp16 on CUDA, fp32 elsewhere; CPU kernels for fp16 convolutions are slow or missing.

    Only decides the dtype for ``device``; whether that device exists is :func:`resolve_device`'s question.
    """
    device = resolve_device(device) if device is None or str(device) == "auto" else torch.device(device)
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
