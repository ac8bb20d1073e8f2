"""Pretraining the tiny world's base model, resumably.

v-prediction on a cosine schedule with min-SNR-5 loss weighting, AdamW with warm-up and
cosine decay, 10 % empty captions (so CFG and ε_θ(x, t) are meaningful) and an EMA copy.
Batches are drawn from a generator seeded by (seed, step), so a resumed run sees exactly the
batches an uninterrupted one would.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from finextract.backbones import text_encoder as text
from finextract.backbones import haar
from finextract.backbones.tiny import DEFAULT_SCHEDULER, TinyPixelBackbone, build_unet
from finextract.io import atomic_path
from finextract.training.losses import diffusion_loss
from finextract.backbones.base import Conditioning, images_to_tensor


@dataclass
class PretrainConfig:
    # what the workflow configures: no defaults here, the schema's `world.pretrain` holds them
    steps: int
    batch_size: int
    lr: float
    seed: int
    checkpoint_every: int
    block_out_channels: tuple[int, ...]
    layers_per_block: int
    autocast: str                  # "bf16": bfloat16 autocast on CPU (faster for larger UNets: docs/tiny-world.md)
    channels_last: bool            # NHWC UNet weights: faster for some sizes on CPU (docs/tiny-world.md)
    band_basis: bool               # denoise unit-variance Haar bands of the unshuffle (backbones/haar.py)
    # the recipe's constants (not configurable; docs/tiny-world.md says why each)
    warmup: int = 300
    weight_decay: float = 0.01
    empty_caption_prob: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    # how a run is carried out, not what it computes; "off" by default
    keep_every: int = 0            # also keep the EMA export of every keep_every-th step in out/ckpt-<step>
    cpu_budget_s: float = 0.0      # stop (checkpointed) once this process has used this much CPU time; 0: no limit
    threads: int = 2
    init_from: str | None = None   # a state.pt (unshuffle basis: converted) or portable state to start from, fresh optimizer


def load_caption_table(path: Path, n_images: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows to draw batches from, as [R, 2] (image index, caption index), and the captions' token states.

    A narrow corpus has one caption per image (row = image); a broad one (``corpus.broad``) one row per image
    and caption template, with an ``image`` column. Each distinct caption is encoded once.
    """
    table = pd.read_csv(path, keep_default_na=False)
    image = table["image"].to_numpy() if "image" in table.columns else np.arange(len(table))
    if len(table) == 0 or image.min() < 0 or image.max() >= n_images:
        raise ValueError(f"{path}: image indices must lie in [0, {n_images}), one row per caption")
    unique, caption_index = np.unique(table["caption"].astype(str).to_numpy(), return_inverse=True)
    states = cached_caption_states(Path(path).with_name("caption_states.safetensors"), unique.tolist())
    rows = torch.from_numpy(np.stack([image, caption_index], axis=1).astype(np.int64))
    return rows, states


def cached_caption_states(cache: Path, captions: list[str]) -> torch.Tensor:
    """``text.encode_captions(captions)``, kept beside the corpus (a broad corpus has ~21k distinct captions,
    minutes of MiniLM on a CPU); the cache is keyed by the captions' digest and rebuilt when they change."""
    from safetensors.torch import load_file, save_file

    digest = hashlib.sha256("\n".join(captions).encode()).hexdigest()
    if cache.exists():
        stored = load_file(cache)
        if "digest" in stored and bytes(stored["digest"].tolist()).decode() == digest:
            return stored["states"]
    states = text.encode_captions(captions)
    with atomic_path(cache, suffix=".safetensors") as tmp:
        save_file({"states": states.contiguous(), "digest": torch.tensor(list(digest.encode()), dtype=torch.uint8)}, tmp)
    return states


def lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _save_state(path: Path, step: int, unet, ema, optimizer, cfg: PretrainConfig, restart: int = 0) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"step": step, "unet": unet.state_dict(), "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(), "config": json.dumps(asdict(cfg)), "restart": restart}, tmp)


PORTABLE_STATE = "state.safetensors"


