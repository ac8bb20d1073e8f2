"""FineXtract vs CFG on the same fine-tuned model: time per image and peak memory.

    .venv/bin/python benchmarks/bench_sampling.py [--base resources/base] [--images 64] [--steps 20]

Each (fine-tuning method, sampling method) runs in its own subprocess so that its peak memory
(peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU) is its own. LoRA FineXtract uses the
one-pass pair (pretrained-unconditional and fine-tuned-conditional rows in one UNet forward, adapters
switched per row); DreamBooth uses two UNets sharing the text encoder. Fine-tuned weights come from a
few real fine-tuning steps: their values do not change the cost.

Batches are sized as the workflow sizes them: ``--batch-size`` UNet rows per forward (the memory knob),
so CFG and one-pass LoRA FineXtract sample batch/2 images at a time and DreamBooth FineXtract, whose two
UNets each see one row per image, samples batch images at a time with the same rows per forward.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def measure(args: argparse.Namespace) -> None:
    """Child process: build the pair, warm up, sample, print one JSON line."""
    import torch

    from finextract.attack.load_models import load_base, load_pair
    from finextract.reporting.perf import PerfRecorder
    from finextract.attack.sampling import images_per_batch, sample_batch

    torch.set_num_threads(args.threads)
    backbone = load_base(args.base)
    pair = load_pair(backbone, args.ft, args.ft_dir)
    sample_batch(pair, "art style of openmoji", [0, 1], args.method, 2, 3.0, -0.02)  # warm-up
    recorder = PerfRecorder(device=str(backbone.device))
    seeds = list(range(100, 100 + args.images))
    with recorder:
        per_batch = images_per_batch(pair, args.method, args.batch_size)  # as the workflow batches
        for start in range(0, len(seeds), per_batch):
            sample_batch(pair, "art style of openmoji", seeds[start:start + per_batch], args.method,
                         args.steps, 3.0, -0.02)
    print(json.dumps(recorder.row(ft=args.ft, method=args.method, images=len(seeds))))


def finetuned_checkpoints(base: str, workdir: Path) -> dict[str, Path]:
    from finextract.training.finetune import finetune
    from finextract.workflow.attack_steps import finetune_config
    from finextract.attack.load_models import load_base
    from finextract.private_set import load_private_set

    out = {}
    for method, lr in (("dreambooth", 1e-4), ("lora", 1e-3)):
        backbone = load_base(base)
        private = load_private_set("openmoji-style", "resources/datasets/openmoji-style", backbone.resolution)
        out[method] = workdir / method
        finetune(backbone, private.images, private.caption, finetune_config(method, lr=lr, steps_per_image=1),
                 out[method], progress=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="resources/base")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="UNet rows per forward, as sampling.batch_size (CFG: 2 rows per image)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration; the fastest counts")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ft", help=argparse.SUPPRESS)
    parser.add_argument("--ft-dir", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = finetuned_checkpoints(args.base, Path(tmp))
        rows = {}
        for ft in ("lora", "dreambooth"):
            for method in ("cfg", "finextract"):
                runs = []
                for _ in range(args.repeats):
                    cmd = [sys.executable, __file__, "--child", "--base", args.base, "--ft", ft,
                           "--ft-dir", str(checkpoints[ft]), "--method", method,
                           "--images", str(args.images), "--batch-size", str(args.batch_size),
                           "--steps", str(args.steps), "--threads", str(args.threads)]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    runs.append(json.loads(out.strip().splitlines()[-1]))
                rows[ft, method] = min(runs, key=lambda r: r["seconds_per_image"])
    print(f"{args.images} images, {args.steps} DDIM steps, {args.batch_size} UNet rows per forward, {args.threads} threads, "
          f"fastest of {args.repeats} runs; memory = {rows['lora', 'cfg']['memory_kind']}")
    print(f"{'fine-tuning':<12} {'method':<11} {'s/image':>9} {'peak GB':>9}")
    for (ft, method), row in rows.items():
        print(f"{ft:<12} {method:<11} {row['seconds_per_image']:>9.4f} {row['peak_memory_gb']:>9.3f}")
    for ft in ("lora", "dreambooth"):
        fx, cfg = rows[ft, "finextract"], rows[ft, "cfg"]
        print(f"{ft}: FineXtract/CFG time ratio {fx['seconds_per_image'] / cfg['seconds_per_image']:.3f}, "
              f"peak-memory ratio {fx['peak_memory_gb'] / cfg['peak_memory_gb']:.3f}")


if __name__ == "__main__":
    main()
