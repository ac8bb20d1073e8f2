"""From membership scores to answers: a p-value per candidate, BH q-values, and one for the whole set.

Two nulls, chosen by what the user has:

- **reference** (known non-members, e.g. images made after the checkpoint was published, prepared
  like the candidates and scored against the same suspect): p = (1 + #{reference ≥ s}) / (1 + R).
  Exact when an unused candidate is exchangeable with the reference images (drawn from the same
  distribution): then P(p ≤ α) ≤ α for every α, whatever the score's distribution. These p-values are
  positively dependent (they share the reference), in the way under which Benjamini–Hochberg still
  controls the false-discovery rate (Bates et al. 2023, conformal p-values are PRDS). The set-level
  test is a one-sided Mann–Whitney U: are the candidates' scores stochastically larger than the
  reference's? Exact under the same exchangeability.
- **empirical null** (no reference): the unused candidates' scores are taken to be normal, with a
  centre and spread estimated robustly from the candidates themselves (median and 1.4826 × MAD,
  which ignore the upper tail where used ones sit). Assumes most candidates (more than half) were not
  used and that unused ones do not have a heavier upper tail than a normal. If most *were* used, the
  median sits among them and the test loses power rather than calling unused images used. The
  set-level answer is Simes' test (the smallest BH q): "some candidates stand out from the rest"; it
  cannot detect a folder used as a whole, for which a reference is needed.

A high p-value is not proof of non-use: a used image that the fine-tuning barely fitted scores like
an unused one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from finextract.audit.pvalues import benjamini_hochberg, empirical_p

REFERENCE = "reference"
EMPIRICAL_NULL = "empirical-null"
MAD_TO_SD = 1.4826  # MAD of a normal distribution × this = its standard deviation


def reference_p(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(1 + #{reference scores ≥ s}) / (1 + R): the conformal p-value, never 0."""
    return empirical_p(scores, reference)


def empirical_null_p(scores: np.ndarray) -> tuple[np.ndarray, float, float]:
    """One-sided normal p-values around a robust centre and spread of ``scores`` themselves;
    returns (p, centre, spread)."""
    scores = np.asarray(scores, dtype=np.float64)
    centre = float(np.median(scores))
    spread = float(MAD_TO_SD * np.median(np.abs(scores - centre)))
    if not spread > 0:
        spread = float(np.std(scores)) or 1.0  # all (or over half) tied: no spread to estimate from the MAD
    return stats.norm.sf((scores - centre) / spread), centre, spread


@dataclass(frozen=True)
class SetTest:
    """The answer for the candidate folder as a whole."""

    test: str
    p: float
    statistic: float
    meaning: str


def set_test_against_reference(scores: np.ndarray, reference: np.ndarray) -> SetTest:
    """One-sided Mann–Whitney U of the candidates against the reference; the statistic is the AUC
    (P(candidate > reference), ties half), 0.5 when the folder looks like the reference."""
    result = stats.mannwhitneyu(scores, reference, alternative="greater")
    auc = float(result.statistic) / (len(scores) * len(reference))
    return SetTest("Mann-Whitney U, candidates > reference", float(result.pvalue), auc,
                   "small p: the candidates as a group fit the suspect better than known non-members do")


def simes_test(p: np.ndarray) -> SetTest:
    """Simes' global test: min over i of p_(i) · n / i (= the smallest BH q)."""
    q = benjamini_hochberg(p)
    return SetTest("Simes (smallest BH q), empirical null", float(q.min()), float(np.min(p)),
                   "small p: some candidates stand out from the rest of the folder; cannot detect a folder "
                   "used as a whole (supply a reference for that)")


@dataclass(frozen=True)
class Calibrated:
    p: np.ndarray
    q: np.ndarray
    null: str
    set_test: SetTest
    centre: float | None = None
    spread: float | None = None


def calibrate(scores: np.ndarray, reference: np.ndarray | None = None) -> Calibrated:
    """p, q and the set-level test under the reference when given, else under the empirical null."""
    scores = np.asarray(scores, dtype=np.float64)
    if reference is not None:
        p = reference_p(scores, reference)
        return Calibrated(p, benjamini_hochberg(p), REFERENCE, set_test_against_reference(scores, reference))
    p, centre, spread = empirical_null_p(scores)
    return Calibrated(p, benjamini_hochberg(p), EMPIRICAL_NULL, simes_test(p), centre, spread)
