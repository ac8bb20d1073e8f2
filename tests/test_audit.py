"""The membership audit: its p-values, multiple-testing corrections, ranking and input checks."""
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, SCHEMAS, load_test_config
from finextract.audit.extraction import (MIN_REFERENCE, AuditInputError, MethodEvidence, audit_table, check_reference, draw_of,
                              load_candidates, measure, merge_membership, read_labels)
from finextract.workflow.config import ConfigError, validate_config
from finextract.audit.pvalues import benjamini_hochberg, bonferroni_min, empirical_p
from finextract.audit.roc import roc_auc, tpr_at_fpr


def unit_rows(rng, n, dim=16):
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_empirical_p_counts_null_values_at_or_above_the_score():
    null = np.array([[0.1, 0.2], [0.3, 0.4]])  # 4 values
    p = empirical_p(np.array([0.5, 0.3, 0.0]), null)
    assert p == pytest.approx([1 / 5, 3 / 5, 5 / 5])  # (1 + #{≥ s}) / (1 + 4): never 0, ties count
    assert (np.diff(empirical_p(np.linspace(0, 1, 50), null)) <= 0).all()


def test_bonferroni_and_benjamini_hochberg():
    assert bonferroni_min({"a": np.array([0.01, 0.5]), "b": np.array([0.02, 0.9])}) == pytest.approx([0.02, 1.0])
    # BH by hand: sorted p 0.01, 0.02, 0.03, 0.5 -> p*m/rank 0.04, 0.04, 0.04, 0.5, then running minimum from the top
    q = benjamini_hochberg(np.array([0.03, 0.5, 0.01, 0.02]))
    assert q == pytest.approx([0.04, 0.5, 0.04, 0.04])


def test_draw_of_reads_the_seed():
    files = [f"x/shard_000000-000009/seed_{s:06d}.png" for s in (100, 109, 110, 129)]
    assert draw_of(files, 10, seed_offset=100).tolist() == [0, 0, 1, 2]


def test_roc_figures():
    labels = np.array([1, 1, 0, 0, 0])
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2, 0.3]), labels) == 1.0
    assert roc_auc(np.array([0.5] * 5), labels) == 0.5
    assert tpr_at_fpr(np.array([0.9, 0.25, 0.1, 0.2, 0.3]), labels, 0.01) == 0.5  # above the highest negative


def test_a_memorised_candidate_ranks_first_with_the_smallest_p(tmp_path):
    rng = np.random.default_rng(0)
    candidates = unit_rows(rng, 6)
    control = unit_rows(rng, 100)  # 10 draws of 10, unrelated to every candidate
    generated = unit_rows(rng, 10)
    generated[3] = candidates[2]  # the suspect reproduces candidate 2 exactly
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8), "white").save(image)
    files = [tmp_path / f"c{i}.png" for i in range(6)]
    pixels = np.full((6, 8, 8, 3), 255, np.uint8)
    evidence = [MethodEvidence(m, generated, [str(image)] * 10, control, np.repeat(np.arange(10), 10))
                for m in ("direct", "finextract")]
    members = np.array([0, 0, 1, 0, 0, 0])
    table = audit_table(files, candidates, pixels, evidence, lambda f: np.asarray(Image.open(f)), members)
    top = table.iloc[0]
    assert top["candidate"] == str(files[2]) and top["rank"] == 1
    assert top["similarity_direct"] == pytest.approx(1.0)
    assert top["p_direct"] == pytest.approx(1 / (1 + 10 * 6))  # no null value reaches 1
    assert top["p"] == pytest.approx(2 / (1 + 10 * 6))  # Bonferroni over the two methods
    assert top["l2_direct"] == 0.0
    assert (table["p"] >= top["p"]).all() and (table["q"] >= table["p"] - 1e-12).all()
    figures = measure(table)
    assert figures["AUC"] == 1.0 and figures["members"] == 1 and figures["non_members"] == 5
    assert figures["TPR@p<=0.05"] == 1.0


