"""What an audit hands on: the evidence sheet (PNG), a Markdown page per suspect, the summary table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from .audit import NOT_PROOF
from .io import save_csv, save_png, save_text
from .report import tile_image

FT_LABELS = {"dreambooth": "DreamBooth", "lora": "LoRA"}


def evidence_sheet(table: pd.DataFrame, title: str, out: Path, tile: int = 64, columns: int = 4) -> None:
    """Candidates in rank order, each beside its best generated image (of the method with the
    smallest p), labelled with similarity, pixel ℓ2 and p; a known non-member is marked."""
    label_h, pair_w = 26, 2 * tile + 8
    rows = -(-len(table) // columns)
    sheet = Image.new("RGB", (columns * pair_w, 16 + rows * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((2, 2), f"{title}: candidate | best generated image, ranked by p", fill="black")
    for i, row in enumerate(table.itertuples(index=False)):
        x, y = (i % columns) * pair_w, 16 + (i // columns) * (tile + label_h)
        method = row.best_method
        sheet.paste(tile_image(row.candidate, tile), (x, y))
        sheet.paste(tile_image(getattr(row, f"best_{method}"), tile), (x + tile, y))
        member = getattr(row, "member", None)
        mark = {1: " M", 0: " -"}.get(member, "")
        draw.text((x + 1, y + tile), f"#{row.rank}{mark} {Path(row.candidate).stem[:20]}", fill="black")
        draw.text((x + 1, y + tile + 12), f"s {getattr(row, f'similarity_{method}'):.2f} "
                  f"l2 {getattr(row, f'l2_{method}'):.2f} p {row.p:.3f}", fill="black")
    save_png(out, np.asarray(sheet))


def audit_markdown(name: str, ft: str, table: pd.DataFrame, methods: list[str], n_generated: int,
                   n_draws: int, measurement: dict | None, alpha: float = 0.05) -> str:
    called = table[table["p"] <= alpha]
    lines = [f"# Audit {name}, {FT_LABELS.get(ft, ft)}", "",
             f"{len(table)} candidates; per method ({', '.join(methods)}) {n_generated} images of the suspect "
             f"and {n_draws} × {n_generated} of the never-fine-tuned base with the same caption (the null). "
             f"{len(called)} candidate(s) at p ≤ {alpha:g} (Bonferroni over methods); "
             f"{int((table['q'] <= alpha).sum())} at q ≤ {alpha:g} (Benjamini–Hochberg).", "", f"**{NOT_PROOF}**",
             "", "| rank | candidate | best method | similarity | ℓ2 | p | q |", "| ---: | --- | --- | ---: | ---: | ---: | ---: |"]
    for row in table.itertuples(index=False):
        m = row.best_method
        lines.append(f"| {row.rank} | {Path(row.candidate).name} | {m} | {getattr(row, f'similarity_{m}'):.3f} | "
                     f"{getattr(row, f'l2_{m}'):.3f} | {row.p:.4f} | {row.q:.4f} |")
    if measurement:
        lines += ["", "Known membership (labels.csv): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in measurement.items())]
    return "\n".join(lines) + "\n"


def write_audit_summary(measurement_files: list[str], out_csv: Path, out_md: Path) -> pd.DataFrame:
    """One row per (audit, fine-tuning method) with its counts and, where labels exist, its figures."""
    table = pd.concat([pd.read_csv(f) for f in measurement_files], ignore_index=True)
    save_csv(out_csv, table)
    columns = [c for c in ("audit", "ft", "candidates", "called_p<=0.05", "members", "non_members", "AUC",
                           "TPR@1%FPR", "TPR@p<=0.05", "FPR@p<=0.05") if c in table]
    shown = table[columns].copy()
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = "\n".join("| " + " | ".join(_fmt(v) for v in row) + " |" for row in shown.itertuples(index=False))
    save_text(out_md, f"# Audit summary\n\n{header}\n{body}\n\n{NOT_PROOF}\n")
    return table


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.3f}"
    return str(value)
