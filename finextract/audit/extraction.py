"""Membership audit: which candidate images were used to fine-tune a suspect checkpoint, and how sure.

A candidate's *score* is its best similarity (the workflow's calibrated SSCD cosine) to any of the
suspect's N generated images. Its *p-value* asks how often a model that never saw it does as well:
the never-fine-tuned base is sampled with the same caption, the same method and the same N, in K
independent draws, and every candidate's best similarity to each draw is one value of the null
(K × M values for M candidates, pooled, so candidates are exchangeable under the null):

    p = (1 + #{null values ≥ score}) / (1 + K·M)

With several sampling methods, each gets its own p and the candidate's answer is the smallest one
times the number of methods (Bonferroni); ``q`` is the Benjamini–Hochberg adjustment over the
candidates. The null is a base that learned *nothing* from the suspect's training set; a suspect
that learned the style of a set also lifts same-style images it never saw, which this null does
not model (docs/audit.md measures how much). A high p-value is not proof of non-use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from finextract.private_set import IMAGE_SUFFIXES, load_image
from finextract.attack.metrics import best_match, pixel_l2_pairs
from finextract.audit.pvalues import benjamini_hochberg, bonferroni_min, empirical_p
from finextract.audit.roc import roc_auc

LABELS_FILE = "labels.csv"
NOT_PROOF = ("A high p-value is not proof of non-use: the suspect may have seen a candidate and not "
             "memorised it, or memorised it in a way these samples do not show.")


class AuditInputError(ValueError):
    """The candidates cannot be audited; the message names the file and what was expected."""


def candidate_files(folder: str | Path) -> list[Path]:
    """The images of a candidate folder (``folder/images/`` if it has one, else ``folder`` itself)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AuditInputError(f"candidate folder {folder} does not exist")
    images = folder / "images" if (folder / "images").is_dir() else folder
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise AuditInputError(f"{images}: no candidate images ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def check_candidate_sizes(files: list[Path]) -> tuple[int, int]:
    """All candidates one size: a mixed folder is usually a mixed-up folder (thumbnails beside
    originals), and resizing them differently would make their scores incomparable."""
    from PIL import Image, UnidentifiedImageError

    sizes: dict[tuple[int, int], list[str]] = {}
    for path in files:
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, []).append(path.name)
        except (UnidentifiedImageError, OSError) as error:
            raise AuditInputError(f"{path}: not a readable image ({error})") from None
    if len(sizes) > 1:
        listing = "; ".join(f"{w}x{h}: {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
                            for (w, h), names in sorted(sizes.items()))
        raise AuditInputError(f"{files[0].parent}: candidates of mixed sizes ({listing}); expected one size "
                              "(resize them the same way first)")
    return next(iter(sizes))


def load_candidates(folder: str | Path, resolution: int) -> tuple[list[Path], np.ndarray]:
    """Candidate files and images, prepared as the workflow prepares private images."""
    files = candidate_files(folder)
    check_candidate_sizes(files)
    return files, np.stack([load_image(p, resolution) for p in files])


MIN_REFERENCE = 19  # known non-members: with R of them the smallest p is 1 / (R + 1), 0.05 at R = 19


def check_reference(folder: str | Path, candidates: list[Path]) -> list[Path]:
    """The membership test's reference folder: readable images of the candidates' size, at least
    :data:`MIN_REFERENCE` of them, none a byte copy of a candidate (a candidate cannot be its own null)."""
    import hashlib

    files = candidate_files(folder)
    if len(files) < MIN_REFERENCE:
        raise AuditInputError(f"reference folder {folder}: {len(files)} image(s); at least {MIN_REFERENCE} known "
                              f"non-members are needed (with R of them the smallest p-value is 1/(R+1))")
    size, theirs = check_candidate_sizes(files), check_candidate_sizes(candidates)
    if size != theirs:
        raise AuditInputError(f"reference folder {folder}: images are {size[0]}x{size[1]}, the candidates "
                              f"{theirs[0]}x{theirs[1]}; prepare the reference exactly like the candidates")

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    candidate_digests = {digest(p): p.name for p in candidates}
    shared = [f"{p.name} = candidate {candidate_digests[d]}" for p in files if (d := digest(p)) in candidate_digests]
    if shared:
        raise AuditInputError(f"reference folder {folder}: {len(shared)} image(s) also among the candidates "
                              f"({'; '.join(shared[:3])}); a known non-member cannot be a candidate")
    return files


