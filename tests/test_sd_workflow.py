"""The Snakemake workflow end to end on tiny Stable Diffusion and SDXL pipelines (CPU, about three minutes).

tests/test_sd_backbones.py checks the SD loaders and samplers from Python; here the same tiny pipelines
(real diffusers/transformers classes, random weights, a tokenizer the test writes) are saved to disk and
run through the workflow's rules as a user's config would drive them:

- embedded-default mode on an SD-1.x folder: fine-tune (DreamBooth and LoRA) → sample shards
  (cfg, finextract and the control row: θ sampled directly) → SSCD → clustering → scores → Table-1 summary;
- real-world mode on an SDXL folder: a kohya-format LoRA file and a DreamBooth UNet folder published
  "by someone else" → sample → SSCD → clustering (→ scores for the target that has its training images);
- real-world mode with an SDXL LoRA on an SD-1.x base: the run fails naming the mismatch, and no sampled
  image is written.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, emoji_like_images, snakemake_cmd, write_private_set
from sd_fixtures import (build_sd_pipeline, build_sdxl_pipeline, save_pipeline, tiny_sdxl_unet,
                         write_kohya_lora)

from finextract.reporting.summary import CONTROL_LABEL

pytestmark = pytest.mark.slow  # end to end through Snakemake: about a minute per test on 2 busy cores

CAPTION = "art style of a cat"
N0 = 2
N_PER_IMAGE = 2  # N = 4 images per sampling method
SSCD = {"model": "distilled", "calibration": str(REPO / "resources/sscd/calibration-distilled.npz"), "resolution": 224,
        "batch_size": 32}
RESOLUTION = 16  # the tiny pipelines' native size: UNet sample_size 8 × VAE factor 2


def snakemake(configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = snakemake_cmd(configfile.parent) + ["--cores", "2", "--configfile", str(configfile), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {configfile.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Tiny SD-1.x and SDXL pipelines on disk, plus a two-image private set with its caption."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sd-world")
    sd = save_pipeline(build_sd_pipeline(root), root / "sd15")
    xl_pipe = build_sdxl_pipeline(root)
    sdxl = save_pipeline(xl_pipe, root / "sdxl")
    private = write_private_set(root / "cats", emoji_like_images(N0, size=32, seed=3), caption=CAPTION)
    torch.set_num_threads(before)
    return {"root": root, "sd": sd, "sdxl": sdxl, "sdxl_pipe": xl_pipe, "private": private}


def png_sizes(folder: Path) -> set[tuple[int, int]]:
    return {Image.open(p).size for p in folder.glob("*.png")}


def check_clusters(folder: Path, n0: int, n_generated: int) -> None:
    centers = pd.read_csv(folder / "centers.csv")
    assert len(centers) == n0 and centers["image"].nunique() == n0
    assert len(list((folder / "extracted").glob("*.png"))) == n0
    assert len(pd.read_csv(folder / "assignments.csv")) == n_generated
    assert json.loads((folder / "summary.json").read_text())["n0"] == n0


def check_embeddings(npy: Path, n: int) -> None:
    descriptors = np.load(npy)
    assert descriptors.shape[0] == n and descriptors.ndim == 2 and np.isfinite(descriptors).all()
    order = pd.read_csv(npy.with_suffix(".order.csv"))
    assert len(order) == n and all(Path(f).name.startswith("seed_") for f in order["file"])


# --- embedded-default mode: fine-tune SD 1.x ourselves ------------------------------------------------
def test_sd15_finetune_sample_embed_cluster_score(world, tmp_path):
    results = tmp_path / "results"
    config = write_config(tmp_path / "sd15.yaml", {
        "base_model": str(world["sd"]),
        "precision": "fp32",
        "device": "cpu",
        "results": str(results),
        "private_sets": {"cats": {"folder": str(world["private"])}},
        "finetune": {"dreambooth": {"lr": 1.0e-4, "steps_per_image": 1, "seed": 0},
                     "lora": {"lr": 1.0e-3, "rank": 4, "steps_per_image": 1, "seed": 0}},
        "sampling": {"n_per_image": N_PER_IMAGE, "steps": 2, "shard_size": 10, "batch_size": 4,
                     "methods": {"cfg": {"w": 3.0},  # direct on θ': tests/test_sd_backbones.py (and the control row)
                                 "finextract": {"w": {"dreambooth": 3.0, "lora": 5.0}, "k": -0.02}},
                     "control": True},
        "sscd": SSCD,
        "clustering": {"time_cap_s": 10},
    })
    run = snakemake(config)
    n = N_PER_IMAGE * N0

    # fine-tuned checkpoints: a diffusers UNet folder, and a LoRA diffusers' own pipeline loads
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    db = results / "finetune" / "cats" / "dreambooth"
    assert (db / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert json.loads((db / "finetune.json").read_text())["steps"] == N0
    tuned = UNet2DConditionModel.from_pretrained(db / "unet")
    base = UNet2DConditionModel.from_pretrained(world["sd"], subfolder="unet")
    assert any(not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), base.state_dict().values()))
    lora = results / "finetune" / "cats" / "lora"
    assert (lora / "pytorch_lora_weights.safetensors").exists()
    assert len((lora / "train_log.csv").read_text().split()) == 1 + N0  # header + one line per step
    pipe = StableDiffusionPipeline.from_pretrained(world["sd"], safety_checker=None)
    pipe.load_lora_weights(lora, adapter_name="ft")
    assert pipe.unet.peft_config["ft"].r == 4
    sample_log = (results / "logs/samples/cats/lora/finextract" / f"000000-{n - 1:06d}.log").read_text()
    assert "diffusers format" in sample_log and "0 text-encoder layers, rank 4" in sample_log

    # every combination: one shard of N seeds at the base's size, SSCD rows, exactly N0 cliques, a score row
    combos = [(ft, m) for ft in ("dreambooth", "lora") for m in ("cfg", "finextract")] + [("none", "direct")]
    for ft, method in combos:
        shard = results / "samples" / "cats" / ft / method / f"shard_000000-{n - 1:06d}"
        assert sorted(p.name for p in shard.glob("*.png")) == [f"seed_{i:06d}.png" for i in range(n)]
        assert png_sizes(shard) == {(RESOLUTION, RESOLUTION)}
        perf = pd.read_csv(shard / "perf.csv")
        assert perf["images"].tolist() == [n] and perf["method"].tolist() == [method]
        check_embeddings(results / "embeddings" / "cats" / ft / f"{method}.npy", n)
        check_clusters(results / "clusters" / "cats" / ft / method, N0, n)
        scores = pd.read_csv(results / "metrics" / "cats" / ft / f"{method}.csv")
        assert scores["n_generated"].tolist() == [n] and scores["n_extracted"].tolist() == [N0]
        assert -1.0 <= scores["AS"].item() <= scores["upper_AS"].item() + 1e-6 <= 1.0 + 1e-6
    private = np.load(results / "embeddings" / "private" / "cats.npy")
    assert private.shape[0] == N0
    # guided sampling changes the images: θ' with FineXtract guidance vs the never-fine-tuned control row
    first = f"shard_000000-{n - 1:06d}/seed_000000.png"
    finextract = np.asarray(Image.open(results / "samples/cats/dreambooth/finextract" / first))
    control = np.asarray(Image.open(results / "samples/cats/none/direct" / first))
    assert not np.array_equal(finextract, control)

    table = pd.read_csv(results / "summary" / "table1.csv")
    assert {"FineXtract", "CFG+Clustering", CONTROL_LABEL} <= set(table["method"])
    assert (results / "summary" / "table1.md").stat().st_size > 0
    assert (results / "summary" / "extracted_grid.png").stat().st_size > 0
    assert "FineXtract" in run.stdout + run.stderr


# --- real-world mode: published SDXL checkpoints --------------------------------------------------------
def test_sdxl_realworld_kohya_lora_and_dreambooth_unet(world, tmp_path):
    pipe = world["sdxl_pipe"]
    kohya = tmp_path / "civitai_style_v1.safetensors"
    lora_layers = write_kohya_lora(pipe.unet, kohya, rank=4, alpha=2.0, text_encoder=pipe.text_encoder,
                                   text_encoder_2=pipe.text_encoder_2, sgm_names=True)  # kohya's SDXL layout
    db_unet = tmp_path / "dreambooth-unet"
    tiny_sdxl_unet(seed=1).save_pretrained(db_unet)
    results = tmp_path / "results"
    config = write_config(tmp_path / "realworld.yaml", {
        "results": str(results),
        "defaults": {"precision": "fp32", "device": "cpu", "steps": 2, "n_per_image": N_PER_IMAGE,
                     "batch_size": 4, "shard_size": 10, "methods": {"finextract": {}}},
        "targets": [
            {"name": "xl-style-lora", "pretrained": str(world["sdxl"]), "kind": "sdxl",
             "finetuned": f"lora:{kohya}", "caption": "yarn art style", "n0": N0,
             "methods": {"finextract": {"w": {"lora": 4.0}, "k": {"lora": 0.0}}}},
            {"name": "xl-dreambooth", "pretrained": str(world["sdxl"]), "kind": "auto",
             "finetuned": str(db_unet), "caption": "a sks dog", "n0": N0, "images": str(world["private"])},
        ],
        "sscd": SSCD,
        "clustering": {"time_cap_s": 10},
    })
    snakemake(config)
    n = N_PER_IMAGE * N0
    assert not (results / "finetune").exists()  # real-world mode never fine-tunes
    expected = {("xl-style-lora", "lora", "finextract"), ("xl-style-lora", "none", "direct"),
                ("xl-dreambooth", "dreambooth", "finextract"), ("xl-dreambooth", "none", "direct")}
    sampled = {tuple(p.relative_to(results / "samples").parts[:3]) for p in (results / "samples").glob("*/*/*")}
    assert sampled == expected
    for name, ft, method in expected:
        shard = results / "samples" / name / ft / method / f"shard_000000-{n - 1:06d}"
        assert len(list(shard.glob("seed_*.png"))) == n and png_sizes(shard) == {(RESOLUTION, RESOLUTION)}
        check_embeddings(results / "embeddings" / name / ft / f"{method}.npy", n)
        check_clusters(results / "clusters" / name / ft / method, N0, n)
    # the LoRA (and its text-encoder layers) changes θ': its FineXtract images differ from the base's
    second = f"shard_000000-{n - 1:06d}/seed_000001.png"
    lora_img = np.asarray(Image.open(results / "samples/xl-style-lora/lora/finextract" / second))
    base_img = np.asarray(Image.open(results / "samples/xl-style-lora/none/direct" / second))
    assert not np.array_equal(lora_img, base_img)
    sample_log = (results / "logs/samples/xl-style-lora/lora/finextract" / f"000000-{n - 1:06d}.log").read_text()
    # 2 text encoders x 2 layers x (q, k, v, out_proj, fc1, fc2)
    assert f"LoRA {kohya}: kohya format, {len(lora_layers)} UNet layers, 24 text-encoder layers" in sample_log

    # only the target with its training images is scored
    assert sorted(p.name for p in (results / "metrics").iterdir()) == ["xl-dreambooth"]
    table = pd.read_csv(results / "summary" / "table1.csv")
    assert "FineXtract" in set(table["method"])
    scores = pd.read_csv(results / "metrics" / "xl-dreambooth" / "dreambooth" / "finextract.csv")
    assert scores["n_generated"].tolist() == [n] and scores["n_extracted"].tolist() == [N0]


def test_lora_for_another_base_fails_before_sampling(world, tmp_path):
    """An SDXL LoRA on an SD-1.x base: the sampling job fails naming file and base; no image is written."""
    pipe = world["sdxl_pipe"]
    xl_lora = tmp_path / "sdxl_lora.safetensors"
    write_kohya_lora(pipe.unet, xl_lora, sgm_names=True)
    results = tmp_path / "results"
    config = write_config(tmp_path / "mismatch.yaml", {
        "results": str(results),
        "defaults": {"precision": "fp32", "device": "cpu", "steps": 2, "n_per_image": 1, "batch_size": 2,
                     "methods": {"finextract": {}}, "control": False},
        "targets": [{"name": "wrong-base", "pretrained": str(world["sd"]), "kind": "sd",
                     "finetuned": f"lora:{xl_lora}", "caption": CAPTION, "n0": N0}],
        "sscd": SSCD,
    })
    result = snakemake(config, check=False)
    assert result.returncode != 0
    assert "does not fit the base model" in result.stdout + result.stderr  # on the console, not only in the log
    log = (results / "logs" / "samples" / "wrong-base" / "lora" / "finextract" / "000000-000001.log").read_text()
    assert "does not fit the base model" in log and "sdxl_lora.safetensors" in log and str(world["sd"]) in log
    assert "SDXL LoRA" in log
    assert not list(results.rglob("*.png"))
    assert not (results / "embeddings").exists() and not (results / "clusters").exists()


def test_sd15_realworld_caption_extract_samples_with_the_extracted_caption(world, tmp_path):
    """`caption: extract`: the caption comes from θ and θ' weights (extract_caption), then every sampling job,
    the never-fine-tuned control included, uses it."""
    from diffusers import UNet2DConditionModel

    lora = tmp_path / "mystery_lora.safetensors"
    write_kohya_lora(UNet2DConditionModel.from_pretrained(world["sd"], subfolder="unet"), lora, rank=4, alpha=4.0)
    results = tmp_path / "results"
    config = write_config(tmp_path / "extract.yaml", {
        "results": str(results),
        "defaults": {"precision": "fp32", "device": "cpu", "steps": 2, "n_per_image": N_PER_IMAGE,
                     "batch_size": 4, "shard_size": 10, "methods": {"finextract": {"w": 3.0, "k": 0.0}}},
        "targets": [{"name": "mystery", "pretrained": str(world["sd"]), "kind": "sd", "finetuned": f"lora:{lora}",
                     "caption": "extract", "n0": N0}],
        "caption_extraction": {"lengths": [2, 3], "iterations": 5, "scan_tokens": False},
        "sscd": SSCD,
        "clustering": {"time_cap_s": 10},
    })
    snakemake(config)
    extracted = pd.read_csv(results / "captions/mystery/lora/captions.csv")
    assert extracted["kind"].tolist() == ["extracted", "extracted"] and "recall" not in extracted  # no truth here
    chosen = (results / "captions/mystery/lora/caption.txt").read_text().strip()
    assert chosen == extracted.loc[extracted["F"].idxmax(), "caption"] and chosen
    n = N_PER_IMAGE * N0
    for ft, method in (("lora", "finextract"), ("none", "direct")):
        log = (results / "logs/samples/mystery" / ft / method / f"000000-{n - 1:06d}.log").read_text()
        assert f"caption: {chosen!r}" in log
        check_clusters(results / "clusters" / "mystery" / ft / method, N0, n)
    # SDXL's two text encoders are not supported: the config fails before any job
    bad = write_config(tmp_path / "extract-xl.yaml", {**yaml.safe_load(config.read_text()), "targets": [
        {"name": "xl", "pretrained": str(world["sdxl"]), "kind": "sdxl", "finetuned": f"lora:{lora}",
         "caption": "extract", "n0": N0}]})
    result = snakemake(bad, "-n", check=False)
    assert result.returncode != 0 and "not SDXL's two" in result.stdout + result.stderr