def test_an_unrelated_suspect_gets_uniform_looking_p_values():
    """Under the null (suspect = another draw of the same distribution) p is not small."""
    rng = np.random.default_rng(1)
    candidates = unit_rows(rng, 30)
    generated, control = unit_rows(rng, 20), unit_rows(rng, 100)
    evidence = [MethodEvidence("direct", generated, ["g"] * 20, control, np.repeat(np.arange(5), 20))]
    table = audit_table([f"c{i}" for i in range(30)], candidates, np.zeros((30, 2, 2, 3), np.uint8), evidence,
                        lambda f: np.zeros((2, 2, 3), np.uint8))
    assert (table["p"] <= 0.05).mean() <= 0.2
    assert table["p"].median() > 0.2


def write_images(folder, sizes):
    folder.mkdir(parents=True)
    for i, size in enumerate(sizes):
        Image.new("RGB", size, (i * 40, 100, 200)).save(folder / f"img{i}.png")
    return folder


def test_candidate_folder_errors(tmp_path):
    with pytest.raises(AuditInputError, match="does not exist"):
        load_candidates(tmp_path / "nope", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AuditInputError, match="no candidate images"):
        load_candidates(tmp_path / "empty", 32)
    mixed = write_images(tmp_path / "mixed", [(64, 64), (64, 64), (128, 96)])
    with pytest.raises(AuditInputError, match=r"mixed sizes \(64x64: img0.png, img1.png; 128x96: img2.png\)"):
        load_candidates(mixed, 32)
    files, images = load_candidates(write_images(tmp_path / "ok" / "images", [(64, 64)] * 2).parent, 32)
    assert images.shape == (2, 32, 32, 3) and [f.name for f in files] == ["img0.png", "img1.png"]
    pd.DataFrame({"file": ["img0.png"], "member": [1]}).to_csv(tmp_path / "ok" / "labels.csv", index=False)
    with pytest.raises(AuditInputError, match="no label for img1.png"):
        read_labels(tmp_path / "ok", files)


def audit_config(candidates, **audit):
    config = load_test_config()
    config["audit"] = {"suspects": {"mine": {"target": "wesnoth-drake", "candidates": str(candidates)}}, **audit}
    return config


def test_the_commands_answer_with_the_score_the_workflow_fills_in():
    """Run by hand, `audit` and `membership` answer as `snakemake audit` does when the config names no score."""
    from finextract.workflow.cli import build_parser

    config = audit_config(REPO / "resources" / "audit" / "wesnoth-drake")
    validate_config(config, SCHEMAS)
    score = config["audit"]["membership"]["score"]
    parser = build_parser()
    audit = parser.parse_args(["audit", "--name", "x", "--ft", "lora", "--candidates", "c", "--candidate-embeddings", "e",
                               "--candidate-order", "o", "--methods", "direct", "--generated", "g", "--controls", "c",
                               "--n-per-draw", "1", "--seed-offset", "0", "--base", "b", "--out", "o"])
    membership = parser.parse_args(["membership", "--candidates", "c", "--timesteps", "1", "--draws", "1", "--seed", "0",
                                    "--batch-size", "1", "--threads", "1", "--out", "o", "--ft-method", "lora", "--base", "b",
                                    "--base-kind", "auto", "--precision", "auto", "--device", "auto",
                                    "--ft-dir", "d"])
    assert audit.membership_score == membership.score == score


def test_bad_audit_config_fails_before_any_job(tmp_path):
    good = REPO / "resources" / "audit" / "wesnoth-drake"
    config = audit_config(good)
    validate_config(config, SCHEMAS)
    assert config["audit"]["methods"] == ["direct", "finextract"] and config["audit"]["control_draws"] == 5
    cases = [
        (audit_config(tmp_path / "missing"), r"audit.suspects.mine.candidates: .*missing does not exist"),
        (audit_config(write_images(tmp_path / "mixed", [(64, 64), (32, 32)])), "mixed sizes"),
        ({**audit_config(good), "audit": {"suspects": {"mine": {"target": "nope", "candidates": str(good)}}}},
         "audit.suspects.mine.target: 'nope' is not an attack target"),
        (audit_config(good, methods=["finextract_uncond"]), "audit.methods: finextract_uncond not in sampling.methods"),
        (audit_config(good, control_draws=0), "audit.control_draws: 0 is less than the minimum of 1"),
        (audit_config(good, extra=1), "audit.extra: unknown key"),
        (audit_config(good, membership={"timesteps": 0}), "audit.membership.timesteps: 0 is less than the minimum of 1"),
        (audit_config(good, membership={"draws": -2}), "audit.membership.draws: -2 is less than the minimum of 1"),
        (audit_config(good, membership={"score": "loss"}), "audit.membership.score"),
    ]
    for config, message in cases:
        with pytest.raises(ConfigError, match=message):
            validate_config(config, SCHEMAS)


