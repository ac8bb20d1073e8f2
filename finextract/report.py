"""The run's summary: the paper's Table 1 in miniature, and a grid a person can look at."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .io import save_csv, save_png, save_text

METHOD_LABELS = {"direct": "Direct Text2img+Clustering", "cfg": "CFG+Clustering",
                 "finextract": "FineXtract", "finextract_uncond": "FineXtract (no caption, Eq. 6)"}
FT_LABELS = {"dreambooth": "DreamBooth", "lora": "LoRA"}
CONTROL_LABEL = "Control: base model θ, never fine-tuned"
SCORE_COLUMNS = ("AS", "A-ESR@0.7", "A-ESR@0.6")


def collect_metrics(files: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def table1(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long table: one row per (set, method), columns '<FT> <score>' as in the paper's Table 1."""
    rows = []
    for set_name, per_set in metrics.groupby("set", sort=False):
        control = per_set[per_set["ft"] == "none"]
        method_order = [m for m in METHOD_LABELS if m in set(per_set["method"][per_set["ft"] != "none"])]
        for method in method_order:
            row = {"set": set_name, "method": METHOD_LABELS[method]}
            for ft in FT_LABELS:
                hit = per_set[(per_set["ft"] == ft) & (per_set["method"] == method)]
                for col in SCORE_COLUMNS:
                    row[f"{FT_LABELS[ft]} {col}"] = float(hit[col].iloc[0]) if len(hit) and col in hit else np.nan
                if len(hit):
                    row[f"{FT_LABELS[ft]} upper_AS"] = float(hit["upper_AS"].iloc[0])
            rows.append(row)
        if len(control):
            row = {"set": set_name, "method": CONTROL_LABEL}
            for ft in FT_LABELS:
                for col in SCORE_COLUMNS:
                    row[f"{FT_LABELS[ft]} {col}"] = float(control[col].iloc[0])
                row[f"{FT_LABELS[ft]} upper_AS"] = float(control["upper_AS"].iloc[0])
            rows.append(row)
    return pd.DataFrame(rows)


def table1_markdown(table: pd.DataFrame) -> str:
    lines = []
    score_cols = [f"{ft} {c}" for ft in FT_LABELS.values() for c in SCORE_COLUMNS]
    for set_name, per_set in table.groupby("set", sort=False):
        lines += [f"### {set_name}", "",
                  "| Method | " + " | ".join(c.replace("@", " ") for c in score_cols) + " |",
                  "| --- |" + " ---: |" * len(score_cols)]
        for _, row in per_set.iterrows():
            cells = ["—" if pd.isna(row.get(c)) else f"{row[c]:.3f}" if "AS" == c.split()[-1] else f"{row[c]:.2f}"
                     for c in score_cols]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
        uppers = [f"{ft} {row[f'{ft} upper_AS']:.3f}" for _, row in per_set.iterrows()
                  for ft in FT_LABELS.values() if f"{ft} upper_AS" in row and not pd.isna(row[f"{ft} upper_AS"])
                  and row["method"] == METHOD_LABELS["finextract"]]
        if uppers:
            lines += ["", "No-clustering upper bound for FineXtract (best of all generated images per private "
                      "image, AS): " + ", ".join(uppers)]
        lines.append("")
    return "\n".join(lines)


def write_summary(metric_files: list[str], out_csv: Path, out_md: Path, out_all: Path) -> str:
    metrics = collect_metrics(metric_files)
    save_csv(out_all, metrics)
    table = table1(metrics)
    save_csv(out_csv, table)
    markdown = table1_markdown(table)
    save_text(out_md, markdown)
    return markdown


def _tile(path: str | Path, size: int) -> Image.Image:
    return Image.open(path).convert("RGB").resize((size, size), Image.NEAREST)


def extracted_grid(metric_files: list[str], out: Path, tile: int = 64) -> None:
    """Per private set: each private image, then its best extracted image under each combination."""
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
            sheet.paste(_tile(private, tile), (0, y))
            for j, combo in enumerate(combos, start=1):
                match = matches[combo].iloc[i]
                sheet.paste(_tile(match["extracted"], tile), (j * tile, y))
                draw.text((j * tile + 2, y + tile), f"{match['similarity']:.2f}", fill="black")
        blocks.append(np.asarray(sheet))
    width = max(b.shape[1] for b in blocks)
    padded = [np.pad(b, ((0, 8), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in blocks]
    save_png(out, np.concatenate(padded))
