"""The workflow's similarity on committed *generated* copies and non-copies (resources/copyset/).

The pairs are picked by a fixed rule, not by score: for each source kind, the first reference image of
the reporting split; its copy is the first FineXtract sample of the model fine-tuned on it alone, its
non-copies are that sample against the next image of the same kind, a never-fine-tuned sample with its
caption, and (Wesnoth) another animation frame of the same unit.
"""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from finextract.workflow.score_pairs import compare_pairs, instrument_from_config, read_pairs_csv

REPO = Path(__file__).resolve().parent.parent
COPYSET = REPO / "resources" / "copyset"


def fixed_pairs(with_frames=False):
    manifest = pd.read_csv(COPYSET / "manifest.csv")
    report = manifest[manifest["split"] == "report"]
    copies, non_copies, frame_pairs = [], [], []
    for source, rows in report.groupby("source", sort=True):
        keys = rows["key"].drop_duplicates().tolist()
        first, other = keys[0], keys[1]
        path = lambda key, model, method="direct": str(COPYSET / rows[(rows["key"] == key) & (rows["model"] == model)
                                                                   & (rows["method"] == method)]["file"].iloc[0])
        reference = path(first, "source", "source")
        sample = path(first, "finetuned", "finextract")
        copies.append((reference, sample))
        non_copies.append((path(other, "source", "source"), sample))
        non_copies.append((reference, path(first, "base")))
        frames = rows[(rows["key"] == first) & (rows["model"] == "frame")]
        if len(frames):
            frame_pairs.append((str(COPYSET / frames["file"].iloc[0]), sample))
    return (copies, non_copies, frame_pairs) if with_frames else (copies, non_copies)


@pytest.fixture(scope="module")
def instrument():
    return instrument_from_config(REPO / "config" / "config.yaml")


def test_default_similarity_scores_generated_copies_as_copies(instrument):
    copies, non_copies = fixed_pairs()
    assert len(copies) == 3 and len(non_copies) == 6
    scores = compare_pairs(copies + non_copies, instrument)
    copy_scores = scores["similarity"][:len(copies)]
    other_scores = scores["similarity"][len(copies):]
    low_tau = min(instrument.taus)
    assert (copy_scores > low_tau).all(), scores
    assert (other_scores < low_tau).all(), scores
    assert (scores["l2"][:len(copies)] < instrument.l2_delta).all(), scores
    assert (scores["l2"][len(copies):] >= instrument.l2_delta).all(), scores


@pytest.mark.xfail(strict=True, reason="known limitation (docs/similarity-validation.md): another animation "
                   "frame of the same Wesnoth unit scores like a copy under the blurred instrument")
def test_another_frame_of_the_same_unit_is_not_a_copy(instrument):
    _, _, frame_pairs = fixed_pairs(with_frames=True)
    assert len(frame_pairs) == 1
    scores = compare_pairs(frame_pairs, instrument)
    assert (scores["similarity"] < min(instrument.taus)).all(), scores


def test_similarity_cli_prints_what_the_workflow_computes(tmp_path, instrument):
    copies, non_copies = fixed_pairs()
    pairs = [copies[0], non_copies[0]]
    table = tmp_path / "pairs.csv"
    pd.DataFrame({"a": [a for a, _ in pairs], "b": [b for _, b in pairs]}).to_csv(table, index=False)
    run = subprocess.run([sys.executable, "-m", "finextract", "similarity", "--pairs", str(table), "--json"],
                         capture_output=True, text=True, cwd=REPO, check=True)
    rows = json.loads(run.stdout)
    assert [set(r) for r in rows] == [{"a", "b", "similarity", "l2"}] * 2
    expected = compare_pairs(read_pairs_csv(table), instrument)
    assert [r["similarity"] for r in rows] == pytest.approx(expected["similarity"].tolist(), abs=1e-6)
    two = subprocess.run([sys.executable, "-m", "finextract", "similarity", *copies[0]],
                         capture_output=True, text=True, cwd=REPO, check=True)
    assert "similarity" in two.stdout and "l2" in two.stdout
    bad = subprocess.run([sys.executable, "-m", "finextract", "similarity", copies[0][0], "nope.png"],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "nope.png" in bad.stderr
