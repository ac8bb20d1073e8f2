"""Time and peak memory of sampling jobs, one CSV row per job (the paper's Table 6, per method × ft).

The paper's cost claim is that FineXtract runs at CFG's speed (both need two UNet passes per
step) and pays only the memory of holding a second model. Recording seconds per image and
peak memory for every sampling job lets a run check that claim on its own hardware.

Peak memory is what the accelerator allocator saw (``torch.cuda.max_memory_allocated``, reset
at the start of the job) on CUDA. On CPU there is no per-job peak to reset, so the column holds
the process's peak resident set size since it started (``getrusage``), an upper bound that
includes everything the process loaded before the job; ``memory_kind`` says which one a row holds.
"""
from __future__ import annotations

import csv
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

COLUMNS = ["method", "ft", "images", "seconds", "seconds_per_image", "peak_memory_gb", "memory_kind", "device"]
GIB = 1024 ** 3


@dataclass
class PerfRecord:
    method: str
    ft: str
    images: int
    seconds: float
    seconds_per_image: float
    peak_memory_gb: float
    memory_kind: str  # "cuda_max_allocated" | "cpu_peak_rss_process"
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(row.pop("extra"))
        return row


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def cpu_peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


class PerfRecorder:
    """Context manager around one sampling job::

        recorder = PerfRecorder(device=backbone.device)
        with recorder:
            sample_to_folder(...)
        row = recorder.row(method="finextract", ft="lora", images=len(seeds))

    or count images as they come with :meth:`add_images` and :meth:`append_csv` the row.
    CUDA work is asynchronous, so the clock stops only after a synchronize.
    """

    def __init__(self, method: str = "", ft: str = "", device: str | torch.device = "cpu", **extra: Any):
        self.method, self.ft = method, ft
        self.device = torch.device(device)
        self.extra = extra
        self.images = 0
        self.seconds: float | None = None
        self.peak_bytes = 0
        self.memory_kind = ""
        self._start = 0.0

    def __enter__(self) -> "PerfRecorder":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._start = time.perf_counter()
        return self

    def add_images(self, n: int) -> None:
        self.images += int(n)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes, self.memory_kind = torch.cuda.max_memory_allocated(self.device), "cuda_max_allocated"
        else:
            self.peak_bytes, self.memory_kind = cpu_peak_rss_bytes(), "cpu_peak_rss_process"
        self.seconds = time.perf_counter() - self._start

    def record(self, method: str | None = None, ft: str | None = None, images: int | None = None,
               **extra: Any) -> PerfRecord:
        if self.seconds is None:
            raise RuntimeError("the recorder's block has not finished yet")
        n = self.images if images is None else int(images)
        return PerfRecord(method if method is not None else self.method, ft if ft is not None else self.ft, n,
                          round(self.seconds, 4), round(self.seconds / n, 4) if n else float("nan"),
                          round(self.peak_bytes / GIB, 4), self.memory_kind, device_name(self.device),
                          {**self.extra, **extra})

    def row(self, method: str | None = None, ft: str | None = None, images: int | None = None,
            **extra: Any) -> dict[str, Any]:
        """One CSV row (COLUMNS first, then any extra keys); arguments override what the recorder knows."""
        return self.record(method, ft, images, **extra).row()

    def append_csv(self, path: str | Path, **overrides: Any) -> Path:
        return append_row(path, self.row(**overrides))


def append_row(path: str | Path, row: dict[str, Any]) -> Path:
    """Append one row, writing the header when the file is new (extra keys become extra columns then).

    An existing file keeps its header: keys it lacks are dropped rather than shifting columns.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    fields = COLUMNS + [k for k in row if k not in COLUMNS]
    if not new:
        with path.open(newline="") as f:
            fields = next(csv.reader(f), fields)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
    return path