def test_shipped_candidates_are_labelled_and_prepared_like_the_members():
    for name, members in (("openmoji-style", 10), ("wesnoth-drake", 5)):
        folder = REPO / "resources" / "audit" / name
        files, images = load_candidates(folder, 32)
        labels = read_labels(folder, files)
        assert labels.sum() == members and (labels == 0).sum() >= 100  # a measurement's non-members
        reference = check_reference(REPO / "resources" / "audit" / f"{name}-reference", files)
        assert len(reference) >= 250
        private = sorted((REPO / "resources" / "datasets" / name / "images").glob("*.png"))
        for path in private:  # members are byte copies of the private set
            assert (folder / "images" / path.name).read_bytes() == path.read_bytes()


def test_a_bad_reference_folder_fails_before_any_job(tmp_path):
    good = REPO / "resources" / "audit" / "wesnoth-drake"
    files = load_candidates(good, 32)[0]
    (tmp_path / "empty").mkdir()
    small = write_images(tmp_path / "small", [(64, 64)] * (MIN_REFERENCE - 1))
    wrong = write_images(tmp_path / "wrong", [(72, 72)] * MIN_REFERENCE)
    overlap = tmp_path / "overlap"
    overlap.mkdir()
    for path in sorted((REPO / "resources" / "audit" / "wesnoth-drake-reference" / "images").glob("*.png"))[:20]:
        (overlap / path.name).write_bytes(path.read_bytes())
    (overlap / "copy.png").write_bytes(files[0].read_bytes())
    cases = [(tmp_path / "missing", "does not exist"), (tmp_path / "empty", "no candidate images"),
             (small, f"{MIN_REFERENCE - 1} image\\(s\\); at least {MIN_REFERENCE} known non-members"),
             (wrong, "images are 72x72, the candidates 64x64"),
             (overlap, f"1 image\\(s\\) also among the candidates \\(copy.png = candidate {files[0].name}")]
    for folder, message in cases:
        with pytest.raises(AuditInputError, match=message):
            check_reference(folder, files)
        with pytest.raises(ConfigError, match=f"audit.suspects.mine.reference: .*{message}"):
            config = audit_config(good)
            config["audit"]["suspects"]["mine"]["reference"] = str(folder)
            validate_config(config, SCHEMAS)


