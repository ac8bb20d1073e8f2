"""CPU speed of one pretraining step of the tiny world's UNet: sizes × fp32 / bf16 autocast × channels_last.

    .venv/bin/python benchmarks/bench_pretrain_speed.py [--threads 2] [--batch 64] [--repeats 3]

Each configuration runs the real training step (``pretrain.diffusion_loss`` in the Haar band basis, AdamW,
gradient clipping) on random 32-px images with random caption states; the configurations are interleaved
over ``--repeats`` rounds, so that load from other processes falls on all of them alike, and the table gives
the median seconds per step and each variant's speed-up over fp32 of the same size, from this one run.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

from finextract.backbones import text_encoder as text
from finextract.backbones.base import Conditioning
from finextract.backbones.tiny import DEFAULT_SCHEDULER, TinyPixelBackbone, build_unet
from finextract.training.losses import diffusion_loss

SIZES = {"A (32,64,64)x1": ((32, 64, 64), 1), "B (64,128,128)x1": ((64, 128, 128), 1),
         "C (64,128,256)x2": ((64, 128, 256), 2)}
VARIANTS = ("fp32", "bf16", "fp32 channels_last", "bf16 channels_last")


def build(size: str, variant: str):
    channels, layers = SIZES[size]
    torch.manual_seed(0)
    unet = build_unet(resolution=32, block_out_channels=channels, layers_per_block=layers)
    if "channels_last" in variant:
        unet = unet.to(memory_format=torch.channels_last)
    backbone = TinyPixelBackbone(unet, DEFAULT_SCHEDULER, resolution=32, band_scales=[1.0, 3.0, 3.0, 8.0])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    return unet, backbone, optimizer


def step(unet, backbone, optimizer, latents, cond, variant: str, generator) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.startswith("bf16")):
        loss = diffusion_loss(backbone, unet, latents, cond, generator, 5.0)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    images = torch.rand(args.batch, 3, 32, 32) * 2 - 1
    cond = Conditioning(torch.randn(args.batch, text.MAX_TOKENS, text.HIDDEN_SIZE))
    configs = list(itertools.product(args.sizes, VARIANTS))
    built = {c: build(*c) for c in configs}
    times: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    for round_ in range(args.repeats):
        for config in configs:
            unet, backbone, optimizer = built[config]
            latents = backbone.to_latents(images)
            generator = torch.Generator().manual_seed(round_)
            step(unet, backbone, optimizer, latents, cond, config[1], generator)  # warm-up
            start = time.perf_counter()
            for _ in range(args.steps):
                step(unet, backbone, optimizer, latents, cond, config[1], generator)
            times[config].append((time.perf_counter() - start) / args.steps)
    print(f"threads {args.threads}, batch {args.batch}, median of {args.repeats} rounds x {args.steps} steps")
    print("| size | parameters | variant | s/step | speed-up over fp32 |")
    print("| --- | ---: | --- | ---: | ---: |")
    for size in args.sizes:
        params = sum(p.numel() for p in built[(size, "fp32")][0].parameters()) / 1e6
        base = statistics.median(times[(size, "fp32")])
        for variant in VARIANTS:
            t = statistics.median(times[(size, variant)])
            print(f"| {size} | {params:.1f} M | {variant} | {t:.2f} | {base / t:.2f}x |")


if __name__ == "__main__":
    main()
