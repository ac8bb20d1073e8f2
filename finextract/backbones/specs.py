"""What a model or checkpoint spec string names, decided without touching the network or loading torch.

Shared by the config checks (before any job) and the loaders (in the job), so both read a spec the
same way: an existing path is local; ``owner/repo`` (or ``owner/repo/file.safetensors``) whose first
part is not a local folder is a hub id; anything else is a local path that does not exist.
"""
from __future__ import annotations

from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")


def hub_shaped(spec: str) -> bool:
    """owner/repo, or owner/repo/<file with a weight suffix>, whose first part is not a local folder."""
    parts = spec.split("/")
    if spec.startswith((".", "/", "~")) or "\\" in spec or Path(parts[0]).is_dir() or "" in parts:
        return False
    if len(parts) == 2:
        return not parts[1].lower().endswith(WEIGHT_SUFFIXES)
    return len(parts) > 2 and spec.lower().endswith(WEIGHT_SUFFIXES)


def finetuned_kind(spec: str) -> tuple[str, str]:
    """A fine-tuned checkpoint spec: ``lora:<file or folder>`` is a LoRA, anything else a DreamBooth UNet."""
    return ("lora", spec[len("lora:"):]) if spec.startswith("lora:") else ("dreambooth", spec)
