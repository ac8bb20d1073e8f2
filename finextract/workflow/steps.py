"""What each workflow rule does, as plain functions from input files to output files.

Every function writes its outputs atomically (a temporary name, then a rename), so a killed
job leaves either nothing or a complete output, and a rerun picks up from there.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from finextract.workflow.config import shard_seeds
from finextract.private_set import load_private_set
from finextract.io import read_rgb, save_csv, save_json, save_npy, save_text


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
def run_finetune(base: str, set_folder: str, caption: str | None, method: str, hyper: dict,
                 out: Path, threads: int = 1, snapshots: tuple[int, ...] = (), **load_options) -> None:
    import torch

    from finextract.training.finetune import FinetuneConfig, finetune
    from finextract.attack.load_models import load_base

    torch.set_num_threads(threads)
    if load_options["precision"] in ("auto", "fp16"):
        # AdamW updates at the paper's lr 2e-6 underflow in fp16 weights: fine-tune in fp32, as the authors did
        load_options = {**load_options, "precision": "fp32"}
    backbone = load_base(base, **load_options)
    private = load_private_set(Path(set_folder).name, set_folder, backbone.resolution, caption)
    for note in private.notes:
        print(f"note: {note}", flush=True)
    # hyper is finetune.<method> of the schema-validated config: every key is there (the schema's defaults)
    lora = {"lora_rank": int(hyper["rank"]), "lora_targets": list(hyper["targets"])} if method == "lora" else {}
    cfg = FinetuneConfig(method=method, lr=float(hyper["lr"]), steps_per_image=int(hyper["steps_per_image"]),
                         batch_size=int(hyper["batch_size"]), seed=int(hyper["seed"]),
                         augment=hyper.get("augment", "none"), **lora)
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


# --- N sweep ------------------------------------------------------------------------------
def run_sweep_point(generated: Path, order: Path, private: Path, n_images: int, taus: list[float],
                    set_name: str, ft: str, method: str, seed_offset: int, time_cap: float, out: Path,
                    min_threshold: float | None = None, private_set: str | None = None,
                    base: str | None = None, l2_delta: float | None = None) -> None:
    from finextract.experiments.nsweep import sweep_point

    files = pd.read_csv(order)["file"].tolist()
    private_images = None
    if private_set is not None:
        private_images = load_private_set(Path(private_set).name, private_set,
                                          base_resolution(base)).images
    row = sweep_point(np.load(generated), files, np.load(private), n_images, tuple(taus),
                      seed_offset=seed_offset, time_cap_s=time_cap, min_threshold=min_threshold,
                      private_images=private_images, l2_delta=l2_delta)
    save_csv(out, pd.DataFrame([{"set": set_name, "ft": ft, "method": method, **row}]))
    print(f"N = {n_images}: AS {row['AS']:.3f} (no-clustering bound {row['upper_AS']:.3f}), "
          f"clustered in {row['cluster_seconds']:.2f} s", flush=True)


def run_sweep_summary(points: list[str], taus: list[float], out_csv: Path, out_png: Path) -> None:
    from finextract.experiments.nsweep import plot_n_sweep

    table = pd.concat([pd.read_csv(p) for p in points], ignore_index=True)
    table = table.sort_values(["set", "ft", "method", "n_generated"]).reset_index(drop=True)
    save_csv(out_csv, table)
    plot_n_sweep(table, out_png, tuple(taus))
    columns = ["set", "ft", "method", "n_per_image", "AS", "upper_AS"] + [f"A-ESR@{t:g}" for t in taus]
    columns += [c for c in ("paper_rule_AS",) if c in table]
    print(table[columns + ["cluster_seconds"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"N sweep: {out_csv} and {out_png}")


# --- w: auto ------------------------------------------------------------------------------
def run_separation(embeddings: Path, n0: int, w: float, time_cap: float, out: Path,
                   min_threshold: float | None = None) -> None:
    from finextract.experiments.auto_w import centre_overlap, clique_cohesion, separation
    from finextract.attack.clustering import extract_clusters
    from finextract.attack.metrics import cosine_matrix

    descriptors = np.load(embeddings)
    similarity = cosine_matrix(descriptors, descriptors)
    result = extract_clusters(similarity, n0, time_cap_s=time_cap, min_threshold=min_threshold)
    row = {"w": w, "separation": separation(similarity, result),
           "cohesion": float(clique_cohesion(similarity, result).mean()),
           "centre_overlap": centre_overlap(similarity, result), "threshold": result.threshold,
           "n_generated": len(descriptors)}
    save_csv(out, pd.DataFrame([row]))
    print(f"w' = {w:g}: separation {row['separation']:.3f} (cohesion {row['cohesion']:.3f}, "
          f"centre overlap {row['centre_overlap']:.3f})", flush=True)


def run_choose_w(scores: list[str], out: Path) -> None:
    from finextract.experiments.auto_w import choose_w

    table = pd.concat([pd.read_csv(p) for p in scores], ignore_index=True)
    chosen = choose_w(dict(zip(table["w"], table["separation"])))
    save_json(out, {"w": chosen, "scores": table.to_dict(orient="records")})
    print(f"w: auto chose w' = {chosen:g} among {sorted(table['w'])}", flush=True)


# --- the guidance study -------------------------------------------------------------------
def run_study_point(generated: Path, order: Path, private: Path, taus: list[float], cell: dict, variant: str,
                    time_cap: float, out: Path, min_threshold: float | None = None,
                    private_set: str | None = None, base: str | None = None,
                    l2_delta: float | None = None) -> None:
    from finextract.experiments.study import study_point

    files = pd.read_csv(order)["file"].tolist()
    private_images = None
    if private_set is not None:
        private_images = load_private_set(Path(private_set).name, private_set,
                                          base_resolution(base)).images
    row = study_point(np.load(generated), files, np.load(private), len(files), tuple(taus), time_cap,
                      min_threshold, private_images, l2_delta)
    save_csv(out, pd.DataFrame([{**cell, "variant": variant, **row}]))
    print(f"{cell} {variant}: AS {row['AS']:.3f}, separation {row['separation']:.3f}", flush=True)


def run_study_summary(points: list[str], controls: list[str], study: dict, out_dir: Path) -> None:
    from finextract.experiments.study_report import write_study_summary

    write_study_summary(points, controls, study, out_dir)


# --- audit --------------------------------------------------------------------------------
def run_audit(name: str, ft: str, candidates_folder: str, candidates: Path, candidates_order: Path,
              generated: list[Path], controls: list[Path], methods: list[str], n_per_draw: int,
              seed_offset: int, base: str, out_dir: Path, membership: Path | None = None,
              membership_score: str = "log_ratio") -> None:
    """The audit of one suspect: ``audit.csv`` (ranked), ``evidence.png``, ``audit.md`` and
    ``measurement.csv`` (counts, plus AUC / TPR where the candidate folder has labels.csv); with
    ``membership`` (the membership stage's table) its score, p and q beside the extraction evidence."""
    from finextract.audit.extraction import MethodEvidence, audit_table, draw_of, read_labels
    from finextract.audit.report import write_audit
    from finextract.private_set import load_image

    files = [Path(f) for f in pd.read_csv(candidates_order)["file"]]
    resolution = base_resolution(base)
    pixels = np.stack([load_image(f, resolution) for f in files])
    evidence = []
    for method, gen, ctl in zip(methods, generated, controls):
        ctl_files = pd.read_csv(Path(ctl).with_suffix(".order.csv"))["file"].tolist()
        evidence.append(MethodEvidence(method, np.load(gen), pd.read_csv(Path(gen).with_suffix(".order.csv"))["file"].tolist(),
                                       np.load(ctl), draw_of(ctl_files, n_per_draw, seed_offset)))
    members = read_labels(candidates_folder, files)
    table = audit_table(files, np.load(candidates), pixels, evidence, read_rgb, members)
    write_audit(name, ft, table, methods, len(evidence[0].generated), len(np.unique(evidence[0].control_draws)),
                Path(out_dir), membership, membership_score)


# --- defences -----------------------------------------------------------------------------
def run_defence_quality(samples: Path, generated: Path, private: Path, labels: dict, out: Path) -> None:
    from finextract.experiments.defences import quality_row

    row = {**labels, **quality_row(samples, np.load(generated), np.load(private))}
    save_csv(out, pd.DataFrame([row]))
    print(f"{labels}: fidelity {row['fidelity']:.3f}, checkerboard {row['checkerboard']:.2f}, "
          f"sharpness {row['sharpness']:.2f}", flush=True)


def run_defences_summary(points: list[str], qualities: list[str], out_dir: Path) -> None:
    from finextract.experiments.defences import write_defences_summary

    print(write_defences_summary(points, qualities, out_dir).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


# --- caption extraction ---------------------------------------------------------------------------------
def run_extract_caption(base: str, ft_dir: str, ft_method: str, lengths: list[int], iterations: int, step: float,
                        seed: int, rank: int, scan_tokens: bool, out: Path, true_caption: str | None = None,
                        threads: int = 1, objective_name: str = "eq19", **load_options) -> None:
    """``captions.csv`` (one extracted caption per prompt length, with its F and, if the true caption is
    known, its word recall) and, with ``scan_tokens``, ``tokens.csv`` (every token as a one-token prompt)."""
    import torch

    from finextract.experiments.caption_extraction import (caption_direction, cross_attention_weights, extract_caption, objective, text_tower,
                           token_scores, true_token_ranks, word_recall)
    from finextract.backbones.base import ADAPTER_NAME
    from finextract.attack.load_models import load_base

    torch.set_num_threads(threads)
    backbone = load_base(base, **load_options)
    pretrained = cross_attention_weights(backbone.unet)
    if ft_method == "dreambooth":
        finetuned = cross_attention_weights(backbone.load_dreambooth_unet(ft_dir))
    else:
        backbone.load_lora(ft_dir, adapter_name=ADAPTER_NAME)
        finetuned = cross_attention_weights(backbone.unet)
    direction = caption_direction(pretrained, finetuned, rank, objective_name)
    tower = text_tower(backbone)
    out = Path(out)
    rows = []
    for length in lengths:
        found = extract_caption(tower, direction, length, iterations, step, seed, log=lambda m: print(m, flush=True))
        row = {"kind": "extracted", "objective": objective_name, "n_tokens": length, "caption": found.caption, "tokens": " ".join(found.tokens), "F": found.score,
               "best_iteration": found.iteration}
        if true_caption:
            row.update({"true_caption": true_caption, "recall": word_recall(found.caption, true_caption),
                        "recall_stem4": word_recall(found.caption, true_caption, stem=4)})
        rows.append(row)
        print(f"{length} tokens: {found.caption!r} (F {found.score:.4f})", flush=True)
    if true_caption:
        ids = tower.tokenizer(true_caption, add_special_tokens=False)["input_ids"]
        with torch.no_grad():  # the true caption's own F, for comparison (the last row)
            truth = float(objective(direction, tower.encode(torch.tensor([ids])))[0])
        rows.append({"kind": "true caption", "objective": objective_name, "n_tokens": len(ids), "caption": true_caption, "tokens": "", "F": truth, "best_iteration": -1,
                     "true_caption": true_caption, "recall": 1.0, "recall_stem4": 1.0})
    save_csv(out / "captions.csv", pd.DataFrame(rows))
    # what `caption: extract` samples with: the weights' own choice (highest F), never the truth
    extracted = [r for r in rows if r["kind"] == "extracted"]
    save_text(out / "caption.txt", max(extracted, key=lambda r: r["F"])["caption"] + "\n")
    if scan_tokens:
        scores = token_scores(tower, direction)
        save_csv(out / "tokens.csv", scores.head(200))
        if true_caption:
            save_csv(out / "true_tokens.csv", true_token_ranks(scores, tower, true_caption))


def run_captions_summary(folders: list[str], out: Path, out_png: Path | None = None) -> None:
    """One table of every extracted caption: ``.../captions/<set>/<ft>/captions.csv`` with set and ft;
    with ``out_png``, the figure of their F beside the true caption's."""
    tables = []
    for folder in folders:
        table = pd.read_csv(Path(folder) / "captions.csv")
        table.insert(0, "ft", Path(folder).name)
        table.insert(0, "set", Path(folder).parent.name)
        tables.append(table)
    summary = pd.concat(tables, ignore_index=True)
    save_csv(out, summary)
    if out_png is not None:
        from finextract.experiments.caption_report import plot_caption_scores

        plot_caption_scores(summary, Path(out_png))
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
