"""Sampling cost at true Stable Diffusion scale: seconds per image and peak memory per method (paper Table 6).

    .venv/bin/python benchmarks/bench_sd_scale.py                        # CPU here: SD 1.5, 1 image, 2 steps
    .venv/bin/python benchmarks/bench_sd_scale.py --models sd15,sdxl     # on a GPU: 5 images, fp16 (defaults)

No model hub is needed: SD 1.5- and SDXL-shaped pipelines (UNet2DConditionModel, AutoencoderKL, CLIP text
encoders of the real configs, written out below) are built with random weights — a forward costs the same
whatever the weights are — and saved as diffusers folders once per run. Every measurement then goes through
the workflow's own code: ``finextract.attack.load_models.load_base`` / ``load_pair`` (SDBackbone / SDXLBackbone, the
DreamBooth UNet loader, the LoRA loader reading a rank-64 diffusers-format LoRA file written by
``loading.save_lora``), ``dreambooth_memory.reduce_memory`` for the memory options and ``sampling.sample_batch``.

Methods (``--methods``):
  direct, cfg            θ' alone (a DreamBooth pipeline: one UNet), the reference for DreamBooth ratios
  cfg-lora               CFG on θ + rank-64 LoRA (one UNet), the reference for LoRA ratios
  finextract-lora        one-pass LoRA FineXtract (LoraPair: adapter switched per row, one forward per step)
  finextract-db          DreamBooth FineXtract with two UNets (TwoUNetPair), as in the paper
  finextract-db:MODE     the same with a memory option (MODE from dreambooth_memory.MEMORY_MODES, e.g. delta-int8);
                         append @cpu to keep θ's part in host memory when sampling on a GPU

Each method runs in a fresh subprocess, so its peak memory is its own. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` from ``finextract.reporting.perf.PerfRecorder`` (reset after loading, as in every
sampling job's perf.csv); on CPU the process's peak RSS over the whole run (PerfRecorder, loading included)
and over sampling only (the kernel's high-water mark reset after loading via /proc/self/clear_refs, the CPU
counterpart of the CUDA figure). Time: the measured run, plus a projection to the paper's 50 steps from the
per-step time (the mean of the steps after the first) and the measured decode time. A method whose weights
alone would not fit ``--memory-limit-gb`` is skipped with the memory it would need.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GIB = 1024 ** 3
CAPTION = "art style of a dog"
PAPER = {  # Table 6: SD v1.4 on one A100, batch 5, fp32, 50 steps; MB as printed, s per image
    ("finextract", "dreambooth"): (15812, 3.4), ("cfg", "dreambooth"): (12096, 3.4),
    ("finextract", "lora"): (15894, 3.6), ("cfg", "lora"): (12226, 3.6)}
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]

# --- the architectures, as in the published configs (CompVis/stable-diffusion-v1-4 = SD 1.5's shapes) ---
SD15 = {
    "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                 cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, act_fn="silu",
                 downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, mid_block_scale_factor=1,
                 norm_eps=1e-5, center_input_sample=False),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215),
    "text_encoders": [dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                           num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu",
                           projection_dim=768)],
    "scheduler": dict(_class="PNDMScheduler", beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False),
    "resolution": 512,
}
SDXL = {
    "unet": dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32,
                 act_fn="silu", flip_sin_to_cos=True, freq_shift=0),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2, norm_num_groups=32, act_fn="silu", sample_size=1024, scaling_factor=0.13025,
                force_upcast=True),
    "text_encoders": [dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                           num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu",
                           projection_dim=768),
                      dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
                           num_hidden_layers=32, max_position_embeddings=77, hidden_act="gelu",
                           projection_dim=1280)],
    "scheduler": dict(_class="EulerDiscreteScheduler", beta_start=0.00085, beta_end=0.012,
                      beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1,
                      timestep_spacing="leading"),
    "resolution": 1024,
}
MODELS = {"sd15": SD15, "sdxl": SDXL}
DEFAULT_METHODS = "direct,cfg,cfg-lora,finextract-lora,finextract-db,finextract-db:delta-int8"


# --- building the random-weight pipelines -----------------------------------------------------------
def build_components(spec: dict, tokenizer_dir: Path, seed: int = 0, meta: bool = False) -> dict:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from finextract.backbones.offline_tokenizer import offline_clip_tokenizer

    tokenizer = offline_clip_tokenizer(tokenizer_dir, ["art", "style", "of", "a", "cat", "dog", "sks", "yarn"])
    torch.manual_seed(seed)
    with torch.device("meta") if meta else torch.device("cpu"):
        unet = UNet2DConditionModel(**spec["unet"]).eval()
        vae = AutoencoderKL(**spec["vae"]).eval()
        encoders = []
        for i, cfg in enumerate(spec["text_encoders"]):
            config = CLIPTextConfig(**cfg, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                    pad_token_id=tokenizer.pad_token_id)
            cls = CLIPTextModelWithProjection if i == 1 else CLIPTextModel
            encoders.append(cls(config).eval())
    return {"unet": unet, "vae": vae, "text_encoders": encoders, "tokenizer": tokenizer}


def parameter_counts(spec: dict, workdir: Path) -> dict[str, int]:
    """Exact parameter counts of the architecture (built on the meta device: no memory, instant)."""
    parts = build_components(spec, workdir / "tok-meta", meta=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    lora = 0
    for name, module in parts["unet"].named_modules():
        if name.endswith(tuple("." + t for t in LORA_TARGETS)):
            lora += 64 * (module.in_features + module.out_features)
    return {"unet": count(parts["unet"]), "vae": count(parts["vae"]),
            "text": sum(count(m) for m in parts["text_encoders"]), "lora64": lora}


def write_pipelines(model: str, workdir: Path, dtype_name: str, rank: int) -> dict[str, str]:
    """base/ (θ), dreambooth/ (a pipeline whose UNet is θ', other components shared), dreambooth/unet, lora/."""
    import torch
    from diffusers import (EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)
    from peft import LoraConfig

    from finextract.backbones.loading import save_lora

    spec = MODELS[model]
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    root = workdir / model
    parts = build_components(spec, root / "tok")
    sched_cfg = dict(spec["scheduler"])
    sched = {"PNDMScheduler": PNDMScheduler, "EulerDiscreteScheduler": EulerDiscreteScheduler}[sched_cfg.pop("_class")]
    scheduler = sched(**sched_cfg)
    for module in [parts["unet"], parts["vae"], *parts["text_encoders"]]:
        module.to(dtype)
    if model == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=parts["vae"], text_encoder=parts["text_encoders"][0],
                                         text_encoder_2=parts["text_encoders"][1], tokenizer=parts["tokenizer"],
                                         tokenizer_2=parts["tokenizer"], unet=parts["unet"], scheduler=scheduler)
    else:
        pipe = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["text_encoders"][0],
                                       tokenizer=parts["tokenizer"], unet=parts["unet"], scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(root / "base", safe_serialization=True)
    # θ': every UNet tensor moved (a full-UNet DreamBooth fine-tune), by 1 % of its spread.
    gen = torch.Generator().manual_seed(1)
    unet = parts["unet"]
    with torch.no_grad():
        for p in unet.parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            p.add_((noise * (0.01 * float(p.float().std()) + 1e-6)).to(p.dtype))
            del noise
    unet.save_pretrained(root / "dreambooth" / "unet", safe_serialization=True)
    for entry in (root / "base").iterdir():
        if entry.name != "unet":
            os.symlink(entry.resolve(), root / "dreambooth" / entry.name)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights=False),
                     adapter_name="finetuned")
    save_lora(unet, root / "lora", adapter_name="finetuned")
    return {"base": str(root / "base"), "dreambooth_pipeline": str(root / "dreambooth"),
            "dreambooth_unet": str(root / "dreambooth" / "unet"), "lora": str(root / "lora")}


