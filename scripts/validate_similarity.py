#!/usr/bin/env python
"""Choose the similarity instrument on *generated* copies and non-copies, and report it.

    nice -n 10 .venv/bin/python scripts/validate_similarity.py

Inputs: the labelled set in ``resources/copyset/`` (``scripts/build_copy_set.py``), the narrow emoji
corpus of the previous base as the calibration background (``snakemake corpus``), and the default private sets for the
synthetic checks of ``docs/sscd-calibration.md``. For every candidate instrument (SSCD model ×
comparison resolution × Gaussian pre-filter σ × post-processing fitted on the corpus) it scores all
labelled pairs of the *choosing* split, applies the rule below, and reports the chosen instrument
and the pixel-space ℓ2 criterion on the *reporting* split. Writes the calibration file of the
choice to ``resources/sscd/``, ``docs/similarity-validation.md`` and ``docs/img/similarity-validation.png``.

The rule, fixed before the first run (2026-12-01):
  1. eligible: ≤ 1 % of the choosing split's non-copy pairs score ≥ 0.6, and distinct images of
     the default private sets stay below 0.6 at the 95th percentile (the old synthetic check);
  2. among those, the highest share of copies ≥ 0.6, then of copies ≥ 0.7, then ROC AUC;
     remaining ties go to the smaller σ and the fewer post-processing dimensions.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

import calibrate_sscd as cal

from finextract.attack import similarity as sim
from finextract.world.copyset import labelled_pairs, load_copy_set
from finextract.attack.metrics import pixel_l2_pairs
from finextract.audit.roc import roc_auc, tpr_at_fpr

TAUS = (0.6, 0.7)
MAX_FALSE_POSITIVE = 0.01
SIGMAS = (0.0, 0.5, 0.8, 1.0, 1.2, 1.5)
POSTS = ("raw", "centred", "white64", "white128", "white256")
HAND_NOTES = "## Notes (written by hand; kept when this page is regenerated)"
MODEL_RESOLUTIONS = (("distilled", 224), ("distilled", 288), ("int8", 224))


@dataclass(frozen=True)
class Instrument:
    model: str
    resolution: int
    sigma: float
    post: str

    @property
    def name(self) -> str:
        return f"{self.model} {self.resolution} σ{self.sigma:g} {self.post}"

    @property
    def whiten_dims(self) -> int | None:
        return int(self.post[5:]) if self.post.startswith("white") else None

    @property
    def dims_rank(self) -> int:
        return {"raw": 0, "centred": 1}.get(self.post, 1 + (self.whiten_dims or 0))


def figures(scores: np.ndarray, pairs: pd.DataFrame) -> dict[str, float]:
    labels = pairs["label"].to_numpy()
    copies, others = scores[labels == 1], scores[labels == 0]
    row = {"AUC": roc_auc(scores, labels), "TPR@1%FPR": tpr_at_fpr(scores, labels)}
    for tau in TAUS:
        row[f"copies>={tau:g}"] = float((copies >= tau).mean())
        row[f"noncopies<{tau:g}"] = float((others < tau).mean())
    row["copy_min"] = float(copies.min())
    row["noncopy_max"] = float(others.max())
    for kind in ("other-frame", "other-same-source", "other-source", "base"):
        hit = scores[(pairs["kind"] == kind).to_numpy()]
        if len(hit):
            row[f"max {kind}"] = float(hit.max())
    return row


def summarise_synthetic(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """The old synthetic checks: distinct private pairs, and near-copies above 0.7 per kind."""
    d = scores["distinct"]
    row = {"d_mean": float(d.mean()), "d_p95": float(np.percentile(d, 95)), "d_max": float(d.max())}
    row.update({f"{k} share": float((scores[k] > cal.COPY_THRESHOLD).mean()) for k in cal.COPY_KINDS})
    return row


def eligible(row: dict, synthetic: dict) -> bool:
    return row["noncopies<0.6"] >= 1 - MAX_FALSE_POSITIVE and synthetic["d_p95"] < cal.DISTINCT_P95_MAX


def choose(rows: dict[Instrument, dict], synthetic: dict[Instrument, dict]) -> Instrument:
    ok = [i for i in rows if eligible(rows[i], synthetic[i])]
    if not ok:
        raise SystemExit("no instrument meets the false-positive limit on the choosing split")
    return max(ok, key=lambda i: (rows[i]["copies>=0.6"], rows[i]["copies>=0.7"], rows[i]["AUC"],
                                  -i.sigma, -i.dims_rank))


def rel(path: Path | None) -> str:
    if path is None:
        return "null"
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copyset", type=Path, default=REPO / "resources/copyset")
    parser.add_argument("--corpus", type=Path, default=REPO / "results/corpus/images.npy")
    parser.add_argument("--cache", type=Path, default=REPO / "results/cache")
    parser.add_argument("--private", type=Path, nargs="+",
                        default=[REPO / "resources/datasets/openmoji-style",
                                 REPO / "resources/datasets/wesnoth-drake"])
    parser.add_argument("--out-dir", type=Path, default=REPO / "resources/sscd")
    parser.add_argument("--doc", type=Path, default=REPO / "docs/similarity-validation.md")
    parser.add_argument("--figure", type=Path, default=REPO / "docs/img/similarity-validation.png")
    parser.add_argument("--results", type=Path, default=REPO / "results/similarity-validation.csv")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="distilled 224 only (for a smoke run)")
    parser.add_argument("--keep", metavar="INSTRUMENT", default=None,
                        help="report this instrument (e.g. 'int8 224 σ1.5 white64') instead of the rule's choice: "
                             "re-validating the one in use on a rebuilt set; the rule's fresh choice is shown beside it")
    parser.add_argument("--keep-l2-delta", type=float, default=None, help="with --keep: the δ in use")
    args = parser.parse_args(argv)
    command = "nice -n 10 .venv/bin/python " + " ".join(
        shlex.quote(a) for a in [str(Path(sys.argv[0]).resolve().relative_to(REPO))] + sys.argv[1:])
    t_start = time.time()

    manifest, copy_images = load_copy_set(args.copyset)
    split_pairs = {split: labelled_pairs(manifest, split) for split in ("choose", "report")}
    background = np.load(args.corpus)
    private_parts, sizes = [], []
    for folder in args.private:
        _, images = cal.load_private(folder)
        private_parts.append(images)
        sizes.append(("openmoji" if "openmoji" in folder.name else "wesnoth", len(images)))
    private = np.concatenate(private_parts)
    near, near_meta = cal.near_copies(private, 0)
    synthetic_meta = {"private_sizes": sizes, "copy_meta": near_meta, "vendor_keys": [], "openmoji_index": {}}
    groups = {"copyset": copy_images, "background": background, "private": private, "copies": near}
    print(f"copy set: {len(manifest)} images; pairs choose {len(split_pairs['choose'])}, report "
          f"{len(split_pairs['report'])}; background {len(background)}", file=sys.stderr)

    model_resolutions = MODEL_RESOLUTIONS[:1] if args.quick else MODEL_RESOLUTIONS
    rows: dict[Instrument, dict] = {}
    report_rows: dict[Instrument, dict] = {}
    synthetic: dict[Instrument, dict] = {}
    posts: dict[Instrument, sim.Postprocess | None] = {}
    pair_scores: dict[Instrument, dict[str, np.ndarray]] = {}
    for model_name, resolution in model_resolutions:
        for sigma in SIGMAS:
            model = sim.DescriptorModel(model_name, resolution=resolution, threads=args.threads,
                                        prefilter_sigma=sigma)
            raw = {k: model.embed(v, progress=False) for k, v in groups.items()}
            print(f"embedded {model_name} {resolution} σ{sigma:g} ({time.time() - t_start:.0f} s)", file=sys.stderr)
            for post_name in POSTS:
                inst = Instrument(model_name, resolution, sigma, post_name)
                post = None
                if post_name != "raw":
                    post = sim.fit_postprocess(
                        raw["background"], inst.whiten_dims, model_id=model.model_id, resolution=resolution,
                        prefilter_sigma=sigma,
                        note=f"{inst.name}; background: {len(background)} pretraining-corpus images; "
                             f"chosen on generated copies by scripts/validate_similarity.py")
                final = {k: (v if post is None else post.apply(v)) for k, v in raw.items()}
                posts[inst] = post
                desc = final["copyset"]
                pair_scores[inst] = {s: np.einsum("ij,ij->i", desc[p["a"].to_numpy()], desc[p["b"].to_numpy()])
                                     for s, p in split_pairs.items()}
                rows[inst] = figures(pair_scores[inst]["choose"], split_pairs["choose"])
                report_rows[inst] = figures(pair_scores[inst]["report"], split_pairs["report"])
                synthetic[inst] = summarise_synthetic(cal.score_variant(
                    {"private": final["private"], "copies": final["copies"], "vendor": np.zeros((0, 1))},
                    synthetic_meta))
    fresh = choose(rows, synthetic)
    chosen = fresh
    if args.keep:
        chosen = next((i for i in rows if i.name == args.keep), None)
        if chosen is None:
            raise SystemExit(f"--keep {args.keep!r}: not a candidate; candidates are named like {fresh.name!r}")
    old = Instrument("distilled", 224, 0.0, "white128")  # the instrument before this validation

    # ℓ2 in pixel space (Carlini et al. 2023): δ from the choosing split's non-copies, like τ's rule
    l2 = {s: pixel_l2_pairs(copy_images[p["a"].to_numpy()], copy_images[p["b"].to_numpy()])
          for s, p in split_pairs.items()}
    choose_labels = split_pairs["choose"]["label"].to_numpy()
    delta = float(np.quantile(l2["choose"][choose_labels == 0], MAX_FALSE_POSITIVE, method="lower"))
    delta = fresh_delta = float(np.floor(delta * 100) / 100)  # round down to 0.01: never looser than the data allow
    if args.keep and args.keep_l2_delta is not None:
        delta = args.keep_l2_delta
    l2_rows = {}
    for split in ("choose", "report"):
        labels = split_pairs[split]["label"].to_numpy()
        d = l2[split]
        l2_rows[split] = {"AUC": roc_auc(-d, labels), "TPR@1%FPR": tpr_at_fpr(-d, labels),
                          "copies<delta": float((d[labels == 1] < delta).mean()),
                          "noncopies>=delta": float((d[labels == 0] >= delta).mean()),
                          "copy_median": float(np.median(d[labels == 1])),
                          "noncopy_min": float(d[labels == 0].min())}

    if posts[chosen] is not None:
        suffix = "" if chosen.sigma == 0 else f"-blur{chosen.sigma:g}"
        calibration_path = args.out_dir / f"calibration-{chosen.model}{suffix}.npz"
        posts[chosen].save(calibration_path)
    else:
        calibration_path = None

    table = pd.DataFrame([{"instrument": i.name, "model": i.model, "resolution": i.resolution, "sigma": i.sigma,
                           "post": i.post, **{f"choose {k}": v for k, v in rows[i].items()},
                           **{f"report {k}": v for k, v in report_rows[i].items()},
                           **{f"synthetic {k}": v for k, v in synthetic[i].items()}} for i in rows])
    args.results.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.results, index=False)
    plot(args.figure, [old, chosen], pair_scores, split_pairs, l2, delta)
    seconds = time.time() - t_start
    doc = render_doc(chosen, old, rows, report_rows, synthetic, manifest, split_pairs, l2_rows, delta,
                     calibration_path, command, seconds, fresh, fresh_delta)
    if args.doc.exists() and HAND_NOTES in args.doc.read_text():  # keep the hand-written notes
        doc += "\n" + HAND_NOTES + args.doc.read_text().split(HAND_NOTES, 1)[1]
    args.doc.write_text(doc)
    (args.copyset / "validation.json").write_text(json.dumps({
        "instrument": chosen.name, "calibration": rel(calibration_path) if calibration_path else None,
        "report": report_rows[chosen], "l2_delta": delta, "l2_report": l2_rows["report"]}, indent=2) + "\n")
    print(f"chosen: {chosen.name}; l2 delta {delta}; wrote {args.doc} ({seconds:.0f} s)", file=sys.stderr)


def plot(path: Path, instruments, pair_scores, split_pairs, l2, delta) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = split_pairs["report"]
    labels = pairs["label"].to_numpy()
    fig, axes = plt.subplots(1, len(instruments) + 1, figsize=(4.2 * (len(instruments) + 1), 3.4))
    bins = np.linspace(-0.4, 1.0, 57)
    for ax, inst in zip(axes, instruments):
        s = pair_scores[inst]["report"]
        for kind, colour in (("copy", "tab:red"), ("other-frame", "tab:purple"),
                             ("other-same-source", "tab:orange"), ("other-source", "tab:grey"), ("base", "tab:blue")):
            hit = s[(pairs["kind"] == kind).to_numpy()]
            if len(hit):
                ax.hist(hit, bins=bins, alpha=0.55, density=True, color=colour, label=kind)
        for tau in TAUS:
            ax.axvline(tau, color="black", lw=0.8, ls="--")
        ax.set_title(inst.name, fontsize=9)
        ax.set_xlabel("similarity (reporting split)")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    d = l2["report"]
    ax.hist(d[labels == 1], bins=40, alpha=0.6, density=True, color="tab:red", label="copy")
    ax.hist(d[labels == 0], bins=40, alpha=0.6, density=True, color="tab:grey", label="non-copy")
    ax.axvline(delta, color="black", lw=0.8, ls="--")
    ax.set_title(f"pixel ℓ2 (δ = {delta:g})", fontsize=9)
    ax.set_xlabel("normalised ℓ2 (reporting split)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_doc(chosen, old, rows, report_rows, synthetic, manifest, split_pairs, l2_rows, delta,
               calibration_path, command, seconds, fresh, fresh_delta) -> str:
    counts = manifest.groupby(["split", "model"]).size().unstack(fill_value=0)
    kinds = {s: p["kind"].value_counts().to_dict() for s, p in split_pairs.items()}
    sources = manifest[manifest["model"] == "source"].groupby(["split", "source"]).size().unstack(fill_value=0)
    r, o = report_rows[chosen], report_rows[old]
    lines = [
        "# Validating the similarity on generated images",
        "",
        "Every extraction number (AS, A-ESR) rests on one instrument: the SSCD cosine between a generated",
        "and a private image. It used to be validated only on synthetic perturbations of real images; this",
        "page validates it on **generated** copies and non-copies of the tiny world and chooses it there.",
        f"Regenerate with `{command}` ({seconds / 60:.0f} min on the project's 2-core VM);",
        "the labelled set is rebuilt by `.venv/bin/python scripts/build_copy_set.py` (`finextract/world/copyset.py`).",
        "",
        "## The labelled set (made by construction, not by a metric)",
        "",
        "θ (`resources/base`) is fine-tuned with DreamBooth on a **single** source image X (lr 2e-4, 300 steps,",
        "the default recipe's per-image exposure and a half), with the caption of X's style. Its samples —",
        "direct (4), CFG w' = 3 (2) and FineXtract w' = 3, k = −0.02 (4), 20 DDIM steps — are **copies of X**.",
        "Non-copies: the same samples against every other reference image Y ≠ X (*other-same-source*: same",
        "style, e.g. another OpenMoji emoji; *other-source*), samples of the never-fine-tuned θ with X's",
        "caption (*base*), and, for Wesnoth units, two other animation frames of X's own unit against",
        "X's copies (*other-frame*: the same unit in another pose, the hardest case, as in the default",
        "`wesnoth-drake` set). Sources never overlap the default private sets: OpenMoji emoji other than",
        "the ten private ones, Wesnoth units other than the Drake Burner, Google emoji of concepts the",
        "base never saw (the broad corpus's held-out concepts). Sources alternate between the **choosing** and",
        "the **reporting** split.",
        "",
        "| split | source images (openmoji / wesnoth / google) | generated copies | base samples | other frames | copy pairs | non-copy pairs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for split in ("choose", "report"):
        src = " / ".join(str(int(sources.loc[split].get(s, 0))) for s in ("openmoji", "wesnoth", "google"))
        lines.append(f"| {split} | {src} | {int(counts.loc[split].get('finetuned', 0))} | "
                     f"{int(counts.loc[split].get('base', 0))} | {int(counts.loc[split].get('frame', 0))} | "
                     f"{kinds[split].get('copy', 0)} | {sum(v for k, v in kinds[split].items() if k != 'copy')} |")
    lines += [
        "",
        "Pixel RMSE between copies and their source (reporting split): median "
        f"{l2_rows['report']['copy_median']:.3f} in [0, 1]. Images live in `resources/copyset/images/<source>/`;",
        "`manifest.csv` lists each file, its split and how it was made.",
        "",
        "## The choice",
        "",
        "Candidates: SSCD model × comparison resolution (distilled 224² and 288², int8 224²) × a Gaussian",
        f"pre-filter applied to both images at 32 px (σ ∈ {{{', '.join(f'{s:g}' for s in SIGMAS)}}} px) × post-processing",
        "fitted on the 512 images of the narrow emoji corpus (`snakemake corpus`, the previous base's pretraining",
        "corpus, kept so the calibration stays the same) prepared the same way (raw, centred, centred + PCA whitening",
        "to 64 / 128 / 256 dims, re-normalised). **The rule, fixed on 2026-12-01 before the first run:** eligible",
        "are instruments with ≤ 1 % of the choosing split's non-copy pairs at ≥ 0.6 whose distinct default private",
        "images stay below 0.6 at the 95th percentile (the old synthetic check); among them the highest share of",
        "copies ≥ 0.6 wins, then of copies ≥ 0.7, then ROC AUC, then the smaller σ and fewer dimensions.",
        "",
        f"**{'Chosen' if chosen == fresh else 'In use, kept'}: {chosen.name}** (`sscd.model: {chosen.model}`, `sscd.resolution: {chosen.resolution}`, "
        f"`sscd.prefilter_sigma: {chosen.sigma:g}`, calibration "
        f"`{rel(calibration_path)}`). The ten best candidates on the choosing split:",
        "",
        "| instrument | AUC | TPR@1%FPR | copies ≥ 0.6 | copies ≥ 0.7 | non-copies < 0.6 | non-copies < 0.7 | eligible |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    ranked = sorted(rows, key=lambda i: (eligible(rows[i], synthetic[i]), rows[i]["copies>=0.6"],
                                         rows[i]["copies>=0.7"], rows[i]["AUC"]), reverse=True)
    shown = ranked[:10] + [i for i in dict.fromkeys([chosen, old]) if i not in ranked[:10]]
    for inst in shown:
        x = rows[inst]
        tag = " (before)" if inst == old else " (in use)" if inst == chosen != fresh else ""
        lines.append(f"| {inst.name}{tag} | {x['AUC']:.4f} | {pct(x['TPR@1%FPR'])} | {pct(x['copies>=0.6'])} | "
                     f"{pct(x['copies>=0.7'])} | {pct(x['noncopies<0.6'])} | {pct(x['noncopies<0.7'])} | "
                     f"{'yes' if eligible(x, synthetic[inst]) else 'no'} |")
    if chosen != fresh or delta != fresh_delta:
        lines += ["", f"**Kept, not re-chosen** (`--keep`): the instrument and δ in use were re-validated on this set "
                      f"rather than chosen afresh; the rule applied afresh to this choosing split would pick "
                      f"**{fresh.name}** and δ = {fresh_delta:g}. Why they are kept: the notes at the end."]
    lines += [
        "",
        "Every candidate's figures on both splits and the synthetic checks: `results/similarity-validation.csv`",
        "(written by the command above).",
        "",
        "## On the reporting split",
        "",
        "| instrument | AUC | TPR@1%FPR | copies ≥ 0.6 | copies ≥ 0.7 | non-copies < 0.6 | non-copies < 0.7 | lowest copy | highest non-copy |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for inst, tag in ((old, "before: " ), (chosen, "chosen: ")):
        x = report_rows[inst]
        lines.append(f"| {tag}{inst.name} | {x['AUC']:.4f} | {pct(x['TPR@1%FPR'])} | {pct(x['copies>=0.6'])} | "
                     f"{pct(x['copies>=0.7'])} | {pct(x['noncopies<0.6'])} | {pct(x['noncopies<0.7'])} | "
                     f"{x['copy_min']:.3f} | {x['noncopy_max']:.3f} |")
    lines += ["", "Highest non-copy score by kind (reporting split): " + ", ".join(
        f"{k[4:]} {v:.3f} (before: {o.get(k, float('nan')):.3f})" for k, v in r.items() if k.startswith("max ")) + "."]
    targets = [("AUC ≥ 0.99", r["AUC"] >= 0.99), ("≥ 90 % of copies ≥ 0.6", r["copies>=0.6"] >= 0.9),
               ("≥ 99 % of non-copies < 0.6", r["noncopies<0.6"] >= 0.99)]
    lines += ["", "Targets on the reporting split: " + "; ".join(
        f"{name}: {'met' if ok else 'missed'}" for name, ok in targets) + "."]
    s = synthetic[chosen]
    lines += [
        "",
        "Synthetic checks of `docs/sscd-calibration.md` with the chosen instrument (default private sets): distinct",
        f"pairs mean {s['d_mean']:.3f} / p95 {s['d_p95']:.3f} / max {s['d_max']:.3f}; near-copies above 0.7: "
        + ", ".join(f"{k} {pct(s[f'{k} share'])}" for k in cal.COPY_KINDS) + ".",
        "",
        "![similarity of generated copies and non-copies, before and after](img/similarity-validation.png)",
        "",
        "## A second metric: pixel-space ℓ2",
        "",
        "Carlini et al. (2023, *Extracting Training Data from Diffusion Models*) call a generated image extracted",
        "when its normalised ℓ2 distance to a training image, √(mean over pixels and channels of (a − b)²) with",
        "pixels in [0, 1], is below a threshold δ. It shares nothing with SSCD, so where the two disagree one of",
        "them is wrong about that image. δ is set by the rule used for τ: the largest value (rounded down to 0.01)",
        f"that lets ≤ 1 % of the choosing split's non-copies through: **δ = {delta:g}** (`metrics.l2_delta`).",
        "",
        "| split | AUC | TPR@1%FPR | copies < δ | non-copies ≥ δ | median copy ℓ2 | lowest non-copy ℓ2 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for split in ("choose", "report"):
        x = l2_rows[split]
        lines.append(f"| {split} | {x['AUC']:.4f} | {pct(x['TPR@1%FPR'])} | {pct(x['copies<delta'])} | "
                     f"{pct(x['noncopies>=delta'])} | {x['copy_median']:.3f} | {x['noncopy_min']:.3f} |")
    lines += [
        "",
        "In every table the workflow reports, beside AS and A-ESR, `L2` (the mean over private images of the",
        "smallest ℓ2 to an extracted image) and `L2-ESR` (the share of private images with an extracted image",
        "closer than δ).",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}; SSCD via onnxruntime on CPU.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
