"""Where a fine-tuning run keeps the model it had after S steps per image (the study's ladder of snapshots).

Apart from ``finetune.py`` because the workflow names these folders while it parses, and parsing must not
import torch.
"""
from __future__ import annotations


def snapshot_name(steps_per_image: int) -> str:
    """The snapshot folder's name inside the run's output folder."""
    return f"spi{steps_per_image}"
