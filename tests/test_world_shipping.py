"""The shipping rule of docs/tiny-world.md on toy measurements, and the command that applies it."""
import json
import subprocess
import sys

import pytest

from finextract.world.shipping import (BEST_WITHIN_BUDGET, MEASURE_W4, SHIP, CheckpointFigures, choose_checkpoint,
                                       read_figures)


def figures(step, ratios, rows_pass=None, cfg_helps=True):
    names = ("W1 unconditional", "W2 unseen vendor", "W2 held-out concepts")
    rows_pass = all(r <= 2 for r in ratios) if rows_pass is None else rows_pass
    return CheckpointFigures(step, dict(zip(names, ratios)), rows_pass, cfg_helps)


def test_none_passing_ships_the_smallest_worst_ratio_not_the_smallest_mean():
    measured = [figures(10_000, (2.26, 2.80, 2.46)),
                figures(18_000, (2.11, 2.94, 2.25)),   # smallest mean, worse worst ratio
                figures(14_000, (2.17, 2.82, 2.40))]
    choice = choose_checkpoint(measured)
    assert (choice.step, choice.branch, choice.worst_fd_ratio) == (10_000, BEST_WITHIN_BUDGET, 2.80)


def test_ties_go_to_the_earlier_step():
    assert choose_checkpoint([figures(4, (2.5, 2.5, 2.5)), figures(2, (2.1, 2.5, 2.2))]).step == 2


def test_the_first_checkpoint_passing_w1_to_w3_is_measured_for_w4_then_ships_or_the_next_is_tried():
    measured = [figures(6, (1.9, 1.8, 1.7)), figures(2, (2.5, 2.6, 2.7)), figures(4, (1.9, 1.95, 1.9)),
                figures(8, (1.5, 1.5, 1.5), cfg_helps=False)]  # best ratios, but CFG does not help
    first = choose_checkpoint(measured)
    assert (first.step, first.branch) == (4, MEASURE_W4)
    assert choose_checkpoint(measured, {4: True}).branch == SHIP
    assert (choose_checkpoint(measured, {4: False}).step, choose_checkpoint(measured, {4: False}).branch) == \
        (6, MEASURE_W4)
    # neither passes W4: the best worst ratio among all, whatever W3 says
    last = choose_checkpoint(measured, {4: False, 6: False})
    assert (last.step, last.branch) == (8, BEST_WITHIN_BUDGET)


def test_a_pairwise_failure_keeps_a_checkpoint_out_of_w4_even_with_every_ratio_under_2():
    choice = choose_checkpoint([figures(2, (1.5, 1.5, 1.5), rows_pass=False), figures(4, (2.2, 2.3, 2.4))])
    assert (choice.step, choice.branch) == (2, BEST_WITHIN_BUDGET)


def write_summary(folder, model, ratios=(2.2, 3.0, 2.3), w3=True, rows=3):
    names = ("W1 unconditional", "W2 unseen vendor", "W2 held-out concepts")
    folder.mkdir(parents=True)
    criteria = [{"name": n, "fd_ratio": r, "passes": r <= 2} for n, r in zip(names, ratios)][:rows]
    (folder / "summary.json").write_text(json.dumps({"model": model, "criteria": criteria, "W3": {"passes": w3}}))
    return folder / "summary.json"


def test_read_figures_takes_the_step_from_the_checkpoint_folder_and_refuses_other_models(tmp_path):
    got = read_figures(write_summary(tmp_path / "a", "results/pretrain-broad/ckpt-22000"))
    assert got.step == 22000 and got.worst_fd_ratio == 3.0 and not got.passes_w1_to_w3
    with pytest.raises(ValueError, match="not a pretraining checkpoint"):
        read_figures(write_summary(tmp_path / "b", "resources/base"))
    with pytest.raises(ValueError, match="full measurement"):
        read_figures(write_summary(tmp_path / "c", "x/ckpt-2", rows=2))


