"""The guidance study: variants, the guidance interval, `w: auto`, the ladder of snapshots, the summary, the DAG."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, emoji_like_images
from finextract.experiments import auto_w
from finextract.attack.clustering import extract_clusters
from finextract.attack.model_pair import FINETUNED, PRETRAINED
from finextract.attack.sampling import in_guidance_interval, step_requests
from finextract.experiments.study import FULL_INTERVAL, Variant, default_strength, study_variants

STUDY = {
    "detail_seeds": [0],
    "variants": [
        {"method": "direct"},
        {"method": "cfg", "w": 3.0},
        {"method": "finextract", "w": [1.5, 3.0], "k": -0.02},
        {"method": "finextract", "w": {"dreambooth": 3.0, "lora": 5.0}, "k": [-0.02, 0.0], "detail": True},
        {"method": "finextract", "w": 3.0, "k": -0.02, "interval": [300, 1000], "detail": True},
        {"method": "finextract_uncond", "w": {"dreambooth": [1.0, 3.0]}, "detail": True},
    ],
}


# --- variants -------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", [Variant("direct"), Variant("cfg", 3.0, 0.0), Variant("finextract", 1.5, -0.02),
                                     Variant("finextract", 3.0, -0.02, (300.0, 1000.0)),
                                     Variant("finextract_uncond", 1.0, 0.0)])
def test_variant_ids_round_trip(variant):
    assert Variant.from_id(variant.id) == variant
    assert "/" not in variant.id and " " not in variant.id


@pytest.mark.parametrize("text", ["cfg", "direct_w3_k0", "finextract_w3", "dreambooth_w3_k0", "cfg_w3_k0_t300"])
def test_bad_variant_ids_are_refused(text):
    with pytest.raises(ValueError, match="not a study variant id"):
        Variant.from_id(text)


def test_detail_variants_only_for_detail_seeds_and_duplicates_collapse():
    ids = lambda ft, seed: [v.id for v in study_variants(STUDY, ft, seed)]  # noqa: E731
    assert ids("dreambooth", 1) == ["direct", "cfg_w3_k0", "finextract_w1.5_k-0.02", "finextract_w3_k-0.02"]
    seed0 = ids("dreambooth", 0)
    # finextract w'=3 k=-0.02 is in the grid and in the detail entry: sampled once
    assert seed0.count("finextract_w3_k-0.02") == 1
    assert {"finextract_w3_k0", "finextract_w3_k-0.02_t300-1000", "finextract_uncond_w1_k0",
            "finextract_uncond_w3_k0"} <= set(seed0)
    lora = ids("lora", 0)
    assert "finextract_w5_k0" in lora and not any(v.startswith("finextract_uncond") for v in lora)


# --- the guidance interval -----------------------------------------------------------------
def test_guidance_interval_is_closed_and_none_means_everywhere():
    assert in_guidance_interval(300, (300, 1000)) and in_guidance_interval(1000, (300, 1000))
    assert not in_guidance_interval(299.9, (300, 1000))
    assert in_guidance_interval(0, None) and in_guidance_interval(999, None)


@pytest.mark.parametrize("method, outside", [("cfg", (FINETUNED, "c")), ("finextract", (FINETUNED, "c")),
                                             ("finextract_uncond", (FINETUNED, "u")), ("direct", (FINETUNED, "c"))])
def test_outside_the_interval_one_forward_of_the_finetuned_model(method, outside):
    step_method, requests = step_requests(method, "c", "u", guided=False)
    assert step_method == "direct" and [(r.model, r.cond) for r in requests] == [outside]
    _, inside = step_requests(method, "c", "u", guided=True)
    assert len(inside) == (1 if method == "direct" else 2)
    if method == "finextract":
        assert [(r.model, r.cond) for r in inside] == [(FINETUNED, "c"), (PRETRAINED, "u")]


def test_an_interval_outside_every_timestep_samples_exactly_like_direct(tiny_backbone, tmp_path):
    """Guidance restricted to timesteps that never occur is direct sampling; inside it, it is not."""
    from finextract.attack.model_pair import TwoUNetPair
    import copy

    finetuned = copy.deepcopy(tiny_backbone.unet)
    with torch.no_grad():
        for p in finetuned.parameters():
            p.add_(0.02 * torch.randn_like(p))
    pair = TwoUNetPair(tiny_backbone, finetuned)
    from finextract.attack.sampling import sample_batch

    direct = sample_batch(pair, "art style of test", [1, 2], "direct", 4, 1.0, 0.0)
    never = sample_batch(pair, "art style of test", [1, 2], "finextract", 4, 3.0, -0.02, interval=(1001, 1001))
    always = sample_batch(pair, "art style of test", [1, 2], "finextract", 4, 3.0, -0.02, interval=(0, 1000))
    plain = sample_batch(pair, "art style of test", [1, 2], "finextract", 4, 3.0, -0.02)
    np.testing.assert_array_equal(never, direct)
    np.testing.assert_array_equal(always, plain)
    assert np.abs(plain.astype(int) - direct.astype(int)).max() > 0


# --- w: auto -------------------------------------------------------------------------------
def _clustered(descriptors: np.ndarray, n0: int):
    descriptors = descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)
    similarity = descriptors @ descriptors.T
    return similarity, extract_clusters(similarity, n0, time_cap_s=5)


def test_w_auto_picks_the_w_whose_samples_are_n0_tight_distinct_groups():
    """Synthetic w' candidates with a known answer: too small a w' gives diffuse samples, the right one N0
    tight groups around N0 distinct images, too large a w' collapses them onto two modes."""
    rng = np.random.default_rng(0)
    n0, dim, n = 5, 64, 50
    modes = rng.normal(size=(n0, dim))
    diffuse = modes[rng.integers(0, n0, n)] * 0.3 + rng.normal(size=(n, dim))
    right = modes[np.arange(n) % n0] + 0.25 * rng.normal(size=(n, dim))
    collapsed = modes[np.arange(n) % 2] + 0.05 * rng.normal(size=(n, dim))
    scores = {}
    for w, descriptors in ((1.5, diffuse), (3.0, right), (7.0, collapsed)):
        similarity, result = _clustered(descriptors, n0)
        scores[w] = auto_w.separation(similarity, result)
    assert auto_w.choose_w(scores) == 3.0, scores


