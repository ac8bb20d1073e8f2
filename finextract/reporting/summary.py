"""The run's summary: the paper's Table 1 in miniature, and a grid a person can look at."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from finextract.io import save_csv, save_png, save_text

METHOD_LABELS = {"direct": "Direct Text2img+Clustering", "cfg": "CFG+Clustering",
                 "finextract": "FineXtract", "finextract_uncond": "FineXtract (no caption, Eq. 6)"}
FT_LABELS = {"dreambooth": "DreamBooth", "lora": "LoRA"}
CONTROL_LABEL = "Control: base model θ, never fine-tuned"
L2_COLUMNS = ("L2", "L2-ESR")


def score_columns(metrics: pd.DataFrame) -> list[str]:
    """AS, A-ESR at every τ the run scored (highest first, as in the paper), then the ℓ2 pair if present."""
    taus = sorted((float(c.split("@")[1]) for c in metrics.columns
                   if c.startswith("A-ESR@")), reverse=True)
    columns = ["AS"] + [f"A-ESR@{t:g}" for t in taus]
    return columns + [c for c in L2_COLUMNS if c in metrics.columns]


def collect_metrics(files: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def table1(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (set, method), columns '<FT> <score>' as in the paper's Table 1."""
    columns = score_columns(metrics)
    rows = []
    for set_name, per_set in metrics.groupby("set", sort=False):
        control = per_set[per_set["ft"] == "none"]
        method_order = [m for m in METHOD_LABELS if m in set(per_set["method"][per_set["ft"] != "none"])]
        for method in method_order:
            row = {"set": set_name, "method": METHOD_LABELS[method]}
            for ft in FT_LABELS:
                hit = per_set[(per_set["ft"] == ft) & (per_set["method"] == method)]
                for col in columns:
                    row[f"{FT_LABELS[ft]} {col}"] = float(hit[col].iloc[0]) if len(hit) and col in hit else np.nan
                if len(hit):
                    row[f"{FT_LABELS[ft]} upper_AS"] = float(hit["upper_AS"].iloc[0])
            rows.append(row)
        if len(control):
            row = {"set": set_name, "method": CONTROL_LABEL}
            for ft in FT_LABELS:
                for col in columns:
                    row[f"{FT_LABELS[ft]} {col}"] = float(control[col].iloc[0])
                row[f"{FT_LABELS[ft]} upper_AS"] = float(control["upper_AS"].iloc[0])
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: float, column: str) -> str:
    if pd.isna(value):
        return "—"
    return f"{value:.3f}" if column in ("AS", "L2") else f"{value:.2f}"


def _header(column: str, deltas: set[float]) -> str:
    if column == "L2-ESR" and len(deltas) == 1:
        return f"ℓ2-ESR δ {next(iter(deltas)):g}"
    return column.replace("@", " ").replace("L2", "ℓ2")


def table1_markdown(table: pd.DataFrame, metrics: pd.DataFrame | None = None,
                    disagreements: list[str] | None = None) -> str:
    columns = [c.split(" ", 1)[1] for c in table.columns if c.startswith(f"{FT_LABELS['dreambooth']} ")
               and not c.endswith("upper_AS")]
    fts = [ft for ft in FT_LABELS.values() if any(c.startswith(f"{ft} ") for c in table.columns)]
    deltas = set(metrics["l2_delta"].dropna()) if metrics is not None and "l2_delta" in metrics else set()
    score_cols = [f"{ft} {c}" for ft in fts for c in columns]
    lines = []
    for set_name, per_set in table.groupby("set", sort=False):
        lines += [f"### {set_name}", "",
                  "| Method | " + " | ".join(f"{ft} {_header(c, deltas)}" for ft in fts for c in columns) + " |",
                  "| --- |" + " ---: |" * len(score_cols)]
        for _, row in per_set.iterrows():
            cells = [_cell(row.get(c, np.nan), c.split(" ", 1)[1]) for c in score_cols]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
        uppers = [f"{ft} {row[f'{ft} upper_AS']:.3f}" for _, row in per_set.iterrows()
                  for ft in fts if f"{ft} upper_AS" in row and not pd.isna(row[f"{ft} upper_AS"])
                  and row["method"] == METHOD_LABELS["finextract"]]
        if uppers:
            lines += ["", "No-clustering upper bound for FineXtract (best of all generated images per private "
                      "image, AS): " + ", ".join(uppers)]
        notes = [d for d in (disagreements or []) if d.startswith(f"{set_name} ")]
        if notes:
            lines += ["", "Where SSCD and pixel ℓ2 disagree (private images counted extracted by one metric "
                      "only):", ""] + [f"- {d}" for d in notes]
        lines.append("")
    return "\n".join(lines)


