"""The whole workflow through Snakemake on the smoke config, and what reruns after a change."""
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, absolute_paths, load_test_config, snakemake_cmd


def smoke_config(tmp_path: Path, **overrides) -> Path:
    """.test/config/config.yaml with results under tmp_path; relative paths in overrides are the repo's."""
    config = load_test_config()
    config["results"] = str(tmp_path / "results")
    for key, value in overrides.items():
        node = config
        *parents, last = key.split(".")
        for parent in parents:
            node = node[parent]
        node[last] = value
    absolute_paths(config, REPO)
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(*args, check=True, directory: Path | None = None):
    """Snakemake in its own working directory (by default: next to the --configfile)."""
    if directory is None:
        directory = Path(args[args.index("--configfile") + 1]).parent if "--configfile" in args else REPO / ".test"
    result = subprocess.run(snakemake_cmd(directory) + ["--cores", "2", *args], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def planned_jobs(configfile: Path | None, *targets: str) -> dict[str, int]:
    """Job counts per rule of a dry run."""
    args = ["--configfile", str(configfile)] if configfile else []
    out = snakemake(*targets, "-n", *args, "--quiet", "rules").stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("job", "total"):
            counts[parts[0]] = int(parts[1])
    return counts


def test_default_config_plans_the_full_grid(tmp_path):
    config = absolute_paths(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)
    config["results"] = str(tmp_path / "results")  # plan from scratch, whatever results/ holds
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(config))
    plan = planned_jobs(tmp_path / "default.yaml")
    # 2 sets x (2 fine-tuning methods x 3 methods + control) = 14 scored combinations, 4 fine-tunings
    assert plan["finetune"] == 4 and plan["score"] == 14 and plan["cluster"] == 14
    # N = 20 * N0 in shards of 100 seeds: 200 images -> 2 shards (openmoji), 100 -> 1 (wesnoth), x 7
    assert plan["sample_shard"] == 21
    # n_sweep: 500 N0 seeds for DreamBooth finextract and direct: (50 + 25 shards) x 2, of which the
    # default run already made (2 + 1) x 2; 6 N values x 2 sets x 2 methods sweep points
    sweep = planned_jobs(tmp_path / "default.yaml", "n_sweep")
    assert sweep["sample_shard"] == 150 and sweep["sweep_point"] == 24 and sweep["finetune"] == 2


