"""What each rule of the attack does (fine-tune, sample, embed, cluster, score), as plain functions from input
files to output files; the experiments' rules are in :mod:`~finextract.workflow.experiment_steps`.

Every function writes its outputs atomically (a temporary name, then a rename), so a killed
job leaves either nothing or a complete output, and a rerun picks up from there.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from finextract.workflow.config import shard_seeds

if TYPE_CHECKING:
    from finextract.training.finetune import FinetuneConfig
from finextract.private_set import load_private_set
from finextract.io import read_rgb, save_csv, save_npy


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _fresh_tmp_dir(final: Path) -> Path:
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def base_resolution(base: str | None) -> int:
    """The image size a base model generates, read without loading its weights where possible; with no base
    named, the tiny world's."""
    if not base:
        from finextract.backbones.tiny import RESOLUTION

        return RESOLUTION
    meta = Path(base) / "finextract.json"
    if meta.exists():
        return int(json.loads(meta.read_text())["resolution"])
    from finextract.backbones.loading import resolution_of

    return resolution_of(base)


# --- fine-tuning --------------------------------------------------------------------------
def finetune_config(method: str, **values) -> FinetuneConfig:
    """The fine-tuning recipe from `finetune.<method>` keys (``lr``, ``steps_per_image``, ``rank``, …): the values
    given, the schema's defaults for the rest."""
    from finextract.training.finetune import FinetuneConfig
    from finextract.workflow.config_file import schema_defaults

    hyper = {**schema_defaults(f"finetune.{method}"), **values}
    lora = {"lora_rank": int(hyper["rank"]), "lora_targets": list(hyper["targets"])} if method == "lora" else {}
    return FinetuneConfig(method=method, lr=float(hyper["lr"]), steps_per_image=int(hyper["steps_per_image"]),
                          batch_size=int(hyper["batch_size"]), seed=int(hyper["seed"]), augment=hyper["augment"],
                          **lora)


def run_finetune(base: str, set_folder: str, caption: str | None, method: str, hyper: dict,
                 out: Path, threads: int = 1, snapshots: tuple[int, ...] = (), **load_options) -> None:
    import torch

    from finextract.training.finetune import finetune
    from finextract.attack.load_models import load_base

    torch.set_num_threads(threads)
    if load_options["precision"] in ("auto", "fp16"):
        # AdamW updates at the paper's lr 2e-6 underflow in fp16 weights: fine-tune in fp32, as the authors did
        load_options = {**load_options, "precision": "fp32"}
    backbone = load_base(base, **load_options)
    private = load_private_set(Path(set_folder).name, set_folder, backbone.resolution, caption)
    for note in private.notes:
        print(f"note: {note}", flush=True)
    cfg = finetune_config(method, **hyper)
    print(f"fine-tuning {method} on {private.n0} images of {set_folder} with caption {private.caption!r}: "
          f"{cfg.total_steps(private.n0)} steps, lr {cfg.lr}", flush=True)
    out = Path(out)
    tmp = _fresh_tmp_dir(out)
    # θ is not needed after
    finetune(backbone, private.images, private.caption, cfg, tmp, in_place=True, snapshots=tuple(snapshots))
    _replace_dir(tmp, out)


