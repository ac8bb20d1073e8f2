"""The pixel-space ℓ2 criterion (Carlini et al. 2023) and Table 1 with it, on values worked out by hand."""
import numpy as np
import pandas as pd
import pytest

from finextract.attack.metrics import pixel_l2_matrix, pixel_l2_pairs, score_l2
from finextract.reporting.summary import metric_disagreements, score_columns, table1, table1_markdown


def solid(value, n=1, size=2):
    return np.full((n, size, size, 3), value, np.uint8)


def test_l2_is_rms_pixel_difference_in_unit_range():
    black, white = solid(0), solid(255)
    assert pixel_l2_pairs(black, white)[0] == pytest.approx(1.0)
    assert pixel_l2_pairs(black, black)[0] == 0.0
    half = np.zeros((1, 2, 2, 3), np.uint8)
    half[0, 0] = 255  # half of the pixels differ by 1.0: sqrt(0.5)
    assert pixel_l2_pairs(half, black)[0] == pytest.approx(np.sqrt(0.5))


def test_l2_matrix_matches_pairs_and_is_never_negative():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    matrix = pixel_l2_matrix(a, b)
    assert matrix.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert matrix[i, j] == pytest.approx(pixel_l2_pairs(a[i:i + 1], b[j:j + 1])[0], abs=1e-9)
    assert pixel_l2_matrix(a, a).diagonal() == pytest.approx(np.zeros(4), abs=1e-6)


def test_score_l2_counts_private_images_closer_than_delta():
    private = np.concatenate([solid(0), solid(200)])
    extracted = np.concatenate([solid(10), solid(100)])  # 10/255 = 0.039 from the first; 100/255 from the second
    scores = score_l2(private, extracted, delta=0.1)
    assert scores["L2"] == pytest.approx((10 / 255 + 100 / 255) / 2)
    assert scores["L2-ESR"] == pytest.approx(0.5)
    generated = np.concatenate([extracted, solid(199)])
    scores = score_l2(private, extracted, delta=0.1, generated=generated)
    assert scores["upper_L2-ESR"] == 1.0 and scores["upper_L2"] == pytest.approx((10 / 255 + 1 / 255) / 2)


def test_bad_l2_input_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        pixel_l2_pairs(solid(0).astype(np.float32), solid(0))
    with pytest.raises(ValueError, match="differ"):
        pixel_l2_pairs(solid(0, size=2), solid(0, size=3))
    with pytest.raises(ValueError, match="delta"):
        score_l2(solid(0), solid(0), delta=float("nan"))


def metrics_rows(taus):
    rows = []
    for ft, method in (("dreambooth", "direct"), ("dreambooth", "finextract"), ("none", "direct")):
        row = {"set": "s", "ft": ft, "method": method, "AS": 0.5, "upper_AS": 0.6, "L2": 0.2, "L2-ESR": 0.5,
               "l2_delta": 0.1}
        row.update({f"A-ESR@{t:g}": 0.25 for t in taus})
        rows.append(row)
    return pd.DataFrame(rows)


def test_table1_follows_the_configured_taus_and_shows_l2():
    metrics = metrics_rows([0.5, 0.8])
    assert score_columns(metrics) == ["AS", "A-ESR@0.8", "A-ESR@0.5", "L2", "L2-ESR"]
    table = table1(metrics)
    assert "DreamBooth A-ESR@0.8" in table and "DreamBooth L2-ESR" in table
    markdown = table1_markdown(table, metrics)
    assert "A-ESR 0.8" in markdown and "ℓ2-ESR δ 0.1" in markdown and "A-ESR 0.7" not in markdown


def test_disagreements_between_sscd_and_l2_are_listed(tmp_path):
    metrics = metrics_rows([0.6])
    files = []
    for i, (_, row) in enumerate(metrics.iterrows()):
        f = tmp_path / f"m{i}.csv"
        row.to_frame().T.to_csv(f, index=False)
        files.append(str(f))
        # private a: both metrics agree it is extracted; b: only SSCD; c: only l2
        pd.DataFrame({"private": ["a.png", "b.png", "c.png"], "similarity": [0.9, 0.7, 0.3],
                      "l2": [0.05, 0.3, 0.05]}).to_csv(f.with_suffix(".matches.csv"), index=False)
    notes = metric_disagreements(files, metrics)
    assert len(notes) == 3
    assert "SSCD > 0.6 only: b.png" in notes[0] and "ℓ2 < 0.1 only: c.png" in notes[0]
    assert "a.png" not in notes[0]
    assert notes[0].startswith("s DreamBooth Direct")


def test_leak_summary_names_the_best_attack_and_the_control():
    from finextract.reporting.summary import leak_summary

    metrics = metrics_rows([0.6, 0.7])
    metrics.loc[1, "A-ESR@0.6"] = 0.9  # FineXtract extracts more
    metrics.loc[2, ["A-ESR@0.6", "A-ESR@0.7"]] = 0.0
    (sentence,) = leak_summary(metrics)
    assert "FineXtract" in sentence and "90% at τ = 0.6" in sentence and "25% at τ = 0.7" in sentence
    assert "never-fine-tuned model with the same caption: 0% and 0%" in sentence