def check_report_in_browser(report: Path, tmp_path: Path, extra: tuple[str, ...] = ()) -> None:
    """Headless Chromium renders the report (its menu is drawn by JavaScript from the embedded results):
    the rendered page names the result categories and Table 1, and the screenshot is not blank."""
    import shutil

    import numpy as np
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            raise AssertionError("chromium is not installed (scripts/test.sh installs Debian's chromium as root)")
        pytest.skip("chromium not installed")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=8000", "--window-size=1400,1000"]
    dom = subprocess.run(flags + ["--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    for text in ("Summary", "Extracted images", "Table 1", "private vs extracted", "Leak score", "FineXtract", *extra):
        assert text in dom, f"{text!r} not in the rendered report"
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and the menu, not a blank page


@pytest.mark.slow
def test_smoke_run_end_to_end_then_incremental_reruns(tmp_path):
    config = smoke_config(tmp_path)
    run = snakemake("--configfile", str(config))
    results = tmp_path / "results"
    table = pd.read_csv(results / "summary" / "table1.csv")
    assert {"FineXtract", "CFG+Clustering", "Direct Text2img+Clustering"} <= set(table["method"])
    assert (results / "summary" / "extracted_grid.png").exists()
    assert "FineXtract" in run.stdout + run.stderr  # the summary is printed at the end
    for set_name, n0 in (("openmoji-style", 10), ("wesnoth-drake", 5)):
        extracted = list((results / "clusters" / set_name / "lora" / "finextract" / "extracted").glob("*.png"))
        assert len(extracted) == n0  # exactly N0 images, always

    # Nothing to do on a rerun.
    assert planned_jobs(config) == {}
    # Holding θ beside θ' another way (`sampling.memory`, lossy) reruns the DreamBooth shards and nothing else
    # samples again.
    dreambooth_shards = len(list((results / "samples").glob("*/dreambooth/*/shard_*")))
    held = planned_jobs(smoke_config(tmp_path, **{"sampling.memory": "delta-int8"}))
    assert dreambooth_shards and held["sample_shard"] == dreambooth_shards

    # The N sweep reuses the run's shards: N up to 2 N0 samples nothing new, 4 N0 only the missing seeds.
    sweep = planned_jobs(config, "n_sweep")
    assert "sample_shard" not in sweep and sweep["sweep_point"] == 8  # 2 sets x 2 methods x 2 N
    longer = planned_jobs(smoke_config(tmp_path, **{"n_sweep.n_per_image": [1, 2, 4]}), "n_sweep")
    assert longer["sample_shard"] == 6  # seeds 20-39 (openmoji) and 10-19 (wesnoth) x 2 methods
    snakemake("n_sweep", "--configfile", str(config))
    curve = pd.read_csv(results / "n_sweep" / "n_sweep.csv")
    assert len(curve) == 8 and set(curve["n_per_image"]) == {1, 2}
    assert (curve["AS"] <= curve["upper_AS"] + 1e-6).all()
    assert (results / "n_sweep" / "n_sweep.png").stat().st_size > 0

    # The audit reuses the run's samples: it samples only the control draws (2 draws x 10 seeds = 2 shards,
    # direct and finextract, per fine-tuning method), scores the 105 candidates of the Wesnoth folder from
    # both weights, and ranks them by that membership p.
    plan = planned_jobs(config, "audit")
    assert "sample_shard" not in plan and plan["audit_control_shard"] == 8 and plan["audit_score"] == 2
    assert plan["audit_membership"] == 2
    snakemake("audit", "--configfile", str(config))
    ranked = pd.read_csv(results / "audit" / "wesnoth" / "dreambooth" / "audit.csv")
    assert len(ranked) == 105 and ranked["rank"].tolist() == list(range(1, 106))
    assert ranked["membership_p"].is_monotonic_increasing and ranked["extraction_p"].min() >= 1 / (1 + 2 * 105)
    assert "not proof of non-use" in (results / "audit" / "wesnoth" / "lora" / "audit.md").read_text()
    summary = pd.read_csv(results / "audit" / "summary.csv")
    assert set(summary["ft"]) == {"dreambooth", "lora"} and summary["AUC"].between(0, 1).all()
    # Another answering score re-answers from the membership scores already computed: no model runs again.
    assert planned_jobs(smoke_config(tmp_path, **{"audit.membership.score": "gap"}), "audit") == {
        "audit_score": 2, "audit": 1}

    # The defences (Table 3): each augmentation fine-tunes its own models; `none` is the run's own recipe.
    snakemake("defences", "--configfile", str(config))
    defences = pd.read_csv(results / "defences" / "summary" / "defences.csv")
    assert set(defences["augment"]) == {"none", "randaugment"} and set(defences["method"]) == {"direct", "finextract"}
    assert defences[["AS", "fidelity", "checkerboard", "sharpness"]].notna().all().all()
    ours = sorted((results / "samples" / "wesnoth-drake" / "dreambooth" / "direct").glob("shard_*/seed_*.png"))
    again = sorted((results / "defences" / "none" / "samples" / "wesnoth-drake" / "dreambooth" / "direct").glob("seed_*.png"))
    assert [p.read_bytes() for p in ours] == [p.read_bytes() for p in again]  # same recipe, same seeds: same images

    # Caption extraction from the run's fine-tuned weights: one caption per set and method, with its recall.
    snakemake("captions", "--configfile", str(config))
    captions = pd.read_csv(results / "captions" / "summary.csv")
    assert len(captions) == 8 and set(captions["ft"]) == {"dreambooth", "lora"}  # 2 sets x 2 methods x (1 + truth)
    assert captions["recall"].between(0, 1).all() and (captions["F"] >= 0).all()
    assert (captions["kind"] == "extracted").sum() == 4
    assert (results / "captions" / "summary.png").stat().st_size > 10_000
    for folder in (results / "captions").glob("*/*/"):  # what `caption: extract` would sample with
        table = pd.read_csv(folder / "captions.csv")
        best = table[table["kind"] == "extracted"].sort_values("F").iloc[-1]["caption"]
        assert (folder / "caption.txt").read_text().strip() == best

    # The Snakemake report of the run and its audit: one self-contained HTML file, opened in a real browser.
    report = tmp_path / "report.html"
    snakemake("all", "audit", "--configfile", str(config), "--report", str(report))
    check_report_in_browser(report, tmp_path, extra=("Audit", "evidence sheet", "membership test from the weights"))

    # Changing w' reruns sampling and what follows for that method only, never fine-tuning.
    changed_w = smoke_config(tmp_path, **{"sampling.methods.finextract.w": {"dreambooth": 2.0, "lora": 4.0}})
    plan = planned_jobs(changed_w)
    assert "finetune" not in plan
    assert plan["sample_shard"] == 6  # finextract x {dreambooth, lora} x (2 shards openmoji + 1 wesnoth)
    assert plan["score"] == 4

    # Changing the sampler reruns every sampling shard and what follows, never fine-tuning.
    plan = planned_jobs(smoke_config(tmp_path, **{"sampling.scheduler": "dpmsolver++"}))
    assert "finetune" not in plan and plan["sample_shard"] == 21 and plan["score"] == 14

    # Changing a fine-tuning hyperparameter reruns from fine-tuning.
    changed_lr = smoke_config(tmp_path, **{"finetune.lora.lr": 2.0e-3})
    plan = planned_jobs(changed_lr)
    assert plan["finetune"] == 2  # LoRA on both sets
    assert plan["sample_shard"] == 9  # three methods x (2 + 1 shards)


def test_bad_config_fails_before_any_job(tmp_path):
    empty = tmp_path / "empty-set"
    (empty / "images").mkdir(parents=True)
    config = smoke_config(tmp_path, **{"private_sets": {"broken": {"folder": str(empty)}}})
    result = snakemake("-n", "--configfile", str(config), check=False)
    assert result.returncode != 0
    assert "private_sets.broken" in result.stderr + result.stdout
    assert "no images" in result.stderr + result.stdout

    negative_w = smoke_config(tmp_path, **{"sampling.methods.cfg.w": -1.0})
    result = snakemake("-n", "--configfile", str(negative_w), check=False)
    assert result.returncode != 0 and "sampling.methods.cfg.w" in result.stderr + result.stdout

    # A second `sampling:` block: PyYAML would keep it alone, dropping the first block's keys.
    twice = tmp_path / "twice.yaml"
    twice.write_text(smoke_config(tmp_path).read_text() + "sampling:\n  methods: {direct: {}}\n")
    result = snakemake("-n", "--configfile", str(twice), check=False)
    assert result.returncode != 0
    assert f"{twice}:" in result.stderr + result.stdout and "duplicated key 'sampling'" in result.stderr + result.stdout


def test_realworld_template_validates_and_plans_sampling_for_every_target(tmp_path):
    out = snakemake("-n", "--configfile", str(REPO / "config" / "realworld.yaml"), "--quiet", "rules",
                    directory=tmp_path).stdout
    counts = {p[0]: int(p[1]) for p in (line.split() for line in out.splitlines())
              if len(p) == 2 and p[1].isdigit()}
    targets = yaml.safe_load((REPO / "config" / "realworld.yaml").read_text())["targets"]
    assert "finetune" not in counts  # real-world mode never fine-tunes
    assert counts["cluster"] == len(targets) * 4  # direct, cfg, finextract + the base-model control row
    assert counts["sample_shard"] > counts["cluster"]