# --- sampling -----------------------------------------------------------------------------
def run_sample(base: str, ft_dir: str | None, ft_method: str, set_folder: str | None, caption: str | None,
               method: str, w: float, k: float, steps: int, seeds: str, batch_size: int, out: Path,
               threads: int = 1, ft_options: dict | None = None, memory: str = "two-unets",
               scheduler: str = "ddim", interval: tuple[float, float] | None = None, **load_options) -> None:
    """Write one PNG per seed of the shard into ``out`` plus ``perf.csv``.

    ``memory`` (DreamBooth only): ``two-unets`` or a mode of ``dreambooth_memory.MEMORY_MODES``, optionally
    ``@cpu`` to keep θ's part in host memory; direct / CFG shards then keep nothing of θ.
    """
    import torch

    from finextract.private_set import read_caption
    from finextract.attack.dreambooth_memory import PatchedUNetPair, reduce_memory
    from finextract.attack.model_pair import PRETRAINED
    from finextract.attack.load_models import load_base, load_pair
    from finextract.reporting.perf import PerfRecorder
    from finextract.attack.sampling import method_requests, sample_to_folder

    torch.set_num_threads(threads)
    backbone = load_base(base, **load_options)
    mode, _, storage = memory.partition("@")
    needs_pretrained = any(r.model == PRETRAINED for r in method_requests(method, None, None))
    pair = None
    if ft_method == "dreambooth" and mode != "two-unets" and ft_dir and not (ft_options or {}).get("variant"):
        # a local UNet folder is streamed into the option's format: θ and θ' are never both whole in memory
        pair = PatchedUNetPair.from_folder(backbone, ft_dir, mode, storage_device=storage or None,
                                           needs_pretrained=needs_pretrained)
    if pair is None:
        pair = load_pair(backbone, ft_method, ft_dir, **(ft_options or {}))
        pair = reduce_memory(pair, mode, needs_pretrained=needs_pretrained, storage_device=storage or None)
    text = caption if caption is not None else read_caption(Path(set_folder), None)
    print(f"caption: {text!r}", flush=True)
    seed_list = shard_seeds(seeds)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recorder = PerfRecorder(device=str(backbone.device))
    with recorder:
        sample_to_folder(pair, text, seed_list, method, steps, w, k, out, batch_size=batch_size,
                         scheduler_kind=scheduler, interval=interval)
    row = recorder.row(method=method, ft=ft_method, images=len(seed_list))
    save_csv(out / "perf.csv", pd.DataFrame([row]))


# --- SSCD ---------------------------------------------------------------------------------
def generated_images(image_dirs: list[str]) -> tuple[np.ndarray, list[str]]:
    files = sorted((p for d in image_dirs for p in Path(d).glob("seed_*.png")), key=lambda p: p.name)
    if not files:
        raise FileNotFoundError(f"no seed_*.png images in {image_dirs}")
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])
    return images, [str(p) for p in files]


def run_embed(out: Path, order_out: Path, model: str, calibration: str | None, resolution: int,
              batch_size: int, threads: int = 1, image_dirs: list[str] | None = None,
              private_set: str | None = None, base: str | None = None,
              prefilter_sigma: float | None = None, candidates: str | None = None) -> None:
    from finextract.attack.similarity import embed_images

    if candidates:
        from finextract.audit.extraction import load_candidates

        files, images = load_candidates(candidates, base_resolution(base))
        names = [str(p) for p in files]
    elif private_set:
        size = base_resolution(base)
        private = load_private_set(Path(private_set).name, private_set, size)
        images, names = private.images, [str(p) for p in private.files]
    else:
        images, names = generated_images(image_dirs or [])
    t0 = time.time()
    descriptors = embed_images(images, model_spec=model, calibration=calibration, resolution=resolution,
                               prefilter_sigma=prefilter_sigma, batch_size=batch_size, threads=threads)
    print(f"embedded {len(images)} images in {time.time() - t0:.1f} s", flush=True)
    save_npy(out, descriptors.astype(np.float32))
    save_csv(order_out, pd.DataFrame({"row": range(len(names)), "file": names}))