def test_choose_w_breaks_ties_towards_the_smaller_w():
    assert auto_w.choose_w({5.0: 0.4, 2.0: 0.4, 3.0: 0.1}) == 2.0
    with pytest.raises(ValueError):
        auto_w.choose_w({})


def test_singleton_cliques_count_as_no_cohesion():
    similarity = np.eye(3)
    _, result = _clustered(np.eye(3), 3)
    assert np.all(auto_w.clique_cohesion(similarity, result) == 0)
    assert auto_w.centre_overlap(similarity, result) == 0


# --- the ladder of fine-tuning snapshots ---------------------------------------------------
@pytest.mark.parametrize("method", ["dreambooth", "lora"])
def test_a_snapshot_equals_a_run_of_that_length(tmp_path, method):
    from conftest import make_tiny_backbone
    from finextract.training.finetune import finetune
    from finextract.training.snapshots import snapshot_name
    from finextract.workflow.attack_steps import finetune_config
    from safetensors.torch import load_file

    images = emoji_like_images(2)
    extra = {"rank": 2, "targets": ["to_q", "conv1"]} if method == "lora" else {}
    long = finetune_config(method=method, lr=1e-3, steps_per_image=3, seed=4, **extra)
    short = finetune_config(method=method, lr=1e-3, steps_per_image=1, seed=4, **extra)
    finetune(make_tiny_backbone(), images, "art style of test", long, tmp_path / "long", progress=False,
             snapshots=(1, 3))
    finetune(make_tiny_backbone(), images, "art style of test", short, tmp_path / "short", progress=False)
    weights = "unet/diffusion_pytorch_model.safetensors" if method == "dreambooth" else "lora.safetensors"
    snap = load_file(tmp_path / "long" / snapshot_name(1) / weights)
    ref = load_file(tmp_path / "short" / weights)
    assert snap.keys() == ref.keys()
    for key in ref:
        torch.testing.assert_close(snap[key], ref[key], rtol=0, atol=0)
    assert json.loads((tmp_path / "long" / snapshot_name(1) / "finetune.json").read_text())["steps_per_image"] == 1
    final = load_file(tmp_path / "long" / weights)
    assert any(not torch.equal(final[k], ref[k]) for k in ref)
    with pytest.raises(ValueError, match="snapshots"):
        finetune(make_tiny_backbone(), images, "c", short, tmp_path / "bad", progress=False, snapshots=(2,))