def read_labels(folder: str | Path, files: list[Path]) -> np.ndarray | None:
    """Known membership (``labels.csv``: file, member 1/0), for measuring the audit; None if absent."""
    path = Path(folder) / LABELS_FILE
    if not path.exists():
        return None
    table = pd.read_csv(path)
    if not {"file", "member"} <= set(table.columns):
        raise AuditInputError(f"{path}: expected columns file, member; got {', '.join(table.columns)}")
    member = dict(zip(table["file"].astype(str), table["member"]))
    missing = [p.name for p in files if p.name not in member]
    if missing:
        raise AuditInputError(f"{path}: no label for {', '.join(missing[:5])}")
    values = np.array([member[p.name] for p in files])
    if not np.isin(values, (0, 1)).all():
        raise AuditInputError(f"{path}: member must be 1 or 0")
    return values.astype(int)


def draw_of(files: list[str], n_per_draw: int, seed_offset: int = 0) -> np.ndarray:
    """Which control draw each image belongs to, from its seed (``seed_XXXXXX.png``)."""
    seeds = np.array([int(Path(f).stem.split("_")[-1]) for f in files])
    return (seeds - seed_offset) // n_per_draw


def control_null(candidates: np.ndarray, control: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(K, M): each candidate's best similarity to each control draw."""
    return np.stack([best_match(candidates, control[draws == d])[0] for d in np.unique(draws)])


@dataclass
class MethodEvidence:
    """One sampling method's evidence: the suspect's samples and the control's draws, as descriptors."""

    method: str
    generated: np.ndarray
    generated_files: list[str]
    control: np.ndarray
    control_draws: np.ndarray


def audit_table(candidate_files_: list[Path], candidates: np.ndarray, candidate_pixels: np.ndarray,
                evidence: list[MethodEvidence], read_image, members: np.ndarray | None = None) -> pd.DataFrame:
    """One row per candidate, ranked by p: per method the best generated image, its similarity,
    its pixel ℓ2 to the candidate and p; then the combined p, q and the rank (and the known
    membership, when measuring)."""
    table = pd.DataFrame({"candidate": [str(p) for p in candidate_files_]})
    if members is not None:
        table["member"] = members
    p_values = {}
    for ev in evidence:
        score, index = best_match(candidates, ev.generated)
        null = control_null(candidates, ev.control, ev.control_draws)
        best = [ev.generated_files[i] for i in index]
        pixels = np.stack([read_image(f) for f in best])
        table[f"best_{ev.method}"] = best
        table[f"similarity_{ev.method}"] = score
        table[f"control_{ev.method}"] = null.max(axis=0)  # the candidate's best over all control draws
        table[f"l2_{ev.method}"] = pixel_l2_pairs(candidate_pixels, pixels)
        table[f"p_{ev.method}"] = p_values[ev.method] = empirical_p(score, null)
    table["p"] = bonferroni_min(p_values)
    table["q"] = benjamini_hochberg(table["p"].to_numpy())
    best_method = np.array([e.method for e in evidence])[np.stack(list(p_values.values())).argmin(axis=0)]
    table["best_method"] = best_method
    lead = table[[f"similarity_{e.method}" for e in evidence]].max(axis=1)
    table = table.assign(_lead=lead).sort_values(["p", "_lead"], ascending=[True, False]).drop(columns="_lead")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def measure(table: pd.DataFrame, alpha: float = 0.05) -> dict[str, float]:
    """How well the extraction evidence separates known members (the table's ``member`` column) from
    non-members: AUC and TPR at 1 % and 0.1 % FPR of −log p (ties broken by similarity), with bootstrap
    intervals (``_lo``, ``_hi``), the share of each called used at p ≤ alpha, and per method the AUC of
    the similarity alone and of its margin over the control."""
    from finextract.audit.membership.evaluate import bootstrap_roc

    members = table["member"].to_numpy()
    methods = [c[len("similarity_"):] for c in table.columns if c.startswith("similarity_")]
    lead = table[[f"similarity_{m}" for m in methods]].max(axis=1).to_numpy()
    score = -np.log(table["p"].to_numpy()) + 1e-6 * lead  # lead only breaks ties of p
    row = {"members": int(members.sum()), "non_members": int((members == 0).sum()),
           **bootstrap_roc(score, members),
           f"TPR@p<={alpha:g}": float((table["p"].to_numpy()[members == 1] <= alpha).mean()),
           f"FPR@p<={alpha:g}": float((table["p"].to_numpy()[members == 0] <= alpha).mean())}
    for m in methods:
        row[f"AUC_{m}"] = roc_auc(table[f"similarity_{m}"].to_numpy(), members)
        margin = table[f"similarity_{m}"].to_numpy() - table[f"control_{m}"].to_numpy()
        row[f"AUC_margin_{m}"] = roc_auc(margin, members)
    return row


def merge_membership(table: pd.DataFrame, membership: pd.DataFrame) -> pd.DataFrame:
    """The extraction table with the membership test's score, p and q beside it (candidates matched by
    file name), ranked by the membership p (ties: the higher score first); the extraction's combined p
    and q become ``extraction_p`` and ``extraction_q``."""
    candidates = membership[membership["role"] == "candidate"]
    by_name = {Path(f).name: row for f, row in zip(candidates["file"], candidates.itertuples(index=False))}
    names = [Path(c).name for c in table["candidate"]]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise AuditInputError(f"membership table lacks candidates {', '.join(missing[:3])}")
    merged = table.drop(columns="rank").rename(columns={"p": "extraction_p", "q": "extraction_q"})
    position = 2 if "member" in merged else 1
    for offset, column in enumerate(("membership", "membership_p", "membership_q")):
        merged.insert(position + offset, column, [getattr(by_name[n], column) for n in names])
    merged = merged.sort_values(["membership_p", "membership"], ascending=[True, False], kind="mergesort")
    merged.insert(0, "rank", range(1, len(merged) + 1))
    return merged.reset_index(drop=True)


def measure_membership(membership: pd.DataFrame, alpha: float = 0.05) -> dict[str, float]:
    """The membership test on labelled candidates: the chosen score's AUC and TPR at 1 % / 0.1 % FPR
    with bootstrap intervals (``membership_`` prefix), the shares called used at p ≤ alpha and q ≤ alpha,
    and the same ROC figures for every computed score variant and single-model baseline (``<score>:``
    prefix), all over the candidate folder's members and non-members."""
    from finextract.audit.membership.evaluate import bootstrap_roc

    candidates = membership[membership["role"] == "candidate"]
    labels = candidates["member"].to_numpy()
    p, q = candidates["membership_p"].to_numpy(), candidates["membership_q"].to_numpy()
    row = {f"membership_{k}": v for k, v in bootstrap_roc(candidates["membership"].to_numpy(), labels).items()}
    row.update({f"membership_TPR@p<={alpha:g}": float((p[labels == 1] <= alpha).mean()),
                f"membership_FPR@p<={alpha:g}": float((p[labels == 0] <= alpha).mean()),
                f"membership_TPR@q<={alpha:g}": float((q[labels == 1] <= alpha).mean()),
                f"membership_FPR@q<={alpha:g}": float((q[labels == 0] <= alpha).mean())})
    if (membership["role"] != "candidate").any():  # what the same candidates would get without the reference
        from finextract.audit.membership.calibrate import calibrate, set_test_against_reference

        reference = membership.loc[membership["role"] != "candidate", "membership"].to_numpy()
        scores = candidates["membership"].to_numpy()
        # the set-level test on a folder of the members alone (all used) and of the non-members alone (none)
        row["set_p_members_only"] = set_test_against_reference(scores[labels == 1], reference).p
        row["set_p_non_members_only"] = set_test_against_reference(scores[labels == 0], reference).p

        alone = calibrate(candidates["membership"].to_numpy())
        row.update({f"empirical_null_TPR@p<={alpha:g}": float((alone.p[labels == 1] <= alpha).mean()),
                    f"empirical_null_FPR@p<={alpha:g}": float((alone.p[labels == 0] <= alpha).mean()),
                    f"empirical_null_TPR@q<={alpha:g}": float((alone.q[labels == 1] <= alpha).mean()),
                    f"empirical_null_FPR@q<={alpha:g}": float((alone.q[labels == 0] <= alpha).mean())})
    for column in (c for c in candidates.columns if c.startswith("score_")):
        figures = bootstrap_roc(candidates[column].to_numpy(), labels)
        row.update({f"{column[len('score_'):]}: {k}": v for k, v in figures.items()})
    return row
