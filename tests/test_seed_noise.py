"""Table 1's seed-to-seed noise on toy runs, and the seed runs' configs."""
import importlib.util
import math

import pandas as pd
import pytest

from conftest import REPO
from finextract.reporting import seed_noise


def run_table(offsets: dict[tuple[str, str, str], float]) -> pd.DataFrame:
    return pd.DataFrame([{"set": s, "ft": ft, "method": m, "AS": v} for (s, ft, m), v in offsets.items()])


def toy_runs(noise: list[float]) -> dict[str, pd.DataFrame]:
    base = {("a", "dreambooth", "direct"): 0.40, ("a", "dreambooth", "cfg"): 0.38,
            ("a", "dreambooth", "finextract"): 0.50, ("a", "none", "direct"): 0.20}
    return {f"r{i}": run_table({k: v + e * (1 if j % 2 else -1) for j, (k, v) in enumerate(base.items())})
            for i, e in enumerate(noise)}


def test_pooled_sd_and_margins():
    spread = seed_noise.seed_spread(toy_runs([0.0, 0.02, 0.04]))
    # every cell moves by -e or +e: values (0, 0.02, 0.04) up to sign, SD 0.02 in each cell
    assert spread["sd"].tolist() == pytest.approx([0.02] * 4)
    sd = seed_noise.pooled_sd(spread)
    assert sd == pytest.approx(0.02)
    assert seed_noise.noise_margin(sd) == pytest.approx(2 * 0.02 * math.sqrt(2))
    assert seed_noise.noise_margin(sd, 3) == pytest.approx(2 * 0.02 * math.sqrt(2 / 3))


def test_differences_flag_only_those_beyond_the_margin_and_include_the_control():
    spread = seed_noise.seed_spread(toy_runs([0.0, 0.02, 0.04]))
    diff = seed_noise.method_differences(spread, seed_noise.pooled_sd(spread)).set_index("comparison")
    assert set(diff.index) == {"finextract - cfg", "finextract - direct", "finextract - control", "cfg - direct",
                               "cfg - control", "direct - control"}
    # run 0 has no noise: finextract - cfg = 0.12 > 0.057; cfg - direct = -0.02 is within it
    assert diff.loc["finextract - cfg", "difference (one run)"] == pytest.approx(0.12)
    assert diff.loc["finextract - cfg", "exceeds (one run)"] and not diff.loc["cfg - direct", "exceeds (one run)"]
    assert diff.loc["direct - control", "exceeds (mean of 3)"]


def test_runs_must_score_the_same_cells(tmp_path):
    runs = toy_runs([0.0, 0.01])
    for i, (name, table) in enumerate(runs.items()):
        (tmp_path / f"run{i}" / "summary").mkdir(parents=True)
        table.iloc[: len(table) - i].to_csv(tmp_path / f"run{i}" / "summary" / "all_metrics.csv", index=False)
    with pytest.raises(ValueError, match="other cells"):
        seed_noise.read_runs([tmp_path / "run0", tmp_path / "run1"])
    with pytest.raises(FileNotFoundError, match="run2/summary/all_metrics.csv not found"):
        seed_noise.read_runs([tmp_path / "run0", tmp_path / "run2"])
    with pytest.raises(ValueError, match="at least two runs"):
        seed_noise.seed_spread({"only": runs["r0"]})


def test_write_seed_noise_writes_its_tables(tmp_path):
    for i, table in enumerate(toy_runs([0.0, 0.02, 0.04]).values()):
        (tmp_path / f"run{i}" / "summary").mkdir(parents=True)
        table.to_csv(tmp_path / f"run{i}" / "summary" / "all_metrics.csv", index=False)
    summary = seed_noise.write_seed_noise([tmp_path / f"run{i}" for i in range(3)], tmp_path / "out")
    assert summary["pooled_sd"] == pytest.approx(0.02) and summary["cells"] == 4
    text = (tmp_path / "out" / "seed_noise.md").read_text()
    assert "**0.020**" in text and "differences exceed the noise in the mean over runs" in text


def test_a_seed_run_changes_only_the_seeds_and_the_results_folder(tmp_path):
    spec = importlib.util.spec_from_file_location("seed_runs", REPO / "scripts" / "seed_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {"results": "results", "finetune": {"dreambooth": {"seed": 0, "lr": 1e-4}, "lora": {"seed": 0}},
              "sampling": {"seed_offset": 0, "n_per_image": 20}}
    out = module.seed_config(config, 2, tmp_path / "seed2")
    assert out["finetune"] == {"dreambooth": {"seed": 2, "lr": 1e-4}, "lora": {"seed": 2}}
    assert out["sampling"] == {"seed_offset": 2 * module.SEED_STRIDE, "n_per_image": 20}
    assert out["results"] == str(tmp_path / "seed2") and config["finetune"]["dreambooth"]["seed"] == 0