# --- one measurement (child process) -------------------------------------------------------------------
def vm_hwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def parse_method(method: str) -> tuple[str, str, str | None]:
    """'finextract-db:delta-int8@cpu' -> ('finextract-db', 'delta-int8', 'cpu')."""
    name, _, mode = method.partition(":")
    mode, _, where = mode.partition("@")
    return name, mode or "two-unets", where or None


def measure(args: argparse.Namespace) -> dict:
    import torch

    from finextract.attack.dreambooth_memory import PatchedUNetPair, reduce_memory, release_memory
    from finextract.attack.model_pair import SingleModel
    from finextract.attack.load_models import load_base, load_pair
    from finextract.reporting.perf import PerfRecorder
    from finextract.attack.sampling import sample_batch

    torch.set_num_threads(args.threads)
    paths = json.loads(args.paths)
    name, mode, where = parse_method(args.method)
    sampling_method = {"direct": "direct", "cfg": "cfg", "cfg-lora": "cfg"}.get(name, "finextract")
    t0 = time.perf_counter()
    if name in ("direct", "cfg"):
        backbone = load_base(paths["dreambooth_pipeline"], precision=args.dtype, device=args.device)
        pair = SingleModel(backbone)  # θ' alone: what CFG on a DreamBooth pipeline holds
    elif name in ("cfg-lora", "finextract-lora"):
        backbone = load_base(paths["base"], precision=args.dtype, device=args.device)
        pair = load_pair(backbone, "lora", paths["lora"])
    elif name == "finextract-db":
        backbone = load_base(paths["base"], precision=args.dtype, device=args.device)
        pair = None
        if mode != "two-unets":  # as `finextract sample --memory` does: stream the UNet folder into the option
            pair = PatchedUNetPair.from_folder(backbone, paths["dreambooth_unet"], mode, storage_device=where)
        if pair is None:
            pair = reduce_memory(load_pair(backbone, "dreambooth", paths["dreambooth_unet"]), mode,
                                 storage_device=where)
    else:
        raise ValueError(f"unknown method {args.method!r}")
    device = backbone.device
    release_memory(device)
    load_seconds = time.perf_counter() - t0
    # on CPU the weights are memory-mapped from the safetensors files and count once touched, so this mark
    # is what loading touched (all of θ and θ' for the memory options, which compare them), not all weights
    load_peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else vm_hwm_bytes()) or 0
    hwm_reset = device.type == "cpu" and reset_peak_rss()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step_times: list[float] = []
    decode_times: list[float] = []
    predict, to_images = pair.predict, backbone.to_images

    def timed_predict(*a, **k):
        sync(); start = time.perf_counter()
        out = predict(*a, **k)
        sync(); step_times.append(time.perf_counter() - start)
        return out

    def timed_decode(*a, **k):
        sync(); start = time.perf_counter()
        out = to_images(*a, **k)
        sync(); decode_times.append(time.perf_counter() - start)
        return out

    pair.predict, backbone.to_images = timed_predict, timed_decode
    recorder = PerfRecorder(device=str(device))
    seeds = list(range(args.images))
    with recorder:
        images = sample_batch(pair, CAPTION, seeds, sampling_method, args.steps, 3.0, -0.02)
    assert images.shape[0] == args.images and images.shape[1] == backbone.resolution
    row = recorder.row(method=args.method, ft=name, images=args.images)
    sampling_peak = vm_hwm_bytes() if hwm_reset else None
    steady = step_times[1:] or step_times
    per_step = sum(steady) / len(steady)
    other = row["seconds"] - sum(step_times) - sum(decode_times)
    return {**row, "model": args.model, "steps": args.steps, "threads": args.threads, "dtype": str(backbone.dtype),
            "load_seconds": round(load_seconds, 2), "first_step_s": round(step_times[0], 3),
            "step_s": round(per_step, 3), "decode_s": round(sum(decode_times), 3), "other_s": round(other, 3),
            "projected_50_steps_s_per_image": round((50 * per_step + sum(decode_times) + other) / args.images, 3),
            "load_peak_gb": round(load_peak / GIB, 3),
            "sampling_peak_gb": round(sampling_peak / GIB, 3) if sampling_peak else None,
            "stored_gb": round(getattr(pair, "stored_bytes", 0) / GIB, 3),
            "rebuild_s": round(pair.rebuild_seconds(), 3) if hasattr(pair, "rebuild_seconds") else 0.0,
            "resolution": backbone.resolution}