def write_portable_state(state_file: Path, out_file: Path) -> int:
    """A compact, pickle-free copy of a run's ``state.pt`` to commit: the weights in fp32, the EMA in bf16, the
    step and the run's config; no optimizer moments (they would triple the size). ``init_from`` resumes from it
    with a fresh optimizer and a warm-up, so the continued run is close to, not bit-identical with, an
    uninterrupted one. Returns the step."""
    from safetensors.torch import save_file

    state = torch.load(state_file, weights_only=True)
    tensors = {f"unet.{k}": v.float().contiguous() for k, v in state["unet"].items()}
    tensors.update({f"ema.{k}": v.to(torch.bfloat16).contiguous() for k, v in state["ema"].items()})
    config = json.loads(state["config"])
    config["init_from"] = None  # a path on the machine that ran it: meaningless elsewhere
    with atomic_path(out_file, suffix=".safetensors") as tmp:
        save_file(tensors, tmp, metadata={"step": str(state["step"]), "config": json.dumps(config)})
    return int(state["step"])


def _init_from(state_file: Path, unet, ema, band_scales) -> int:
    """Weights (and EMA) from a state.pt or a portable state; an unshuffle-basis state is converted to bands."""
    if Path(state_file).suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(state_file), framework="pt") as handle:
            meta = handle.metadata()
            parts = {"unet.": {}, "ema.": {}}
            for key in handle.keys():
                prefix = key[:key.index(".") + 1]
                parts[prefix][key[len(prefix):]] = handle.get_tensor(key).float()
        unet.load_state_dict(parts["unet."])
        ema.load_state_dict(parts["ema."])
        if bool(json.loads(meta["config"]).get("band_basis")) != bool(band_scales):
            raise ValueError(f"{state_file} and this run differ in --band-basis: resume it with the same basis")
        return int(meta["step"])
    state = torch.load(state_file, weights_only=True)
    unet.load_state_dict(state["unet"])
    ema.load_state_dict(state["ema"])
    if band_scales:
        haar.convert_unet_to_bands(unet, band_scales)
        haar.convert_unet_to_bands(ema, band_scales)
    return int(state["step"])