def test_the_membership_command_rejects_bad_input_before_loading_a_model(tmp_path):
    import subprocess
    import sys

    common = [sys.executable, "-m", "finextract", "membership", "--base", str(REPO / "resources" / "base"),
              "--base-kind", "auto", "--precision", "fp32", "--device", "cpu", "--ft-method", "dreambooth",
              "--ft-dir", str(tmp_path / "never-read"), "--caption=a drake burner", "--score", "gap", "--seed", "0",
              "--batch-size", "64", "--threads", "1", "--out", str(tmp_path / "out"),
              "--candidates", str(REPO / "resources" / "audit" / "wesnoth-drake")]
    for extra, message in ((["--timesteps", "0", "--draws", "2"], "K .timesteps. and M .draws. must be >= 1"),
                           (["--timesteps", "4", "--draws", "2", "--reference", str(tmp_path)], "no candidate images")):
        run = subprocess.run(common + extra, capture_output=True, text=True, timeout=120)
        assert run.returncode != 0 and re.search(message, run.stderr), run.stderr[-2000:]
        assert "Loading" not in run.stderr and not (tmp_path / "out").exists()
    # the caption: one of --caption and --caption-file, and a file that is not there is named
    missing = tmp_path / "extracted" / "caption.txt"
    without_caption = [word for word in common if not word.startswith("--caption=")]
    for caption, message in ((["--caption=a drake burner", "--caption-file", str(missing)], "not both"),
                             (["--caption-file", str(missing)], re.escape(str(missing)))):
        run = subprocess.run(without_caption + caption + ["--timesteps", "4", "--draws", "2"], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode != 0 and re.search(message, run.stderr), run.stderr[-2000:]
        assert "Traceback" not in run.stderr and not (tmp_path / "out").exists()


def test_membership_columns_join_the_extraction_table_and_rank_it():
    table = pd.DataFrame({"rank": [1, 2, 3], "candidate": ["a/x.png", "a/y.png", "a/z.png"], "member": [0, 1, 0],
                          "p": [0.01, 0.2, 0.5], "q": [0.03, 0.3, 0.5]})
    membership = pd.DataFrame({"role": ["candidate"] * 3 + ["reference"], "file": ["b/z.png", "b/y.png", "b/x.png", "r"],
                               "membership": [0.1, 2.0, 0.3, 0.0], "membership_p": [0.5, 0.01, 0.2, np.nan],
                               "membership_q": [0.5, 0.03, 0.3, np.nan]})
    merged = merge_membership(table, membership)
    assert merged["candidate"].tolist() == ["a/y.png", "a/x.png", "a/z.png"] and merged["rank"].tolist() == [1, 2, 3]
    assert merged["extraction_p"].tolist() == [0.2, 0.01, 0.5] and "p" not in merged
    assert list(merged.columns[:6]) == ["rank", "candidate", "member", "membership", "membership_p", "membership_q"]
    with pytest.raises(AuditInputError, match="lacks candidates"):
        merge_membership(table, membership.iloc[1:])


def test_a_checkpoint_that_does_not_fit_the_base_is_named_before_any_job(tmp_path):
    from safetensors.torch import save_file
    import torch

    from conftest import make_tiny_backbone
    from finextract.workflow.model_checks import _shapes, check_fits_base

    base = str(REPO / "resources" / "base")
    other = make_tiny_backbone(channels=(8, 16, 16)).unet  # another architecture's UNet
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match=r"targets\[0\].finetuned: .*other does not fit the base .*: .* is \["):
        check_fits_base(base, str(tmp_path / "other"), "targets[0].finetuned")
    shapes = _shapes(REPO / "resources" / "base" / "unet" / "diffusion_pytorch_model.safetensors")
    conv = "down_blocks.0.resnets.0.conv1"
    fitting = {f"{conv}.lora_A.weight": torch.zeros(4, shapes[f"{conv}.weight"][1], 3, 3),
               f"{conv}.lora_B.weight": torch.zeros(shapes[f"{conv}.weight"][0], 4, 1, 1)}
    save_file(fitting, str(tmp_path / "fits.safetensors"))
    check_fits_base(base, f"lora:{tmp_path / 'fits.safetensors'}", "k")
    wrong = {f"{conv}.lora_A.weight": torch.zeros(4, shapes[f"{conv}.weight"][1] + 3, 3, 3)}
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ConfigError, match="input channels in the LoRA"):
        check_fits_base(base, f"lora:{tmp_path / 'wrong.safetensors'}", "k")
    save_file({"up_blocks.9.attentions.0.to_q.lora_A.weight": torch.zeros(4, 8)}, str(tmp_path / "alien.safetensors"))
    with pytest.raises(ConfigError, match="a LoRA made for another model"):
        check_fits_base(base, f"lora:{tmp_path / 'alien.safetensors'}", "k")


