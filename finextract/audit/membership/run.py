"""The membership stage of the audit: θ and θ' loaded once, every candidate and reference image scored.

Writes ``membership.csv`` (one row per candidate, then per reference image: every score variant, the
chosen score, and for candidates p and q), ``losses.npy`` (the raw losses, [images, θ/θ', caption/∅,
K, M], so another variant can be computed without the models) and ``membership.json`` (settings, the
null used, the set-level answer, notes, cost).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from finextract.audit.extraction import check_candidate_sizes, check_reference, candidate_files, read_labels
from finextract.io import save_csv, save_json, save_npy
from finextract.audit.membership.calibrate import calibrate
from finextract.audit.membership.score import PAIRED_VARIANTS, LossGrid, images_to_latents, paired_losses, score_variants

CANDIDATE, REFERENCE_ROLE = "candidate", "reference"


def tiny_caption_note(base: str, caption: str) -> str | None:
    """The tiny world's text encoder sees 16 tokens: say so, before any model loads, when the caption is longer."""
    if not (Path(base) / "finextract.json").is_file():
        return None
    from tokenizers import Tokenizer

    from finextract.backbones.text_encoder import MAX_TOKENS, minilm_path

    tokenizer = Tokenizer.from_file(str(Path(minilm_path()) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ids = tokenizer.encode(caption).ids
    if len(ids) <= MAX_TOKENS:
        return None
    return (f"the caption has {len(ids)} tokens; the text encoder sees the first {MAX_TOKENS}: "
            f"{tokenizer.decode(ids[:MAX_TOKENS])!r}, as fine-tuning did")


def backbone_caption_note(backbone, caption: str) -> str | None:
    """The same for a Stable Diffusion backbone's tokenizers (which live in the checkpoint)."""
    for tokenizer in getattr(backbone, "tokenizers", []):
        n = len(tokenizer(caption).input_ids)
        if n > tokenizer.model_max_length:
            return (f"the caption has {n} tokens; the text encoder sees the first {tokenizer.model_max_length}, "
                    "as fine-tuning with it did")
    return None


def membership_inputs(candidates_folder: str, reference_folder: str | None) -> tuple[list[Path], list[Path]]:
    """Candidate and reference files, checked (AuditInputError) before any model is loaded."""
    files = candidate_files(candidates_folder)
    check_candidate_sizes(files)
    reference = check_reference(reference_folder, files) if reference_folder else []
    return files, reference


def membership_table(files: list[Path], reference: list[Path], scores: dict[str, np.ndarray], chosen: str,
                     members: np.ndarray | None):
    """The rows of membership.csv and the calibration of the chosen score."""
    n = len(files)
    table = pd.DataFrame({"role": [CANDIDATE] * n + [REFERENCE_ROLE] * len(reference),
                          "file": [str(p) for p in [*files, *reference]]})
    table["member"] = np.r_[members if members is not None else np.full(n, -1), np.zeros(len(reference), int)]
    for name, values in scores.items():
        table[f"score_{name}"] = values
    return answer_with(table, chosen)


def answer_with(table: pd.DataFrame, score: str):
    """membership.csv's answer columns (``membership``, ``membership_p``, ``membership_q``) for ``score``,
    from its ``score_<score>`` column: the score choice needs no model, so the audit can change it
    without scoring anything again. Returns the table and the calibration."""
    column = f"score_{score}"
    if column not in table:
        raise ValueError(f"membership table has no {column} (scores: "
                         f"{', '.join(c[6:] for c in table.columns if c.startswith('score_'))})")
    is_candidate = (table["role"] == CANDIDATE).to_numpy()
    values = table[column].to_numpy()
    calibrated = calibrate(values[is_candidate], values[~is_candidate] if (~is_candidate).any() else None)
    table = table.drop(columns=[c for c in ("membership", "membership_p", "membership_q") if c in table])
    p, q = np.full(len(table), np.nan), np.full(len(table), np.nan)
    p[is_candidate], q[is_candidate] = calibrated.p, calibrated.q
    table.insert(3, "membership", values)
    table.insert(4, "membership_p", p)
    table.insert(5, "membership_q", q)
    return table, calibrated


def run_membership(base: str, ft_method: str, ft_dir: str, caption: str, candidates_folder: str,
                   reference_folder: str | None, grid: LossGrid, score: str, out_dir: Path, batch_rows: int = 256,
                   threads: int = 1, ft_options: dict | None = None, **load_options) -> None:
    import torch

    from finextract.private_set import load_image
    from finextract.attack.load_models import load_base, load_pair

    if score not in PAIRED_VARIANTS:
        raise ValueError(f"score must be one of {PAIRED_VARIANTS}, not {score!r}")
    files, reference = membership_inputs(candidates_folder, reference_folder)
    members = read_labels(candidates_folder, files)
    notes = [n for n in [tiny_caption_note(base, caption)] if n]
    torch.set_num_threads(threads)
    start = time.perf_counter()
    backbone = load_base(base, **load_options)
    pair = load_pair(backbone, ft_method, ft_dir, **(ft_options or {}))
    notes += [n for n in [backbone_caption_note(backbone, caption)] if n and not notes]
    for note in notes:
        print(f"note: {note}", flush=True)
    loaded = time.perf_counter()
    images = np.stack([load_image(p, backbone.resolution) for p in [*files, *reference]])
    latents = images_to_latents(backbone, images)
    losses = paired_losses(pair, latents, caption, grid, batch_rows,
                           progress=lambda k, K: print(f"timestep {k}/{K}", flush=True))
    scored = time.perf_counter()
    table, calibrated = membership_table(files, reference, score_variants(losses), score, members)
    out_dir = Path(out_dir)
    save_npy(out_dir / "losses.npy", losses)
    save_csv(out_dir / "membership.csv", table)
    set_test = calibrated.set_test
    save_json(out_dir / "membership.json", {
        "score": score, "timesteps": grid.timesteps, "draws": grid.draws, "seed": grid.seed,
        "caption": caption, "ft": ft_method, "prediction_type": backbone.prediction_type,
        "candidates": len(files), "reference": len(reference), "null": calibrated.null,
        "null_centre": calibrated.centre, "null_spread": calibrated.spread,
        "set_test": set_test.test, "set_p": set_test.p, "set_statistic": set_test.statistic,
        "set_meaning": set_test.meaning, "notes": notes,
        "seconds_load": round(loaded - start, 2), "seconds_scoring": round(scored - loaded, 2),
        "seconds_per_image": round((scored - loaded) / len(images), 4),
        "unet_rows_per_image": 2 * losses.shape[2] * grid.timesteps * grid.draws,
        "device": str(backbone.device), "threads": threads})
    print(f"membership {ft_method}: {len(files)} candidates, {len(reference)} reference; "
          f"{int((calibrated.q <= 0.05).sum())} at q <= 0.05; set-level p {set_test.p:.3g} ({set_test.test}); "
          f"{(scored - loaded) / len(images):.3f} s per image", flush=True)