def metric_disagreements(metric_files: list[str], metrics: pd.DataFrame) -> list[str]:
    """Per combination: private images that SSCD counts as extracted (at the lowest τ) and ℓ2 does not, or
    the other way round — read from each score's ``.matches.csv``."""
    taus = sorted(float(c.split("@")[1]) for c in metrics.columns if c.startswith("A-ESR@"))
    if not taus or "l2_delta" not in metrics:
        return []
    tau = taus[0]
    out = []
    for f, (_, row) in zip(metric_files, metrics.iterrows()):
        matches = pd.read_csv(Path(f).with_suffix(".matches.csv"))
        if "l2" not in matches:
            continue
        by_sscd = matches["similarity"] > tau
        by_l2 = matches["l2"] < row["l2_delta"]
        only_sscd = [Path(p).name for p in matches["private"][by_sscd & ~by_l2]]
        only_l2 = [Path(p).name for p in matches["private"][by_l2 & ~by_sscd]]
        if only_sscd or only_l2:
            label = f"{row['set']} {FT_LABELS.get(row['ft'], 'control')} {METHOD_LABELS.get(row['method'], row['method'])}"
            parts = []
            if only_sscd:
                parts.append(f"SSCD > {tau:g} only: {', '.join(only_sscd)}")
            if only_l2:
                parts.append(f"ℓ2 < {row['l2_delta']:g} only: {', '.join(only_l2)}")
            out.append(f"{label}: " + "; ".join(parts))
    return out


def write_summary(metric_files: list[str], out_csv: Path, out_md: Path, out_all: Path) -> str:
    metrics = collect_metrics(metric_files)
    save_csv(out_all, metrics)
    table = table1(metrics)
    save_csv(out_csv, table)
    markdown = table1_markdown(table, metrics, metric_disagreements(metric_files, metrics))
    save_text(out_md, markdown)
    return markdown


def tile_image(path: str | Path, size: int) -> Image.Image:
    """An image file as an RGB square of ``size`` pixels (nearest neighbour keeps the tiny world's pixels visible)."""
    return Image.open(path).convert("RGB").resize((size, size), Image.NEAREST)


def extracted_grid(metric_files: list[str], out: Path, tile: int = 64) -> None:
    """Per private set: each private image, then its best extracted image under each combination,
    labelled with its SSCD similarity (and its pixel ℓ2 where scored)."""
    metrics = collect_metrics(metric_files)
    blocks = []
    for set_name, per_set in metrics.groupby("set", sort=False):
        combos = list(per_set[["ft", "method"]].itertuples(index=False, name=None))
        matches = {c: pd.read_csv(Path(f).with_suffix(".matches.csv"))
                   for c, f in zip(combos, [f for f in metric_files
                                            if pd.read_csv(f)["set"].iloc[0] == set_name])}
        private_files = next(iter(matches.values()))["private"].tolist()
        header = 14
        width, height = tile * (len(combos) + 1), header * 2 + len(private_files) * (tile + header)
        sheet = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(sheet)
        draw.text((2, 1), set_name, fill="black")
        draw.text((2, header), "private", fill="black")
        for j, (ft, method) in enumerate(combos, start=1):
            draw.text((j * tile + 2, header), f"{ft[:5]}/{method[:6]}", fill="black")
        for i, private in enumerate(private_files):
            y = header * 2 + i * (tile + header)
            sheet.paste(tile_image(private, tile), (0, y))
            for j, combo in enumerate(combos, start=1):
                match = matches[combo].iloc[i]
                sheet.paste(tile_image(match["extracted"], tile), (j * tile, y))
                label = f"{match['similarity']:.2f}" + (f" {match['l2']:.2f}" if "l2" in match else "")
                draw.text((j * tile + 2, y + tile), label, fill="black")
        blocks.append(np.asarray(sheet))
    width = max(b.shape[1] for b in blocks)
    padded = [np.pad(b, ((0, 8), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    save_png(out, np.concatenate(padded))


def leak_summary(metrics: pd.DataFrame) -> list[str]:
    """One sentence per (set, fine-tuning): the share of the private set the best method extracts at each τ,
    with the never-fine-tuned control beside it — what a model publisher reads before uploading."""
    taus = sorted((float(c.split("@")[1]) for c in metrics.columns if c.startswith("A-ESR@")))
    if not taus:
        return []
    sentences = []
    for set_name, per_set in metrics.groupby("set", sort=False):
        control = per_set[per_set["ft"] == "none"]
        for ft, rows in per_set[per_set["ft"] != "none"].groupby("ft", sort=False):
            best = rows.sort_values([f"A-ESR@{taus[0]:g}", "AS"], ascending=False).iloc[0]
            shares = " and ".join(f"{best[f'A-ESR@{t:g}']:.0%} at τ = {t:g}" for t in taus)
            text = (f"{set_name}, {FT_LABELS.get(ft, ft)}: the best attack "
                    f"({METHOD_LABELS.get(best['method'], best['method'])}) extracts {shares} of the private set "
                    f"(AS {best['AS']:.3f})")
            if len(control):
                c = control.iloc[0]
                text += (f"; the never-fine-tuned model with the same caption: "
                         + " and ".join(f"{c[f'A-ESR@{t:g}']:.0%}" for t in taus) + f" (AS {c['AS']:.3f})")
            sentences.append(text + ".")
    return sentences


def write_leak_summary(metric_files: list[str], out: Path) -> None:
    """The publisher summary as a small self-contained HTML page (the Snakemake report shows it first)."""
    import html

    items = "".join(f"<li>{html.escape(s)}</li>" for s in leak_summary(collect_metrics(metric_files)))
    save_text(out, "<!doctype html><meta charset='utf-8'><title>Leak score</title>"
                   "<body style='font-family:sans-serif'><h2>Leak score</h2><ul>" + items + "</ul>"
                   "<p>A-ESR: share of private images whose best extracted image has SSCD similarity above τ. "
                   "A low share is not proof that nothing leaked.</p></body>\n")
