"""What an audit hands on: the evidence sheet (PNG), a Markdown page per suspect, the summary table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from finextract.audit.extraction import NOT_PROOF, measure, measure_membership, merge_membership
from finextract.io import save_csv, save_png, save_text
from finextract.reporting.summary import tile_image

FT_LABELS = {"dreambooth": "DreamBooth", "lora": "LoRA"}


def evidence_sheet(table: pd.DataFrame, title: str, out: Path, tile: int = 64, columns: int = 4,
                   subtitle: str = "") -> None:
    """Candidates in rank order, each beside its best generated image (of the method with the
    smallest extraction p). Labelled with the membership score, p and q when the audit has them, and
    with the extraction evidence: similarity, pixel ℓ2 and p; a known non-member is marked."""
    has_membership = "membership_p" in table
    p_column = "extraction_p" if has_membership else "p"
    label_h, pair_w = (38 if has_membership else 26), 2 * tile + 8
    top = 28 if subtitle else 16
    rows = -(-len(table) // columns)
    sheet = Image.new("RGB", (columns * pair_w, top + rows * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    ranked_by = "membership p" if has_membership else "p"
    draw.text((2, 2), f"{title}: candidate | best generated image, ranked by {ranked_by}", fill="black")
    if subtitle:
        draw.text((2, 14), subtitle, fill="black")
    for i, row in enumerate(table.itertuples(index=False)):
        x, y = (i % columns) * pair_w, top + (i // columns) * (tile + label_h)
        method = row.best_method
        sheet.paste(tile_image(row.candidate, tile), (x, y))
        sheet.paste(tile_image(getattr(row, f"best_{method}"), tile), (x + tile, y))
        member = getattr(row, "member", None)
        mark = {1: " M", 0: " -"}.get(member, "")
        draw.text((x + 1, y + tile), f"#{row.rank}{mark} {Path(row.candidate).stem[:20]}", fill="black")
        line = y + tile + 12
        if has_membership:
            draw.text((x + 1, line), f"m {row.membership:.3g} p {row.membership_p:.3f} q {row.membership_q:.2f}",
                      fill="darkblue")
            line += 12
        draw.text((x + 1, line), f"s {getattr(row, f'similarity_{method}'):.2f} "
                  f"l2 {getattr(row, f'l2_{method}'):.2f} p {getattr(row, p_column):.3f}", fill="black")
    save_png(out, np.asarray(sheet))


def set_answer(summary: dict) -> str:
    """One line for the folder as a whole, from membership.json."""
    return f"whole folder: {summary['set_test']}, p = {summary['set_p']:.2g}"


NULL_TEXT = {
    "reference": "p-values against {reference} known non-members (the reference folder): exact when an unused "
                 "candidate is exchangeable with them; the smallest possible p is 1/{smallest}.",
    "empirical-null": "no reference folder: p-values from a normal fitted to the candidates' own median and MAD "
                      "(centre {centre:.3g}, spread {spread:.3g}). This assumes that most candidates were not "
                      "used and that unused ones have no heavier upper tail than a normal; supply a reference "
                      "folder of known non-members for p-values that assume neither.",
}


SCORE_TEXT = {
    "gap": "the base's denoising loss minus the fine-tuned model's",
    "gap_uncond": "the base's denoising loss minus the fine-tuned model's, without the caption",
    "clid_gap": "how much more the caption lowers the fine-tuned model's denoising loss than the base's",
    "log_ratio": "the log of the base's denoising loss over the fine-tuned model's, per timestep, averaged",
}


def membership_lines(summary: dict, table: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    null = NULL_TEXT[summary["null"]].format(reference=summary["reference"], smallest=summary["reference"] + 1,
                                             centre=summary["null_centre"] or 0.0, spread=summary["null_spread"] or 0.0)
    lines = ["## Membership test from the weights", "",
             f"Score `{summary['score']}`: {SCORE_TEXT[summary['score']]}, on the same noisy inputs "
             f"({summary['timesteps']} timesteps × {summary['draws']} noise draws), with the caption "
             f"{summary['caption']!r}; higher means the fine-tuning fitted the image better than the base did. {null}",
             "", f"**{int((table['membership_q'] <= alpha).sum())} candidate(s) called used at q ≤ {alpha:g}** "
             f"(Benjamini–Hochberg: among those called, at most {alpha:.0%} expected not used); "
             f"{int((table['membership_p'] <= alpha).sum())} at p ≤ {alpha:g}.", "",
             f"The folder as a whole: {summary['set_test']}, p = {summary['set_p']:.3g} — {summary['set_meaning']}."]
    lines += [line for n in summary.get("notes", []) for line in ("", f"Note: {n}")]
    return lines + [""]


def audit_markdown(name: str, ft: str, table: pd.DataFrame, methods: list[str], n_generated: int,
                   n_draws: int, measurement: dict | None, alpha: float = 0.05,
                   membership: dict | None = None) -> str:
    p_column, q_column = ("extraction_p", "extraction_q") if membership else ("p", "q")
    called = table[table[p_column] <= alpha]
    lines = [f"# Audit {name}, {FT_LABELS.get(ft, ft)}", "", f"**{NOT_PROOF}**", ""]
    if membership:
        lines += membership_lines(membership, table, alpha)
    lines += ["## Extraction evidence" if membership else "",
              "" if membership else None,
              f"{len(table)} candidates; per method ({', '.join(methods)}) {n_generated} images of the suspect "
              f"and {n_draws} × {n_generated} of the never-fine-tuned base with the same caption (the null). "
              f"{len(called)} candidate(s) at p ≤ {alpha:g} (Bonferroni over methods); "
              f"{int((table[q_column] <= alpha).sum())} at q ≤ {alpha:g} (Benjamini–Hochberg).", ""]
    lines = [line for line in lines if line is not None]
    head = "| rank | candidate | " + ("membership | membership p | membership q | " if membership else "") + \
        "best method | similarity | ℓ2 | " + ("extraction p | extraction q |" if membership else "p | q |")
    lines += [head, "|" + " ---: |" * (head.count("|") - 1)]
    for row in table.itertuples(index=False):
        m = row.best_method
        mem = (f"{row.membership:.4g} | {row.membership_p:.4f} | {row.membership_q:.4f} | " if membership else "")
        lines.append(f"| {row.rank} | {Path(row.candidate).name} | {mem}{m} | {getattr(row, f'similarity_{m}'):.3f} | "
                     f"{getattr(row, f'l2_{m}'):.3f} | {getattr(row, p_column):.4f} | {getattr(row, q_column):.4f} |")
    if measurement:
        lines += ["", "Known membership (labels.csv): " + ", ".join(
            f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in measurement.items())]
    return "\n".join(lines) + "\n"


def write_audit(name: str, ft: str, table: pd.DataFrame, methods: list[str], n_generated: int, n_draws: int,
                out_dir: Path, membership: Path | None, score: str) -> None:
    """audit.csv, evidence.png, audit.md and measurement.csv of one suspect, from the extraction table
    and, when given, the membership stage's table (with its membership.json beside it), answered with
    the membership score ``score`` (calibrated here from the stage's scores)."""
    from finextract.audit.membership.run import answer_with

    labelled = "member" in table
    row = {"audit": name, "ft": ft, "candidates": len(table), "called_p<=0.05": int((table["p"] <= 0.05).sum()),
           "n_generated": n_generated, "control_draws": n_draws}
    measurement = measure(table) if labelled else None
    row.update(measurement or {})
    summary = None
    if membership is not None:
        scored, calibrated = answer_with(pd.read_csv(membership), score)
        summary = json.loads(Path(membership).with_name("membership.json").read_text())
        summary.update(score=score, null=calibrated.null, null_centre=calibrated.centre,
                       null_spread=calibrated.spread, set_test=calibrated.set_test.test,
                       set_p=calibrated.set_test.p, set_statistic=calibrated.set_test.statistic,
                       set_meaning=calibrated.set_test.meaning)
        table = merge_membership(table, scored)
        row.update({"membership_score": summary["score"], "null": summary["null"], "reference": summary["reference"],
                    "called_q<=0.05": int((table["membership_q"] <= 0.05).sum()), "set_test": summary["set_test"],
                    "set_p": summary["set_p"], "seconds_per_image": summary["seconds_per_image"]})
        if labelled:
            row.update(measure_membership(scored))
    save_csv(out_dir / "audit.csv", table)
    evidence_sheet(table, f"{name} / {ft}", out_dir / "evidence.png", subtitle=set_answer(summary) if summary else "")
    save_csv(out_dir / "measurement.csv", pd.DataFrame([row]))
    save_text(out_dir / "audit.md", audit_markdown(name, ft, table, methods, n_generated, n_draws,
                                                   measurement, membership=summary))
    print(f"audit {name}/{ft}: {row['called_p<=0.05']} of {len(table)} candidates at extraction p <= 0.05"
          + (f"; membership: {row['called_q<=0.05']} at q <= 0.05, set-level p {row['set_p']:.3g}" if summary else "")
          + (f"; extraction AUC {measurement['AUC']:.3f}" if measurement else "")
          + (f", membership AUC {row['membership_AUC']:.3f}, TPR@1%FPR {row['membership_TPR@1%FPR']:.3f}"
             if summary and labelled else ""), flush=True)


def _with_interval(table: pd.DataFrame, column: str) -> list[str]:
    if column not in table:
        return [""] * len(table)
    return [f"{v:.3f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in
            zip(table[column], table[f"{column}_lo"], table[f"{column}_hi"])]


def membership_figures(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the membership test's figures with bootstrap intervals, its calibration, and beside it the
    extraction-based audit and the plain loss attack on θ' alone."""
    out = pd.DataFrame({"audit": table["audit"], "ft": table["ft"], "members": table["members"],
                        "non_members": table["non_members"], "score": table["membership_score"]})
    for figure in ("AUC", "TPR@1%FPR", "TPR@0.1%FPR"):
        out[figure] = _with_interval(table, f"membership_{figure}")
    out["TPR@p<=0.05"] = table["membership_TPR@p<=0.05"].map("{:.2f}".format)
    out["FPR@p<=0.05"] = table["membership_FPR@p<=0.05"].map("{:.3f}".format)
    out["members called (q<=0.05)"] = table["membership_TPR@q<=0.05"].map("{:.2f}".format)
    out["set p"] = table["set_p"].map("{:.2g}".format)
    if "set_p_members_only" in table:
        out["set p, members only / non-members only"] = [f"{a:.1g} / {b:.2g}" for a, b in
                                                         zip(table["set_p_members_only"], table["set_p_non_members_only"])]
    if "empirical_null_FPR@p<=0.05" in table:
        out["no reference: FPR@p<=0.05"] = table["empirical_null_FPR@p<=0.05"].map("{:.3f}".format)
        out["no reference: members called (q<=0.05)"] = table["empirical_null_TPR@q<=0.05"].map("{:.2f}".format)
    out["extraction AUC"] = _with_interval(table, "AUC")
    out["extraction TPR@1%FPR"] = _with_interval(table, "TPR@1%FPR")
    out["loss-under-θ' AUC"] = _with_interval(table, "loss: AUC")
    out["loss-under-θ' TPR@1%FPR"] = _with_interval(table, "loss: TPR@1%FPR")
    return out


def variant_figures(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell and score: AUC, TPR at 1 % and 0.1 % FPR (every variant and single-model baseline)."""
    names = [c[:-len(": AUC")] for c in table.columns if c.endswith(": AUC")]
    rows = [{"audit": r["audit"], "ft": r["ft"], "score": name, "AUC": r[f"{name}: AUC"],
             "TPR@1%FPR": r[f"{name}: TPR@1%FPR"], "TPR@0.1%FPR": r[f"{name}: TPR@0.1%FPR"]}
            for _, r in table.iterrows() for name in names]
    return pd.DataFrame(rows)


def choose_variant(table: pd.DataFrame, candidates: tuple[str, ...] = ("gap", "log_ratio", "gap_uncond", "clid_gap"),
                   tie: float = 0.02) -> str:
    """docs/audit.md's rule, stated before the measurement: the highest mean TPR at 1 % FPR over the cells
    given; within ``tie`` of the best, the higher mean AUC; then the order of ``candidates``."""
    present = [c for c in candidates if f"{c}: TPR@1%FPR" in table]
    tpr = {c: float(table[f"{c}: TPR@1%FPR"].mean()) for c in present}
    best = max(tpr.values())
    tied = [c for c in present if tpr[c] >= best - tie]
    auc = {c: float(table[f"{c}: AUC"].mean()) for c in tied}
    return max(tied, key=lambda c: (auc[c], -present.index(c)))


def write_audit_summary(measurement_files: list[str], out_csv: Path, out_md: Path) -> pd.DataFrame:
    """One row per (audit, fine-tuning method) with its counts and, where labels exist, its figures."""
    table = pd.concat([pd.read_csv(f) for f in measurement_files], ignore_index=True)
    save_csv(out_csv, table)
    columns = [c for c in ("audit", "ft", "candidates", "members", "non_members", "called_q<=0.05", "set_p",
                           "membership_AUC", "membership_TPR@1%FPR", "membership_FPR@p<=0.05", "called_p<=0.05",
                           "AUC", "TPR@1%FPR", "TPR@p<=0.05", "FPR@p<=0.05") if c in table]
    shown = table[columns].copy()
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = "\n".join("| " + " | ".join(_fmt(v) for v in row) + " |" for row in shown.itertuples(index=False))
    text = f"# Audit summary\n\n{header}\n{body}\n\n{NOT_PROOF}\n"
    if "membership_AUC" in table:
        text += ("\n## Membership test, with 95 % bootstrap intervals\n\n"
                 + membership_figures(table).to_markdown(index=False) + "\n")
        variants = variant_figures(table)
        if len(variants):
            text += ("\n## Every score\n\n" + variants.to_markdown(index=False, floatfmt=".3f")
                     + f"\n\nThe variant rule of docs/audit.md applied to these cells: **{choose_variant(table)}**.\n")
    save_text(out_md, text)
    return table


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.3f}"
    return str(value)
