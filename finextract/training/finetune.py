"""Personalisation: DreamBooth (full UNet) and LoRA fine-tuning over any backbone.

The paper's recipe: one caption for all N0 images, 200·N0 steps, batch 1, constant learning
rate, AdamW (0.9, 0.999, wd 1e-2), gradient clipping at 1.0, text encoder frozen, no prior
preservation. LoRA adapters (rank r, alpha r, Gaussian init) on ``to_q, to_k, to_v, to_out.0``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from finextract.backbones.base import ADAPTER_NAME, Backbone, images_to_tensor
from finextract.io import atomic_path, save_json
from finextract.training.losses import diffusion_loss
from finextract.training.snapshots import snapshot_name

FINETUNE_METHODS = ("dreambooth", "lora")


@dataclass
class FinetuneConfig:
    # what the workflow configures: no defaults here, the schema's `finetune` section holds them
    method: str
    lr: float
    steps_per_image: int
    batch_size: int
    seed: int
    augment: str  # a defence (finextract.training.augment): none | cutout | randaugment
    lora_rank: int | None = None  # LoRA only (finetune.lora.rank)
    lora_targets: list[str] | None = None  # LoRA only (finetune.lora.targets)
    # the recipe's constants
    weight_decay: float = 1e-2
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.method == "lora" and (not self.lora_rank or not self.lora_targets):
            raise ValueError("LoRA fine-tuning needs lora_rank and lora_targets (finetune.lora.rank, .targets)")

    def total_steps(self, n_images: int) -> int:
        return self.steps_per_image * n_images


def lora_config(rank: int, targets: list[str]):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(targets))


def trainable_unet(backbone: Backbone, cfg: FinetuneConfig, in_place: bool = False) -> torch.nn.Module:
    """The UNet to train. DreamBooth trains a copy unless ``in_place`` (then θ itself is overwritten:
    one UNet less in memory, ~10 GB for SDXL in fp32, for callers that do not need θ afterwards)."""
    if cfg.method == "dreambooth":
        unet = backbone.unet if in_place else copy.deepcopy(backbone.unet)
        unet.requires_grad_(True)
        return unet
    if cfg.method == "lora":
        unet = backbone.unet
        unet.requires_grad_(False)
        unet.add_adapter(lora_config(cfg.lora_rank, cfg.lora_targets), adapter_name=ADAPTER_NAME)
        return unet
    raise ValueError(f"unknown fine-tuning method {cfg.method!r}; expected one of {FINETUNE_METHODS}")


def finetune(backbone: Backbone, images: np.ndarray, caption: str, cfg: FinetuneConfig,
             out_dir: str | Path, progress: bool = True, in_place: bool = False,
             snapshots: tuple[int, ...] = ()) -> Path:
    """Fine-tune on ``images`` with ``caption``; write the checkpoint and ``train_log.csv``.

    ``in_place``: train DreamBooth on ``backbone.unet`` itself instead of a copy (see trainable_unet).
    ``snapshots``: steps per image at which the model so far is also saved, in ``out_dir/spi<S>/``.
    With a constant learning rate and per-step seeded batches, the snapshot at S is the checkpoint a run
    with ``steps_per_image = S`` (and the same seed) writes, so one run gives a ladder of fine-tuning
    strengths (the guidance study).
    """
    from finextract.training.augment import augmenter

    out_dir = Path(out_dir)
    torch.manual_seed(cfg.seed)
    device = backbone.device
    augment = augmenter(cfg.augment)
    pixels = images_to_tensor(images)
    with torch.no_grad():
        latents = backbone.to_latents(pixels.to(device)) if augment is None else None
        cond = backbone.encode_captions([caption]).to(device)
    unet = trainable_unet(backbone, cfg, in_place)
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay, eps=1e-8)
    steps = cfg.total_steps(len(images))
    snapshot_at = {s * len(images): s for s in snapshots}
    if any(s < 1 or s > cfg.steps_per_image for s in snapshots):
        raise ValueError(f"snapshots {list(snapshots)} must lie in 1..steps_per_image ({cfg.steps_per_image})")
    log_rows = ["step,loss,seconds"]
    t0 = time.time()
    bar = tqdm(range(steps), desc=f"{cfg.method} fine-tuning", unit="step", disable=not progress)
    for step in bar:
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        index = torch.randint(0, len(images), (cfg.batch_size,), generator=generator)
        if augment is None:
            batch = latents[index]
        else:  # a fresh augmentation of each image at every step, seeded by the step
            with torch.no_grad():
                batch = backbone.to_latents(augment(pixels[index], cfg.seed * 1_000_003 + step).to(device))
        loss = diffusion_loss(backbone, unet, batch, cond.repeat(cfg.batch_size), generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        log_rows.append(f"{step},{loss.item():.5f},{time.time() - t0:.2f}")
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step + 1 in snapshot_at:
            spi = snapshot_at[step + 1]
            unet.eval()
            _save_run(backbone, unet, replace(cfg, steps_per_image=spi), out_dir / snapshot_name(spi),
                      len(images), caption, t0)
            unet.train()
    unet.eval()
    save_checkpoint(backbone, unet, cfg, out_dir)
    with atomic_path(out_dir / "train_log.csv") as tmp:
        tmp.write_text("\n".join(log_rows) + "\n")
    _save_run(backbone, None, cfg, out_dir, len(images), caption, t0)
    return out_dir


def _save_run(backbone: Backbone, unet: torch.nn.Module | None, cfg: FinetuneConfig, out_dir: Path,
              n_images: int, caption: str, t0: float) -> None:
    """The checkpoint (unless ``unet`` is None: already written) and ``finetune.json``."""
    if unet is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(backbone, unet, cfg, out_dir)
    save_json(out_dir / "finetune.json", {**asdict(cfg), "steps": cfg.total_steps(n_images), "n_images": n_images,
                                          "caption": caption, "seconds": round(time.time() - t0, 1)})


def save_checkpoint(backbone: Backbone, unet: torch.nn.Module, cfg: FinetuneConfig, out_dir: Path) -> None:
    if cfg.method == "dreambooth":
        tmp = out_dir / "unet.tmp"
        unet.save_pretrained(tmp, safe_serialization=True)
        final = out_dir / "unet"
        if final.exists():
            import shutil
            shutil.rmtree(final)
        tmp.rename(final)
        return
    backbone.save_lora(unet, out_dir, rank=cfg.lora_rank, targets=cfg.lora_targets)