# --- the default-recipe rule ---------------------------------------------------------------
def test_default_rule_picks_the_strongest_rung_that_neither_memorises_nor_learns_nothing():
    rows = []
    for spi, as_, esr in ((10, 0.42, 0.0), (25, 0.52, 0.1), (60, 0.58, 0.3), (200, 0.75, 0.8)):
        for s in ("a", "b"):
            for seed in (0, 1):
                rows.append({"set": s, "ft": "dreambooth", "seed": seed, "steps_per_image": spi, "method": "direct",
                             "AS": as_, "A-ESR@0.6": esr})
    control = pd.DataFrame({"set": ["a", "b"], "AS": [0.40, 0.40]})
    out = default_strength(pd.DataFrame(rows), control, 0.3, 0.05).set_index("steps_per_image")
    assert list(out["qualifies"]) == [False, True, True, False]  # 10: +0.02 over control; 200: memorised
    assert out["chosen"].tolist() == [False, False, True, False]


# --- the study and w: auto through Snakemake, on the smoke config ---------------------------
SMOKE_VARIANTS = [
    {"method": "direct"},
    {"method": "cfg", "w": 3.0},
    {"method": "finextract", "w": [2.0, 3.0], "k": -0.02},
    {"method": "finextract", "w": 3.0, "k": -0.02, "interval": [300, 1000], "detail": True},
    {"method": "finextract_uncond", "w": [1.0, 3.0], "detail": True},
]


@pytest.mark.slow
def test_study_on_the_smoke_config_then_one_changed_w_reruns_only_its_jobs(tmp_path):
    from test_workflow import planned_jobs, smoke_config, snakemake

    config = smoke_config(tmp_path, **{"study.variants": SMOKE_VARIANTS})
    plan = planned_jobs(config, "study")
    # 1 set x DreamBooth x 2 seeds, 2 rungs each; seed 0: 7 variants, seed 1: 4 -> 22 samples (+ the control)
    assert plan["study_finetune"] == 2 and plan["study_sample"] == 22 and plan["study_point"] == 23
    assert "finetune" not in plan and "sample_shard" not in plan  # the default run's files are not touched
    snakemake("study", "--configfile", str(config))
    summary = tmp_path / "results" / "study" / "summary"
    table = pd.read_csv(summary / "study.csv")
    assert len(table) == 22 and set(table["steps_per_image"]) == {1, 2} and set(table["seed"]) == {0, 1}
    assert table["AS"].between(-1, 1).all() and table["separation"].notna().all()
    for name in ("regime.csv", "auto_w.csv", "default_rule.csv", "control.csv", "study.md"):
        assert (summary / name).stat().st_size > 0
    for name in ("as_vs_w.png", "strength.png"):
        assert (summary / name).read_bytes()[:4] == b"\x89PNG"
    regret = pd.read_csv(summary / "auto_w.csv")
    assert len(regret) == 4 and (regret["regret"] >= 0).all() and set(regret["auto_w"]) <= {2.0, 3.0}
    assert planned_jobs(config, "study") == {}

    # The default-recipe rule on its own reads the same direct points and controls: one job, the same table.
    assert planned_jobs(config, "default_recipe") == {"default_recipe": 1}
    snakemake("default_recipe", "--configfile", str(config))
    alone = tmp_path / "results" / "study" / "default_recipe"
    pd.testing.assert_frame_equal(pd.read_csv(alone / "default_rule.csv"), pd.read_csv(summary / "default_rule.csv"))
    assert "Control AS per set: wesnoth-drake" in (alone / "default_rule.md").read_text()

    # One w' changed (3 -> 4): its samples and scores for 2 seeds x 2 rungs, and the summary; nothing else.
    variants = [dict(v) for v in SMOKE_VARIANTS]
    variants[2]["w"] = [2.0, 4.0]
    plan = planned_jobs(smoke_config(tmp_path, **{"study.variants": variants}), "study")
    assert plan == {"study_sample": 4, "study_point": 4, "study": 1}