def test_choose_base_command_prints_and_writes_the_choice_and_names_a_missing_measurement(tmp_path):
    for step, ratios in ((2000, (2.5, 2.6, 2.7)), (4000, (2.1, 2.9, 2.2)), (6000, (2.3, 2.4, 2.3))):
        write_summary(tmp_path / f"broad-{step}", f"results/pretrain-broad/ckpt-{step}", ratios)
    out = tmp_path / "choice.json"
    cmd = [sys.executable, "-m", "finextract", "choose-base", "--out", str(out), "--measurements",
           *map(str, sorted(tmp_path.glob("broad-*")))]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "chosen: step 6000 (none passes: best within budget; worst FD ratio 2.40)" in run.stdout
    assert json.loads(out.read_text())["choice"]["step"] == 6000
    missing = subprocess.run(cmd + [str(tmp_path / "broad-8000")], capture_output=True, text=True)
    assert missing.returncode != 0 and "broad-8000/summary.json not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = subprocess.run(cmd + ["--w4", "4000=maybe"], capture_output=True, text=True)
    assert bad.returncode != 0 and "STEP=yes or STEP=no" in bad.stderr


def test_ship_base_copies_model_criteria_and_history_and_keeps_the_card(tmp_path):
    import importlib.util

    from conftest import REPO, make_tiny_backbone
    from finextract.attack.load_models import load_base

    spec = importlib.util.spec_from_file_location("ship_base", REPO / "scripts" / "ship_base.py")
    ship_base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_base)

    checkpoint = tmp_path / "run" / "ckpt-4"
    make_tiny_backbone().save(checkpoint)
    (checkpoint / "training_step.txt").write_text("4\n")
    criteria = tmp_path / "criteria"
    write_summary(criteria, "somewhere/else/ckpt-4")
    for name in ("criteria.csv", "w3.csv", "W1-unconditional.png"):
        (criteria / name).write_text("x")
    loss = tmp_path / "loss.csv"  # two segments (seconds restart at the resume), and rows past the checkpoint
    loss.write_text("step,loss,lr,seconds\n0,0.3,1e-4,10.0\n1,0.2,1e-4,20.0\n2,0.2,1e-4,5.0\n3,0.1,1e-4,15.0\n"
                    "4,0.1,1e-4,25.0\n")
    out = tmp_path / "base"
    out.mkdir()
    (out / "MODEL_CARD.md").write_text("hand-written\n")
    (out / "stale.txt").write_text("from the previous base")

    history = ship_base.ship(checkpoint, criteria, loss, out)
    assert history["step"] == 4 and history["segments"] == 2 and history["hours"] == pytest.approx(35 / 3600)
    assert (out / "MODEL_CARD.md").read_text() == "hand-written\n" and not (out / "stale.txt").exists()
    assert sorted(p.name for p in (out / "criteria").iterdir()) == ["W1-unconditional.png", "criteria.csv",
                                                                   "summary.json", "w3.csv"]
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG" and (out / "training_step.txt").read_text() == "4\n"
    load_base(str(out))
    assert not list(tmp_path.glob("base.*"))  # no staging or old folder left behind

    other = tmp_path / "criteria-of-another-step"
    write_summary(other, "run/ckpt-6")
    for name in ("criteria.csv", "w3.csv"):
        (other / name).write_text("x")
    with pytest.raises(SystemExit, match="not the step-4 checkpoint"):
        ship_base.ship(checkpoint, other, loss, out)


def test_choose_base_prints_the_figures_as_a_markdown_table(tmp_path):
    import json as json_

    for step, ratios in ((2000, (2.5, 3.0, 2.7)), (4000, (2.1, 3.1, 2.2))):
        path = write_summary(tmp_path / f"broad-{step}", f"run/ckpt-{step}", ratios)
        summary = json_.loads(path.read_text())
        for row in summary["criteria"]:
            row.update(pairwise=0.08, copy_share=0.25)
        summary["W3"].update(similarity_w1=0.1, similarity_cfg3=0.2)
        path.write_text(json_.dumps(summary))
    run = subprocess.run([sys.executable, "-m", "finextract", "choose-base", "--markdown", "--measurements",
                          str(tmp_path / "broad-4000"), str(tmp_path / "broad-2000")],
                         capture_output=True, text=True, check=True)
    table = [line for line in run.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 4 and "2,000" in table[2] and "4,000" in table[3]  # in step order
    assert "3.10" in table[3] and "25.0 %" in table[3] and "0.100 → 0.200" in table[3]
