"""Fewer UNet evaluations for the same extraction: AS / A-ESR vs UNet evaluations per image, per sampler.

    .venv/bin/python benchmarks/bench_schedulers.py [--threads 2] [--sets S ...] [--ft dreambooth lora]
        [--schedulers ddim:50 ddim:20 dpmsolver++:10 ...] [--quick]

On the fine-tuned checkpoints of a default run (``results/finetune/<set>/<ft>``), samples the same seeds
(``sampling.seed_offset`` .. + N − 1, N = ``sampling.n_per_image`` · N0) with every (scheduler, steps) of the
grid, for direct, CFG and FineXtract at the configured w' / k, and scores each sample set as the workflow does:
SSCD descriptors with the configured model, calibration and blur (``finextract.attack.similarity.embed_images``),
then ``finextract.experiments.nsweep.clustered_point`` (``extract_clusters`` with ``clustering.min_threshold`` and
``score_extraction`` at ``metrics.taus``). The reference is the paper's 50-step DDIM; seeds are shared by all
samplers, so every ΔAS is a paired comparison. UNet evaluations per image are counted from the scheduler's own
timesteps and the requests ``finextract.attack.sampling.step_requests`` makes at each of them (w' = 1 or a guidance
interval make fewer), i.e. UNet rows per image: a one-pass LoRA FineXtract forward of two rows counts two.

Writes one tidy CSV row per (set, ft, method, scheduler, steps) to ``--out`` (default
``results/bench_schedulers/bench_schedulers.csv``) as soon as the cell is done; cells whose row exists are
skipped, so a stopped run resumes. ``--quick`` runs a tiny grid (N = 2·N0, 2–4 steps) into its own CSV to check
the script end to end.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
METHODS = ("direct", "cfg", "finextract")
GRID = ("ddim:50", "ddim:20", "dpmsolver++:10", "dpmsolver++:20", "unipc:10", "unipc:20", "ddim:10")
QUICK_GRID = ("ddim:4", "ddim:2", "dpmsolver++:2", "unipc:2")
KEY = ["set", "ft", "method", "scheduler", "steps", "n_per_image"]
TOLERANCE = 0.01  # the target: within 0.01 AS of 50-step DDIM


def parse_point(text: str) -> tuple[str, int]:
    kind, _, steps = text.rpartition(":")
    if not kind or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"expected SCHEDULER:STEPS (e.g. dpmsolver++:10), got {text!r}")
    return kind, int(steps)


def unet_evals_per_image(backbone, method: str, scheduler_kind: str, steps: int, w: float, k: float,
                         interval) -> int:
    """UNet rows one image costs: the sampler's timesteps × the predictions requested at each, as
    ``sample_batch`` requests them (same unguided / interval rules)."""
    from finextract.attack.sampling import in_guidance_interval, step_requests

    scheduler = backbone.sampling_scheduler(scheduler_kind)
    scheduler.set_timesteps(steps)
    unguided = w == 1.0 and (k == 0.0 or method != "finextract")
    total = 0
    for t in scheduler.timesteps:
        guided = not unguided and in_guidance_interval(float(t), interval)
        total += len(step_requests(method, None, None, guided)[1])
    return total


def sample_seeds(pair, caption: str, seeds: list[int], method: str, steps: int, w: float, k: float,
                 scheduler_kind: str, interval, shard_size: int, batch_rows: int) -> np.ndarray:
    """The images of ``seeds``, batched as the workflow batches them (shards of ``shard_size`` seeds,
    ``sampling.batch_size`` UNet rows per forward), so DDIM at the configured steps gives its very images."""
    from finextract.attack.sampling import images_per_batch, sample_batch

    per_batch = images_per_batch(pair, method, batch_rows)
    out = []
    for shard_start in range(0, len(seeds), shard_size):
        shard = seeds[shard_start:shard_start + shard_size]
        for start in range(0, len(shard), per_batch):
            out.append(sample_batch(pair, caption, shard[start:start + per_batch], method, steps, w, k,
                                    scheduler_kind, interval))
    return np.concatenate(out)


def load_config(path: Path) -> tuple[dict, dict]:
    from finextract.workflow import config as fxconfig
    from finextract.workflow.config_file import validate_schema

    config = yaml.safe_load(path.read_text())
    # only the sections a sampling run reads: the study / N sweep / audit settings play no part here
    config = {key: value for key, value in config.items() if key not in ("study", "n_sweep", "audit")}
    # the schema (its defaults filled in) and the checks of the embedded default, as validate_config runs them
    validate_schema(config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    return config, fxconfig.attack_targets(config, fxconfig.check_config(config))


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=KEY)


def report(table: pd.DataFrame, reference: tuple[str, int]) -> None:
    """The AS table, ΔAS vs the reference per (set, ft, method), and the per-candidate verdict."""
    if table.empty:
        print("no rows yet")
        return
    table = table.copy()
    table["point"] = table["scheduler"] + ":" + table["steps"].astype(str)
    ref_name = f"{reference[0]}:{reference[1]}"
    order = list(dict.fromkeys([ref_name] + sorted(set(table["point"]) - {ref_name},
                                                   key=lambda p: (parse_point(p)[1], p))))
    cell = ["set", "ft", "method"]
    columns = ["set", "ft", "method", "point", "unet_evals_per_image", "AS", "A-ESR@0.6", "A-ESR@0.7", "seconds"]
    print(table[[c for c in columns if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    pivot = table.pivot_table(index=cell, columns="point", values="AS", aggfunc="first")
    pivot = pivot[[p for p in order if p in pivot]]
    print("\nAS by (set, ft, method) and scheduler:steps")
    print(pivot.to_string(float_format=lambda v: f"{v:.3f}"))
    if ref_name not in pivot:
        print(f"\nno reference rows ({ref_name}) yet: no ΔAS")
        return
    delta = pivot.drop(columns=ref_name).sub(pivot[ref_name], axis=0)
    print(f"\nΔAS vs {ref_name} (candidate − reference; paired seeds)")
    print(delta.to_string(float_format=lambda v: f"{v:+.3f}"))
    evals = table.groupby(["point", "method"])["unet_evals_per_image"].first().unstack()
    ref_evals = evals.loc[ref_name] if ref_name in evals.index else None
    print(f"\nverdict: within {TOLERANCE} AS of {ref_name} (|ΔAS| <= {TOLERANCE}) in how many "
          f"(set, ft, method) cells that have both rows")
    for point in delta.columns:
        d = delta[point].dropna()
        if d.empty:
            continue
        within = int((d.abs() <= TOLERANCE + 1e-12).sum())
        not_worse = int((d >= -TOLERANCE - 1e-12).sum())
        share = ""
        if ref_evals is not None and point in evals.index:
            ratios = (evals.loc[point] / ref_evals).dropna()
            share = f", UNet evals {ratios.min():.0%}–{ratios.max():.0%} of the reference's"
        print(f"  {point}: within in {within}/{len(d)} cells, not worse by more than {TOLERANCE} in "
              f"{not_worse}/{len(d)}; mean ΔAS {d.mean():+.4f}, mean |ΔAS| {d.abs().mean():.4f}, "
              f"worst ΔAS {d.min():+.4f} ({', '.join(map(str, d.idxmin()))}), best {d.max():+.4f}{share}")
    if "upper_AS" in table:  # the no-clustering bound: the same samples without the clustering's jumps
        upper = table.pivot_table(index=cell, columns="point", values="upper_AS", aggfunc="first")
        if ref_name in upper:
            d_upper = upper.drop(columns=ref_name).sub(upper[ref_name], axis=0)
            print(f"\nno-clustering bound (upper_AS), Δ vs {ref_name}: mean / mean |Δ| / worst over cells")
            for point in [p for p in delta.columns if p in d_upper]:
                d = d_upper[point].dropna()
                if len(d):
                    print(f"  {point}: {d.mean():+.4f} / {d.abs().mean():.4f} / {d.min():+.4f} ({len(d)} cells)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--results", default="results", help="the run whose finetune/<set>/<ft> checkpoints to use")
    parser.add_argument("--out", default=None, help="CSV (default results/bench_schedulers/bench_schedulers[_quick].csv)")
    parser.add_argument("--sets", nargs="+", default=None, help="private sets (default: all of the config)")
    parser.add_argument("--ft", nargs="+", default=["dreambooth", "lora"], choices=["dreambooth", "lora"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--schedulers", nargs="+", type=parse_point, default=None, metavar="SCHEDULER:STEPS",
                        help=f"the grid, reference included (default {' '.join(GRID)})")
    parser.add_argument("--reference", type=parse_point, default=None, metavar="SCHEDULER:STEPS",
                        help="what ΔAS is measured against (default ddim:50; --quick: ddim:4)")
    parser.add_argument("--n-per-image", type=int, default=None, help="N / N0 (default sampling.n_per_image)")
    parser.add_argument("--threads", type=int, default=2, help="torch and SSCD threads")
    parser.add_argument("--quick", action="store_true", help=f"tiny check: N = 2·N0, grid {' '.join(QUICK_GRID)}")
    parser.add_argument("--report-only", action="store_true", help="print the tables of the CSV, sample nothing")
    args = parser.parse_args()

    grid = args.schedulers or [parse_point(p) for p in (QUICK_GRID if args.quick else GRID)]
    reference = args.reference or parse_point(QUICK_GRID[0] if args.quick else GRID[0])
    out = Path(args.out or f"results/bench_schedulers/bench_schedulers{'_quick' if args.quick else ''}.csv")
    if args.report_only:
        report(read_table(out), reference)
        return

    import torch

    from finextract.workflow import config as fxconfig
    from finextract.workflow.commands.options import _interval
    from finextract.private_set import load_private_set
    from finextract.io import save_csv
    from finextract.attack.load_models import load_base, load_pair
    from finextract.experiments.nsweep import clustered_point
    from finextract.attack.similarity import DescriptorModel, embed_images, load_calibration

    torch.set_num_threads(args.threads)
    config, targets = load_config(Path(args.config))
    sets = args.sets or list(targets)
    sampling = config["sampling"]
    n_per_image = args.n_per_image or (2 if args.quick else int(sampling["n_per_image"]))
    sscd, clustering, taus = config["sscd"], config["clustering"], tuple(config["metrics"]["taus"])
    calibration = sscd["calibration"]
    sigma = sscd["prefilter_sigma"]
    if sigma is None:  # as embed_images: the calibration's blur, none without one
        sigma = load_calibration(calibration).prefilter_sigma if calibration else 0.0
    descriptor_model = DescriptorModel(sscd["model"], resolution=sscd["resolution"], threads=args.threads,
                                       prefilter_sigma=float(sigma))

    def embed(images: np.ndarray) -> np.ndarray:
        return embed_images(images, sscd["model"], calibration, batch_size=sscd["batch_size"],
                            resolution=sscd["resolution"], prefilter_sigma=float(sigma),
                            progress=False, model=descriptor_model)

    table = read_table(out)
    done = {tuple(row) for row in table[KEY].astype(str).itertuples(index=False)}
    jobs = [(s, ft, m, kind, steps) for ft in args.ft for s in sets for m in args.methods for kind, steps in grid]
    todo = [j for j in jobs if tuple(map(str, (*j, n_per_image))) not in done]
    print(f"{len(jobs)} cells, {len(jobs) - len(todo)} already in {out}; N = {n_per_image}·N0, "
          f"{args.threads} threads, reference {reference[0]}:{reference[1]}", flush=True)
    start_all = time.perf_counter()
    private_cache: dict[str, tuple] = {}
    loaded: tuple | None = None
    for index, (set_name, ft, method, kind, steps) in enumerate(todo, 1):
        target = targets[set_name]
        if set_name not in private_cache:
            base = load_base(target.base, kind=target.load_options["base_kind"],
                             precision=target.load_options["precision"], device=target.load_options["device"],
                             allow_pickle=target.load_options["allow_pickle"])
            private = load_private_set(set_name, target.images, base.resolution, target.caption)
            private_desc = embed(private.images)
            workflow_desc = Path(args.results) / "embeddings" / "private" / f"{set_name}.npy"
            if workflow_desc.exists():  # the same descriptors as the workflow's embed_private, or say so
                diff = float(np.abs(np.load(workflow_desc) - private_desc).max())
                print(f"{set_name}: private descriptors vs the workflow's {workflow_desc}: max |diff| {diff:.2e}",
                      flush=True)
            private_cache[set_name] = (private, private_desc)
        private, private_desc = private_cache[set_name]
        if loaded is None or loaded[0] != (set_name, ft):
            checkpoint = Path(args.results) / "finetune" / set_name / ft
            if not checkpoint.exists():
                sys.exit(f"missing checkpoint {checkpoint}: run the default workflow first (snakemake --cores 2)")
            base = load_base(target.base, kind=target.load_options["base_kind"],
                             precision=target.load_options["precision"], device=target.load_options["device"],
                             allow_pickle=target.load_options["allow_pickle"])
            loaded = ((set_name, ft), load_pair(base, ft, checkpoint))
        pair = loaded[1]
        w, k = fxconfig.target_guidance(target, method, ft)
        interval = _interval(list(target.sampling["guidance_interval"]))
        n_images = n_per_image * private.n0
        seeds = list(range(int(sampling["seed_offset"]), int(sampling["seed_offset"]) + n_images))
        t0 = time.perf_counter()
        images = sample_seeds(pair, private.caption, seeds, method, steps, float(w), float(k), kind, interval,
                              int(sampling["shard_size"]), int(sampling["batch_size"]))
        t1 = time.perf_counter()
        generated = embed(images)
        t2 = time.perf_counter()
        files = [f"seed_{s:06d}.png" for s in seeds]  # names only: clustered_point reads seeds from them
        point = clustered_point(generated, files, private_desc, n_images, taus, seed_offset=int(sampling["seed_offset"]),
                                time_cap_s=float(clustering["time_cap_s"]),
                                min_threshold=clustering["min_threshold"])[0]
        row = {"set": set_name, "ft": ft, "method": method, "scheduler": kind, "steps": steps,
               "n_per_image": n_per_image, "n_generated": n_images, "w": w, "k": k,
               "unet_evals_per_image": unet_evals_per_image(pair.backbone, method, kind, steps, float(w), float(k),
                                                            interval),
               "AS": point["AS"], **{f"A-ESR@{t:g}": point[f"A-ESR@{t:g}"] for t in taus},
               "upper_AS": point["upper_AS"], "threshold": point["threshold"],
               "seconds": round(t1 - t0, 2), "sscd_seconds": round(t2 - t1, 2),
               "cluster_seconds": point["cluster_seconds"], "threads": args.threads}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True) if len(table) else pd.DataFrame([row])
        save_csv(out, table)
        workflow = ""
        metrics = Path(args.results) / "metrics" / set_name / ft / f"{method}.csv"
        if (kind == sampling["scheduler"] and steps == int(sampling["steps"]) and n_per_image == sampling["n_per_image"]
                and metrics.exists()):
            workflow = f", workflow's AS {float(pd.read_csv(metrics)['AS'].iloc[0]):.4f}"
        elapsed = time.perf_counter() - start_all
        print(f"[{index}/{len(todo)}] {set_name} {ft} {method} {kind}:{steps}: AS {row['AS']:.4f} "
              f"A-ESR@0.6 {row.get('A-ESR@0.6', float('nan')):.2f}{workflow}; {row['unet_evals_per_image']} UNet "
              f"evals/image; sample {t1 - t0:.1f} s, SSCD {t2 - t1:.1f} s; {elapsed / 60:.1f} min so far",
              flush=True)
    print(f"\nwall time this run: {(time.perf_counter() - start_all) / 60:.1f} min\n")
    report(table, reference)


if __name__ == "__main__":
    main()