@pytest.mark.slow
def test_w_auto_samples_every_candidate_then_the_method_at_the_chosen_w(tmp_path):
    from test_workflow import planned_jobs, smoke_config, snakemake

    config = smoke_config(tmp_path, **{"sampling.methods.finextract.w": {"dreambooth": "auto", "lora": 5.0},
                                       "sampling.auto_w_candidates": [2.0, 3.0]})
    plan = planned_jobs(config)
    # DreamBooth finextract on 2 sets x 2 candidates x (2 + 1 shards); LoRA keeps its fixed w'
    assert plan["auto_w_sample"] == 6 and plan["auto_w_score"] == 4 and plan["auto_w_choice"] == 2
    results = tmp_path / "results"
    choice = results / "auto_w" / "wesnoth-drake" / "dreambooth" / "finextract" / "choice.json"
    snakemake(str(choice), "--configfile", str(config))
    chosen = json.loads(choice.read_text())
    assert chosen["w"] in (2.0, 3.0) and sorted(s["w"] for s in chosen["scores"]) == [2.0, 3.0]
    shard = results / "samples" / "wesnoth-drake" / "dreambooth" / "finextract" / "shard_000000-000009"
    printed = snakemake(str(shard), "--configfile", str(config), "-n", "-p").stdout
    assert f"--w @{choice}" in printed


def test_detail_tables_compare_k_and_interval_at_each_w_they_were_sampled_at():
    import pandas as pd

    from finextract.experiments.study_report import detail_tables

    cell = {"set": "a", "ft": "dreambooth", "steps_per_image": 10}
    rows = [{**cell, "seed": seed, "method": "finextract", "w": w, "k": -0.02, "interval": "0-1000", "AS": 0.5 - w / 20}
            for seed in (0, 1) for w in (1.25, 1.5, 3.0, 5.0)]
    rows += [{**cell, "seed": 0, "method": "finextract", "w": 1.5, "k": k, "interval": "0-1000", "AS": 0.4 + k}
             for k in (-0.05, 0.0, 0.02)]
    rows += [{**cell, "seed": 0, "method": "finextract", "w": 3.0, "k": -0.02, "interval": "300-1000", "AS": 0.35},
             {**cell, "seed": 0, "method": "finextract_uncond", "w": 1.0, "k": 0.0, "interval": "0-1000", "AS": 0.2}]
    tables = detail_tables(pd.DataFrame(rows))
    k = tables["k"].set_index("w")
    assert list(k.index) == [1.5]  # only w' sampled with several k; seed 1 (no detail) is left out
    assert k.loc[1.5, "AS k=-0.05"] == pytest.approx(0.35) and k.loc[1.5, "AS k=-0.02"] == pytest.approx(0.425)
    interval = tables["interval"].set_index("w")
    assert list(interval.index) == [3.0]
    assert interval.loc[3.0, "AS t∈[0-1000]"] == pytest.approx(0.35) and interval.loc[3.0, "AS t∈[300-1000]"] == 0.35
    assert tables["uncond"]["AS θ' unconditional (w'=1)"].tolist() == [0.2]
    assert detail_tables(pd.DataFrame(rows[:8])) == {}  # no detail variant sampled
