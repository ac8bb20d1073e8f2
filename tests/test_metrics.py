"""AS and A-ESR against values worked out by hand on 2-D unit vectors."""
import numpy as np
import pytest

from finextract.attack.metrics import (average_similarity, best_match, extraction_success_rate, score_extraction,
                                similarity_matrix)


def unit(*angles_deg):
    a = np.radians(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], axis=1)


# Two private images at 0 and 90 degrees.
PRIVATE = np.array([[1.0, 0.0], [0.0, 1.0]])
# Extracted: (0.6, 0.8) scores exactly 0.6 against the first private image and 0.8 against the second;
# (1, 0) is an exact copy of the first.
EXTRACTED = np.array([[0.6, 0.8], [1.0, 0.0]])


def test_similarity_and_best_match():
    sims = similarity_matrix(PRIVATE, EXTRACTED)
    assert np.allclose(sims, [[0.6, 1.0], [0.8, 0.0]])
    best, index = best_match(PRIVATE, EXTRACTED)
    assert np.allclose(best, [1.0, 0.8]) and index.tolist() == [1, 0]


def test_average_similarity_is_mean_of_best_matches():
    assert average_similarity(PRIVATE, EXTRACTED) == pytest.approx((1.0 + 0.8) / 2)
    assert average_similarity(PRIVATE, EXTRACTED[:1]) == pytest.approx((0.6 + 0.8) / 2)


def test_a_esr_is_strictly_above_tau():
    only_first = EXTRACTED[:1]  # best matches exactly 0.6 and 0.8
    assert extraction_success_rate(PRIVATE, only_first, 0.6) == pytest.approx(0.5)  # 0.6 is not > 0.6
    assert extraction_success_rate(PRIVATE, only_first, 0.59) == pytest.approx(1.0)
    assert extraction_success_rate(PRIVATE, only_first, 0.8) == pytest.approx(0.0)


def test_score_extraction_with_upper_bound():
    generated = np.concatenate([EXTRACTED[:1], unit(80.0), unit(10.0)])
    scores = score_extraction(PRIVATE, generated[:1], generated=generated)
    assert set(scores) == {"AS", "A-ESR@0.6", "A-ESR@0.7", "upper_AS", "upper_A-ESR@0.6", "upper_A-ESR@0.7",
                           "n_extracted"}
    assert scores["AS"] == pytest.approx(0.7)
    assert scores["A-ESR@0.6"] == pytest.approx(0.5) and scores["A-ESR@0.7"] == pytest.approx(0.5)
    cos10 = np.cos(np.radians(10.0))  # both private images have a generated image 10 degrees away
    assert scores["upper_AS"] == pytest.approx(cos10)
    assert scores["upper_A-ESR@0.6"] == 1.0 and scores["upper_A-ESR@0.7"] == 1.0
    assert scores["n_extracted"] == 1


def test_score_extraction_without_generated_has_no_upper_bound():
    scores = score_extraction(PRIVATE, EXTRACTED, taus=(0.9,))
    assert set(scores) == {"AS", "A-ESR@0.9", "n_extracted"}
    assert scores["A-ESR@0.9"] == pytest.approx(0.5)


def test_bad_descriptors_are_rejected():
    with pytest.raises(ValueError, match="L2-normalised; row 1"):
        average_similarity(PRIVATE, np.array([[1.0, 0.0], [3.0, 4.0]]))
    with pytest.raises(ValueError, match="dimensions differ"):
        average_similarity(PRIVATE, np.array([[1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="non-empty"):
        average_similarity(PRIVATE, np.zeros((0, 2)))
    with pytest.raises(ValueError, match="NaN"):
        average_similarity(PRIVATE, np.array([[np.nan, 1.0]]))