def pretrain(corpus_dir: Path, out_dir: Path, cfg: PretrainConfig, log=print) -> Path:
    """Train (or resume) and write ``out_dir/model`` (EMA weights) and ``out_dir/loss.csv``."""
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # denormal weights/activations make CPU steps many times slower
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = images_to_tensor(np.load(corpus_dir / "images.npy"))
    caption_rows, caption_states = load_caption_table(corpus_dir / "captions.csv", len(images))
    resolution = images.shape[-1]
    empty = text.encode_captions([""])[0]

    torch.manual_seed(cfg.seed)
    unet = build_unet(resolution=resolution, block_out_channels=tuple(cfg.block_out_channels),
                      layers_per_block=cfg.layers_per_block)
    if cfg.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    scales = haar.unit_variance_scales(F.pixel_unshuffle(images, 2)) if cfg.band_basis else None
    backbone = TinyPixelBackbone(unet, DEFAULT_SCHEDULER, resolution=resolution, band_scales=scales)
    latents_all = backbone.to_latents(images)
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state_file = out_dir / "state.pt"
    start = restart = 0
    if cfg.init_from and not state_file.exists():
        start = _init_from(Path(cfg.init_from), unet, ema, scales)
        restart = start
        log(f"starting from {cfg.init_from} (step {start}) with a fresh optimizer"
            + (f", converted to Haar bands scaled {scales}" if scales else ""))
    if state_file.exists():
        state = torch.load(state_file, weights_only=True)
        trained_in_bands = bool(json.loads(state.get("config", "{}")).get("band_basis", False))
        if trained_in_bands != cfg.band_basis:
            raise ValueError(f"{state_file} was trained {'in Haar bands' if trained_in_bands else 'on the unshuffle'}: "
                             f"resume it {'with' if trained_in_bands else 'without'} --band-basis")
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        restart = int(state.get("restart", 0))
        log(f"resuming from step {start}")
    loss_file = out_dir / "loss.csv"
    if start == 0 or not loss_file.exists():
        loss_file.write_text("step,loss,lr,seconds\n")
    else:  # drop log lines written after the checkpoint we resume from
        kept = [line for line in loss_file.read_text().splitlines()[1:] if int(line.split(",")[0]) < start]
        loss_file.write_text("step,loss,lr,seconds\n" + "".join(line + "\n" for line in kept))

    unet.train()
    t0, cpu0 = time.time(), time.process_time()
    with open(loss_file, "a", newline="") as log_handle:
        writer = csv.writer(log_handle)
        for step in range(start, cfg.steps):
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            row = torch.randint(0, len(caption_rows), (cfg.batch_size,), generator=generator)
            index = caption_rows[row, 0]
            drop = torch.rand(cfg.batch_size, generator=generator) < cfg.empty_caption_prob
            batch_states = torch.where(drop[:, None, None], empty, caption_states[caption_rows[row, 1]])
            # a fresh optimizer (init_from) warms up again from where it started
            lr = lr_at(step, cfg) * (min(1.0, (step - restart + 1) / cfg.warmup) if restart else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.autocast == "bf16"):
                loss = diffusion_loss(backbone, unet, latents_all[index], Conditioning(batch_states),
                                      generator, cfg.min_snr_gamma)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            with torch.no_grad():
                decay = min(cfg.ema_decay, (1 + step) / (10 + step))
                torch._foreach_lerp_(list(ema.parameters()), list(unet.parameters()), 1 - decay)
            writer.writerow([step, f"{loss.item():.5f}", f"{lr:.2e}", f"{time.time() - t0:.1f}"])
            done = step + 1
            if done % 50 == 0:
                log_handle.flush()
                rate = (done - start) / (time.time() - t0)
                log(f"step {done}/{cfg.steps} loss {loss.item():.4f} {rate:.2f} steps/s "
                    f"eta {(cfg.steps - done) / max(rate, 1e-9) / 60:.0f} min")
            out_of_budget = cfg.cpu_budget_s > 0 and time.process_time() - cpu0 >= cfg.cpu_budget_s
            if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_budget:
                log_handle.flush()
                _save_state(state_file, done, unet, ema, optimizer, cfg, restart)
                export_model(backbone, ema, out_dir / "model", done)
                if cfg.keep_every and done % cfg.keep_every == 0:
                    export_model(backbone, ema, out_dir / f"ckpt-{done}", done)
            if out_of_budget:
                log(f"stopped at step {done}: {time.process_time() - cpu0:.0f} s of CPU time used")
                break
    return out_dir / "model"


def export_model(backbone: TinyPixelBackbone, ema, folder: Path, step: int) -> None:
    """Write the EMA weights as a loadable model folder, replacing the previous export atomically."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        import shutil
        shutil.rmtree(tmp)
    backbone.save(tmp, unet=ema)
    (tmp / "training_step.txt").write_text(f"{step}\n")
    if folder.exists():
        import shutil
        shutil.rmtree(folder)
    tmp.rename(folder)


def model_from_portable_state(state_file: Path, corpus_dir: Path, folder: Path) -> int:
    """The EMA of a portable state (bf16) as a loadable model folder, for a step whose run folder is gone (a
    committed state in the repository's history). The band scales come from the corpus, as in the run.
    Returns the step."""
    from safetensors import safe_open

    with safe_open(str(state_file), framework="pt") as handle:
        meta = handle.metadata()
        ema_weights = {key[len("ema."):]: handle.get_tensor(key).float() for key in handle.keys()
                       if key.startswith("ema.")}
    run = json.loads(meta["config"])
    images = images_to_tensor(np.load(Path(corpus_dir) / "images.npy"))
    unet = build_unet(resolution=images.shape[-1], block_out_channels=tuple(run["block_out_channels"]),
                      layers_per_block=run["layers_per_block"])
    unet.load_state_dict(ema_weights)
    scales = haar.unit_variance_scales(F.pixel_unshuffle(images, 2)) if run["band_basis"] else None
    backbone = TinyPixelBackbone(unet, DEFAULT_SCHEDULER, resolution=images.shape[-1], band_scales=scales)
    step = int(meta["step"])
    export_model(backbone, unet, Path(folder), step)
    return step
