"""Cost of the audit's membership test at Stable Diffusion 1.5 shapes (random weights), with a GPU projection.

    .venv/bin/python benchmarks/bench_membership.py                  # CPU here: 2 candidates, K = 2, M = 1
    .venv/bin/python benchmarks/bench_membership.py --device cuda --candidates 8 --timesteps 8 --draws 2

The SD 1.5-shaped pipeline, its DreamBooth UNet and its rank-64 LoRA are the ones benchmarks/bench_sd_scale.py
writes (random weights: a forward costs the same whatever the weights are). The test runs through the
workflow's own code: ``load_base`` / ``load_pair`` (TwoUNetPair for DreamBooth, LoraPair with the adapter
switched per row for LoRA), ``images_to_latents`` (the VAE) and ``paired_losses``. Reported per fine-tuning
method: seconds per candidate for the VAE encoding and for the losses, seconds per UNet batch row, and the
projection to the audit's default K × M (2 models × 2 conditions × K × M rows per candidate).

GPU projection: the FineXtract paper's Table 6 (SD v1.4 on one A100, fp32, batch 5) samples one image in
3.4 s with 2 UNet rows per step over 50 steps, i.e. 34 ms per UNet row; the projection multiplies the
default rows per candidate by that figure (forward only: the membership test needs no gradient).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


A100_SECONDS_PER_ROW = 3.4 / (2 * 50)  # paper Table 6: 3.4 s per image, 2 UNet rows x 50 steps


def measure(paths: dict[str, str], method: str, n: int, timesteps: int, draws: int, device: str,
            batch_rows: int) -> dict:
    import numpy as np
    import torch

    from finextract.audit.membership.score import LossGrid, images_to_latents, paired_losses
    from finextract.attack.load_models import load_base, load_pair

    backbone = load_base(paths["base"], device=device, precision="fp32" if device == "cpu" else "fp16")
    checkpoint = paths["dreambooth_unet"] if method == "dreambooth" else paths["lora"]
    pair = load_pair(backbone, method, checkpoint)
    images = np.random.default_rng(0).integers(0, 256, (n, backbone.resolution, backbone.resolution, 3), np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    start = time.perf_counter()
    latents = images_to_latents(backbone, images, batch_size=1)
    sync()
    encoded = time.perf_counter()
    grid = LossGrid(timesteps, draws)
    losses = paired_losses(pair, latents, "art style of a dog", grid, batch_rows=batch_rows)
    sync()
    done = time.perf_counter()
    rows = 2 * losses.shape[2] * timesteps * draws * n
    return {"method": method, "device": device, "candidates": n, "K": timesteps, "M": draws,
            "vae_s_per_candidate": (encoded - start) / n, "loss_s_per_candidate": (done - encoded) / n,
            "s_per_unet_row": (done - encoded) / rows, "rows_per_candidate": rows // n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=2)
    parser.add_argument("--draws", type=int, default=1)
    parser.add_argument("--batch-rows", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--default-k", type=int, default=8, help="the audit's K, for the projection")
    parser.add_argument("--default-m", type=int, default=2, help="the audit's M, for the projection")
    args = parser.parse_args()

    import torch

    from bench_sd_scale import write_pipelines

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_pipelines("sd15", Path(tmp), "fp32", 64)
        results = [measure(paths, method, args.candidates, args.timesteps, args.draws, args.device, args.batch_rows)
                   for method in ("dreambooth", "lora")]
    default_rows = 2 * 2 * args.default_k * args.default_m
    print(f"SD 1.5 shapes, random weights, {args.device}, {args.threads} thread(s); "
          f"{args.candidates} candidates, K={args.timesteps}, M={args.draws}")
    print("| fine-tuning | VAE s/candidate | losses s/candidate | s per UNet row | "
          f"projected s/candidate at K={args.default_k}, M={args.default_m} (here) | "
          "projected on an A100, fp32 (paper Table 6 rate) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        here = r["vae_s_per_candidate"] + r["s_per_unet_row"] * default_rows
        print(f"| {r['method']} | {r['vae_s_per_candidate']:.2f} | {r['loss_s_per_candidate']:.2f} | "
              f"{r['s_per_unet_row']:.3f} | {here:.1f} | {A100_SECONDS_PER_ROW * default_rows:.1f} |")


if __name__ == "__main__":
    main()