# --- planning and reporting (parent process) -----------------------------------------------------------
def weights_gb(counts: dict[str, int], method: str, bytes_per: int) -> float:
    """Weights a method holds, and the most it holds at once while loading (θ and θ' for DreamBooth)."""
    name, mode, where = parse_method(method)
    shared = (counts["vae"] + counts["text"]) * bytes_per
    unet = counts["unet"] * bytes_per
    if name in ("cfg-lora", "finextract-lora"):
        return (shared + unet + counts["lora64"] * bytes_per) / GIB
    if name == "finextract-db":
        # two UNets, or θ' streamed into θ beside what the option keeps of θ (its load-time peak)
        kept = {"delta-int8": 1 / bytes_per, "delta-fp16": 2 / bytes_per, "delta-bf16": 2 / bytes_per}.get(mode, 1.0)
        return (shared + unet * (1 + kept)) / GIB
    return (shared + unet) / GIB


def memory_limit_gb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory / GIB
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / GIB
    return float("inf")


def ratio(a, b):
    return f"{a / b:.3f}" if a and b else "—"


def report(results: list[dict], skipped: list[str], args, counts: dict[str, dict[str, int]]) -> None:
    print()
    for line in skipped:
        print("skipped:", line)
    for model in args.models:
        rows = {r["method"]: r for r in results if r["model"] == model}
        if not rows:
            continue
        cpu = all(r["memory_kind"].startswith("cpu") for r in rows.values())
        mem_key = "sampling_peak_gb" if cpu and all(r["sampling_peak_gb"] for r in rows.values()) else "peak_memory_gb"
        any_row = next(iter(rows.values()))
        print(f"\n== {model}: {any_row['resolution']}², {args.images} image(s) per batch, {args.steps} DDIM steps "
              f"measured, {any_row['dtype']}, {any_row['device']}, {args.threads} threads ==")
        print(f"{'method':<32} {'s/image':>9} {'1st step s':>10} {'s/step':>8} {'decode s':>9} {'50-step s/img':>14} "
              f"{'peak GB':>8} {'load GB':>8} {'θ kept GB':>9}")
        for method, r in rows.items():
            print(f"{method:<32} {r['seconds_per_image']:>9.2f} {r['first_step_s']:>10.2f} {r['step_s']:>8.2f} "
                  f"{r['decode_s']:>9.2f} {r['projected_50_steps_s_per_image']:>14.2f} "
                  f"{r[mem_key] or float('nan'):>8.2f} {r['load_peak_gb']:>8.2f} {r['stored_gb']:>9.2f}")
        print(f"peak GB = {'peak RSS while sampling and decoding (kernel mark reset after loading)' if mem_key == 'sampling_peak_gb' else r['memory_kind']}; "
              "load GB = mark before sampling (CPU: weights are memory-mapped and count once touched; the memory "
              "options touch θ and θ' while streaming θ' in); θ kept = what a memory option holds of θ beside θ'; "
              "rebuild s = rebuilding θ's differing layers once (the option's extra work per θ forward)")
        for method, r in rows.items():
            if r.get("rebuild_s"):
                print(f"  {method}: rebuild {r['rebuild_s']:.2f} s per θ forward, {r['rebuild_s'] / r['step_s']:.3f} of its "
                      f"measured step")
        print("\nRatios (time = per-step UNet time; memory = peak GB):")
        refs = {"direct": ["cfg"], "finextract-lora": ["cfg-lora"]}
        for method, r in rows.items():
            wanted = refs.get(method, ["cfg", "finextract-db"] if method.startswith("finextract-db:") else
                              ["cfg"] if method.startswith("finextract-db") else [])
            for ref in (x for x in wanted if x in rows):
                c = rows[ref]
                print(f"  {method:<30} / {ref:<15} time {ratio(r['step_s'], c['step_s'])}  "
                      f"memory {ratio(r[mem_key], c[mem_key])}  (s/image measured "
                      f"{ratio(r['seconds_per_image'], c['seconds_per_image'])}, 50-step projection "
                      f"{ratio(r['projected_50_steps_s_per_image'], c['projected_50_steps_s_per_image'])})")
        print("\nPaper Table 6 layout (SD v1.4, A100, batch 5, fp32, 50 steps) beside these numbers:")
        print(f"{'':<34} {'DreamBooth memory':>18} {'DreamBooth s/img':>17} {'LoRA memory':>12} {'LoRA s/img':>11}")
        for label, db_key, lora_key in (("FineXtract", "finextract-db", "finextract-lora"), ("CFG", "cfg", "cfg-lora")):
            pm_db, pt_db = PAPER[(label.lower(), "dreambooth")]
            pm_l, pt_l = PAPER[(label.lower(), "lora")]
            print(f"{label + ' (paper)':<34} {pm_db / 1024:>15.1f} GB {pt_db:>17.1f} {pm_l / 1024:>9.1f} GB {pt_l:>11.1f}")
            db, lo = rows.get(db_key), rows.get(lora_key)
            fmt = lambda r: (f"{r[mem_key]:>15.2f} GB", f"{r['projected_50_steps_s_per_image']:>17.2f}") if r else (f"{'—':>18}", f"{'—':>17}")  # noqa: E731
            (m1, t1), (m2, t2) = fmt(db), fmt(lo)
            print(f"{label + ' (here, 50-step projection)':<34} {m1} {t1} {m2.rjust(12)} {t2.strip().rjust(11)}")
        for method, r in rows.items():
            if ":" in method:
                print(f"{'FineXtract ' + method.split(':', 1)[1] + ' (here)':<34} {r[mem_key]:>15.2f} GB "
                      f"{r['projected_50_steps_s_per_image']:>17.2f}")
        print(f"{'FineXtract/CFG (paper)':<34} {15812 / 12096:>18.3f} {1.0:>17.3f} {15894 / 12226:>12.3f} {1.0:>11.3f}")
    print("\nWeights by architecture (exact parameter counts; GB = GiB):")
    for model, c in counts.items():
        print(f"  {model}: UNet {c['unet'] / 1e6:.0f} M, text encoder(s) {c['text'] / 1e6:.0f} M, VAE {c['vae'] / 1e6:.0f} M, "
              f"rank-64 LoRA {c['lora64'] / 1e6:.1f} M; fp32 UNet {c['unet'] * 4 / GIB:.2f} GB, fp16 {c['unet'] * 2 / GIB:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="auto", help="comma-separated: sd15, sdxl (auto: sd15 on CPU, both on GPU)")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--steps", type=int, default=2, help="DDIM steps measured (time is also projected to 50)")
    parser.add_argument("--images", type=int, default=None, help="images per batch (default: 5 on GPU, 1 on CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto = fp16 on GPU, fp32 on CPU")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all available, ≤ 16)")
    parser.add_argument("--lora-rank", type=int, default=64)
    parser.add_argument("--memory-limit-gb", type=float, default=None,
                        help="skip methods whose weights (at load time) exceed this (default: device memory - 1.5 GB)")
    parser.add_argument("--workdir", default=None, help="where the random-weight pipelines go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write all measurements here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.setup:
        print(json.dumps(write_pipelines(args.model, Path(args.workdir), args.dtype, args.lora_rank)))
        return
    if args.child:
        print("RESULT " + json.dumps(measure(args)), flush=True)
        return

    import torch

    gpu = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    args.device = ("cuda" if args.device == "auto" else args.device) if gpu else "cpu"
    args.dtype = ("fp16" if gpu else "fp32") if args.dtype == "auto" else args.dtype
    args.images = args.images or (5 if gpu else 1)
    args.threads = args.threads or min(16, len(os.sched_getaffinity(0)))
    args.models = (["sd15", "sdxl"] if gpu else ["sd15"]) if args.models == "auto" else args.models.split(",")
    methods = args.methods.split(",")
    limit = args.memory_limit_gb or (memory_limit_gb(args.device) - 1.5)
    bytes_per = 4 if args.dtype == "fp32" else 2
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_sd_scale_"))
    workdir.mkdir(parents=True, exist_ok=True)
    counts = {m: parameter_counts(MODELS[m], workdir) for m in MODELS}
    print(f"device {args.device}, {args.dtype}, {args.images} image(s), {args.steps} steps, {args.threads} threads, "
          f"memory limit {limit:.1f} GB, work dir {workdir}", flush=True)
    results, skipped = [], []
    started = time.time()
    try:
        for model in args.models:
            fits = [m for m in methods if weights_gb(counts[model], m, bytes_per) <= limit]
            for m in methods:
                if m not in fits:
                    need = weights_gb(counts[model], m, bytes_per)
                    skipped.append(f"{model} {m}: its weights alone need {need:.1f} GB at load time "
                                   f"({'θ and θ′, ' if m.startswith('finextract-db') else ''}{args.dtype}, "
                                   f"activations not counted) > limit {limit:.1f} GB")
            if not fits:
                continue
            t = time.time()
            saved = workdir / model / f"paths-{args.dtype}-r{args.lora_rank}.json"
            if args.workdir and saved.exists():  # an explicit --workdir keeps its pipelines for the next run
                paths = saved.read_text()
                print(f"{model}: reusing the random-weight pipelines in {saved.parent}", flush=True)
            else:
                shutil.rmtree(workdir / model, ignore_errors=True)
                out = subprocess.run([sys.executable, __file__, "--setup", "--model", model, "--workdir",
                                      str(workdir), "--dtype", args.dtype, "--lora-rank", str(args.lora_rank)],
                                     check=True, capture_output=True, text=True)
                paths = out.stdout.strip().splitlines()[-1]
                saved.write_text(paths)
                print(f"{model}: random-weight pipelines written in {time.time() - t:.0f} s", flush=True)
            for method in fits:
                t = time.time()
                cmd = [sys.executable, __file__, "--child", "--model", model, "--method", method, "--paths", paths,
                       "--steps", str(args.steps), "--images", str(args.images), "--device", args.device,
                       "--dtype", args.dtype, "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                    skipped.append(f"{model} {method}: failed (exit {proc.returncode}): {' | '.join(tail)}")
                    print(f"{model} {method}: FAILED", flush=True)
                    continue
                row = json.loads(lines[-1][len("RESULT "):])
                results.append(row)
                print(f"{model} {method}: {row['seconds_per_image']:.2f} s/image, step {row['step_s']:.2f} s, "
                      f"peak {row['sampling_peak_gb'] or row['peak_memory_gb']:.2f} GB ({time.time() - t:.0f} s)",
                      flush=True)
            if args.workdir is None:
                shutil.rmtree(workdir / model, ignore_errors=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for model in ("sd15", "sdxl"):
        if model not in args.models:
            need = {m: weights_gb(counts[model], m, bytes_per) for m in ("cfg", "finextract-db")}
            skipped.append(f"{model}: not run (--models {','.join(args.models)}); weights in {args.dtype}: "
                           f"one UNet {need['cfg']:.1f} GB, DreamBooth FineXtract (two UNets) {need['finextract-db']:.1f} GB "
                           f"vs limit {limit:.1f} GB")
    report(results, skipped, args, counts)
    print(f"\ntotal {time.time() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "skipped": skipped}, indent=2))


if __name__ == "__main__":
    main()