@pytest.mark.slow
def test_realworld_audit_of_a_published_dreambooth_folder(tmp_path):
    """Real-world mode: a target is a base and a checkpoint on disk (here the tiny base and a copy of its
    UNet, so θ' = θ); the audit samples it and the base, and ranks the candidates."""
    import shutil
    import subprocess

    import yaml

    from conftest import snakemake_cmd

    shutil.copytree(REPO / "resources" / "base" / "unet", tmp_path / "published" / "unet")
    config = {"results": str(tmp_path / "results"),
              "targets": [{"name": "suspect", "pretrained": str(REPO / "resources" / "base"),
                           "finetuned": str(tmp_path / "published"), "caption": "a drake burner", "n0": 5,
                           "n_per_image": 2, "steps": 2, "methods": {"direct": {}, "finextract": {}}}],
              "audit": {"control_draws": 2, "suspects": {
                  "mine": {"target": "suspect", "candidates": str(REPO / "resources" / "audit" / "wesnoth-drake")}}}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run = subprocess.run(snakemake_cmd(tmp_path) + ["audit", "--cores", "2", "--configfile", str(path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    ranked = pd.read_csv(tmp_path / "results" / "audit" / "mine" / "dreambooth" / "audit.csv")
    assert len(ranked) == 105 and {"p_direct", "p_finextract", "extraction_q", "best_direct", "membership_p",
                                   "membership_q"} <= set(ranked.columns)
    # θ' = θ: the suspect is one more draw of the null, so small p-values are rare ...
    assert (ranked["extraction_p"] <= 0.05).mean() < 0.2
    # ... and the loss gap is exactly 0 for every candidate: nothing is called used
    assert (ranked["membership"] == 0).all() and (ranked["membership_q"] > 0.05).all()
    assert (tmp_path / "results" / "audit" / "mine" / "dreambooth" / "evidence.png").stat().st_size > 0


def test_write_audit_puts_the_membership_answer_beside_the_extraction_evidence(tmp_path):
    import json

    from finextract.audit.report import write_audit, write_audit_summary
    from finextract.audit.membership.calibrate import calibrate

    rng = np.random.default_rng(0)
    files = [tmp_path / f"c{i}.png" for i in range(12)]
    for f in files:
        Image.new("RGB", (8, 8), "white").save(f)
    members = np.array([1, 1] + [0] * 10)
    candidates = unit_rows(rng, 12)
    evidence = [MethodEvidence("direct", unit_rows(rng, 10), [str(files[0])] * 10, unit_rows(rng, 40),
                               np.repeat(np.arange(4), 10))]
    table = audit_table(files, candidates, np.full((12, 8, 8, 3), 255, np.uint8), evidence,
                        lambda f: np.asarray(Image.open(f)), members)
    scores = np.r_[5.0, 4.0, rng.normal(size=10)]
    reference = rng.normal(size=30)
    answer = calibrate(scores, reference)
    pd.DataFrame({"role": ["candidate"] * 12 + ["reference"] * 30, "file": [str(f) for f in files] + ["r"] * 30,
                  "member": np.r_[members, np.zeros(30, int)], "membership": np.r_[scores, reference],
                  "membership_p": np.r_[answer.p, np.full(30, np.nan)], "membership_q": np.r_[answer.q, np.full(30, np.nan)],
                  "score_gap": np.r_[scores, reference], "score_loss": rng.normal(size=42)}
                 ).to_csv(tmp_path / "membership.csv", index=False)
    (tmp_path / "membership.json").write_text(json.dumps({
        "score": "gap", "timesteps": 8, "draws": 2, "caption": "a drake burner", "null": "reference",
        "reference": 30, "null_centre": None, "null_spread": None, "set_test": answer.set_test.test,
        "set_p": answer.set_test.p, "set_meaning": answer.set_test.meaning, "notes": ["a note"],
        "seconds_per_image": 0.1}))
    out = tmp_path / "out"
    write_audit("mine", "lora", table, ["direct"], 10, 4, out, tmp_path / "membership.csv", score="gap")
    ranked = pd.read_csv(out / "audit.csv")
    assert ranked["candidate"].tolist()[:2] == [str(files[0]), str(files[1])]  # the two members, by score
    assert ranked["membership_p"].iloc[0] == pytest.approx(1 / 31)
    page = (out / "audit.md").read_text()
    assert "not proof of non-use" in page and "Mann-Whitney" in page and "Note: a note" in page
    assert "## Extraction evidence" in page and "| 1 | c0.png |" in page
    assert Image.open(out / "evidence.png").size[0] > 0
    row = pd.read_csv(out / "measurement.csv").iloc[0]
    assert row["membership_AUC"] == 1.0 and row["membership_TPR@p<=0.05"] == 1.0 and "loss: AUC" in row
    write_audit_summary([str(out / "measurement.csv")], tmp_path / "summary.csv", tmp_path / "summary.md")
    summary = (tmp_path / "summary.md").read_text()
    assert "Membership test, with 95 % bootstrap intervals" in summary and "applied to these cells: **gap**" in summary