# --- clustering ---------------------------------------------------------------------------
def run_cluster(embeddings: Path, order: Path, n0: int, time_cap: float, out: Path,
                min_threshold: float | None = None) -> None:
    from finextract.attack.clustering import extract_clusters
    from finextract.attack.metrics import cosine_matrix

    descriptors = np.load(embeddings)
    files = pd.read_csv(order)["file"].tolist()
    similarity = cosine_matrix(descriptors, descriptors)
    t0 = time.time()
    result = extract_clusters(similarity, n0, time_cap_s=time_cap, min_threshold=min_threshold)
    seconds = time.time() - t0
    out = Path(out)
    tmp = _fresh_tmp_dir(out)
    assignments = result.assignments()
    assignments["file"] = [files[i] for i in assignments["image"]]
    save_csv(tmp / "assignments.csv", assignments)
    save_csv(tmp / "thresholds.csv", result.trials)
    centers = pd.DataFrame({"rank": range(len(result.centers)), "image": result.centers,
                            "file": [files[i] for i in result.centers]})
    save_csv(tmp / "centers.csv", centers)
    (tmp / "extracted").mkdir()
    for rank, index in enumerate(result.centers):
        shutil.copyfile(files[index], tmp / "extracted" / f"{rank:03d}_{Path(files[index]).name}")
    (tmp / "summary.json").write_text(json.dumps({
        "n0": n0, "n_generated": len(files), "threshold": float(result.threshold), "min_threshold": min_threshold,
        "thresholds_tried": int(len(result.trials)), "seconds": round(seconds, 3)}, indent=2))
    _replace_dir(tmp, out)
    print(f"clustered {len(files)} images into {n0} cliques at phi = {result.threshold:.4f} "
          f"({len(result.trials)} thresholds, {seconds:.2f} s)", flush=True)


# --- metrics ------------------------------------------------------------------------------
def run_score(private: Path, private_order: Path, generated: Path, clusters: Path, taus: list[float],
              set_name: str, ft: str, method: str, out: Path, private_set: str | None = None,
              base: str | None = None, l2_delta: float | None = None) -> None:
    """AS / A-ESR from the SSCD descriptors; with ``private_set`` and ``l2_delta`` also the pixel ℓ2
    criterion on the images themselves (private images prepared as for fine-tuning)."""
    from finextract.attack.metrics import best_match, score_extraction

    private_desc = np.load(private)
    generated_desc = np.load(generated)
    centers = pd.read_csv(Path(clusters) / "centers.csv")
    extracted_desc = generated_desc[centers["image"].to_numpy()]
    scores = score_extraction(private_desc, extracted_desc, generated=generated_desc, taus=tuple(taus))
    best_sim, best_index = best_match(private_desc, extracted_desc)
    private_files = pd.read_csv(private_order)["file"]
    matches = pd.DataFrame({"private": private_files, "extracted": centers["file"].to_numpy()[best_index],
                            "similarity": best_sim})
    if private_set is not None and l2_delta is not None:
        l2_scores, nearest, nearest_file = _l2_scores(private_set, base, private_files.tolist(),
                                                      centers["file"].tolist(), generated, l2_delta)
        scores.update(l2_scores)
        matches["l2"] = nearest
        matches["l2_extracted"] = nearest_file
    row = {"set": set_name, "ft": ft, "method": method, "n_generated": len(generated_desc), **scores}
    save_csv(out, pd.DataFrame([row]))
    save_csv(Path(out).with_suffix(".matches.csv"), matches)


def _l2_scores(private_set: str, base: str | None, private_files: list[str], extracted_files: list[str],
               generated_embeddings: Path, delta: float) -> tuple[dict[str, float], np.ndarray, list[str]]:
    from finextract.attack.metrics import nearest_l2, score_l2

    private = load_private_set(Path(private_set).name, private_set, base_resolution(base))
    if [str(p) for p in private.files] != [str(p) for p in private_files]:
        raise ValueError(f"{private_set}: its images differ from the ones embedded ({len(private_files)} files); "
                         "rerun the private embedding")
    extracted = np.stack([read_rgb(f) for f in extracted_files])
    nearest, index = nearest_l2(private.images, extracted)
    generated_files = pd.read_csv(Path(generated_embeddings).with_suffix(".order.csv"))["file"].tolist()
    chunks = (np.stack([read_rgb(f) for f in generated_files[start:start + 64]])
              for start in range(0, len(generated_files), 64))
    scores = {**score_l2(private.images, extracted, delta, generated=chunks), "l2_delta": float(delta)}
    return scores, nearest, [extracted_files[i] for i in index]
