"""What each rule of the experiments and the audit does (N sweep, `w: auto`, the guidance study, the audit,
the defences, caption extraction), as plain functions from input files to output files.

Every function writes its outputs atomically (a temporary name, then a rename), so a killed
job leaves either nothing or a complete output, and a rerun picks up from there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from finextract.workflow.attack_steps import base_resolution
from finextract.private_set import load_private_set
from finextract.io import read_rgb, save_csv, save_json, save_text

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


def run_default_recipe(points: list[str], controls: list[str], rule: dict, out_dir: Path) -> None:
    from finextract.experiments.study_report import write_default_recipe

    chosen = write_default_recipe(points, controls, rule, out_dir)
    print(chosen.to_string(index=False), flush=True)


# --- audit --------------------------------------------------------------------------------
def run_audit(name: str, ft: str, candidates_folder: str, candidates: Path, candidates_order: Path,
              generated: list[Path], controls: list[Path], methods: list[str], n_per_draw: int,
              seed_offset: int, base: str, out_dir: Path, membership: Path | None,
              membership_score: str) -> None:
    """The audit of one suspect: ``audit.csv`` (ranked), ``evidence.png``, ``audit.md`` and
    ``measurement.csv`` (counts, plus AUC / TPR where the candidate folder has labels.csv); with
    ``membership`` (the membership stage's table) its score ``membership_score``, p and q beside the
    extraction evidence."""
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
