"""Caption extraction from weights (the paper's App. A): the objective, the tower and the search."""
import copy

import pytest
import torch

from conftest import REPO, make_tiny_backbone
from finextract.experiments.caption_extraction import (caption_direction, content_words, cross_attention_weights, extract_caption,
                                 objective, rank_approximation, text_tower, word_recall)


def test_weights_of_the_caption_reading_layers_merge_lora_deltas():
    backbone = make_tiny_backbone()
    plain = cross_attention_weights(backbone.unet)
    assert plain and all(name.endswith(("attn2.to_k", "attn2.to_v")) for name in plain)
    from finextract.training.finetune import lora_config

    backbone.unet.add_adapter(lora_config(4, ["to_k", "to_v"]), adapter_name="finetuned")
    for name, module in backbone.unet.named_modules():
        if name.endswith("attn2.to_k"):
            torch.nn.init.normal_(module.lora_B["finetuned"].weight)
    merged = cross_attention_weights(backbone.unet)
    changed = [n for n in plain if not torch.allclose(plain[n], merged[n])]
    assert changed and all(n.endswith("to_k") for n in changed)  # to_v's B is still zero
    module = dict(backbone.unet.named_modules())[changed[0]]
    assert torch.allclose(merged[changed[0]], plain[changed[0]] + module.get_delta_weight("finetuned"))


def test_objective_vanishes_without_fine_tuning_and_the_rank_one_pca_is_exact_on_rank_one():
    u, v = torch.randn(20, 1), torch.randn(1, 8)
    assert torch.allclose(rank_approximation(u @ v), u @ v, atol=1e-5)
    weights = {"a.attn2.to_k": torch.randn(6, 8), "a.attn2.to_v": torch.randn(6, 8)}
    direction = caption_direction(weights, weights)
    assert torch.count_nonzero(direction) == 0
    assert objective(direction, torch.randn(2, 5, 8)).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="different cross-attention layers"):
        caption_direction(weights, {"b.attn2.to_k": torch.randn(6, 8)})


def test_pca_delta_recovers_a_rank_one_edit_and_objectives_are_checked():
    from conftest import SCHEMAS, load_test_config
    from finextract.workflow.config import ConfigError, validate_config

    before = {"a.attn2.to_k": torch.randn(6, 8), "a.attn2.to_v": torch.randn(6, 8)}
    u, v = torch.randn(12, 1), torch.randn(1, 8)
    after = {"a.attn2.to_k": before["a.attn2.to_k"] + u[:6] @ v, "a.attn2.to_v": before["a.attn2.to_v"] + u[6:] @ v}
    assert torch.allclose(caption_direction(before, after, objective="pca_delta"), u @ v, atol=1e-4)
    assert not torch.allclose(caption_direction(before, after, objective="eq19"), u @ v, atol=1e-2)
    with pytest.raises(ValueError, match="caption objective 'pca'"):
        caption_direction(before, after, objective="pca")
    config = load_test_config()
    config["caption_extraction"] = {"objective": "pca"}
    with pytest.raises(ConfigError, match=r"caption_extraction.objective: 'pca' is not one of"):
        validate_config(config, SCHEMAS)


def test_tiny_tower_matches_the_workflow_encoding_and_the_search_is_seeded():
    from finextract.backbones import text_encoder as text

    backbone = make_tiny_backbone()
    tower = text_tower(backbone)
    ids = torch.tensor([tower.tokenizer("art style of openmoji", add_special_tokens=False)["input_ids"]])
    assert torch.allclose(tower.encode(ids), text.encode_captions(["art style of openmoji"]), atol=1e-5)
    finetuned = copy.deepcopy(backbone.unet)
    with torch.no_grad():
        for name, module in finetuned.named_modules():
            if name.endswith(("attn2.to_k", "attn2.to_v")):
                module.weight.add_(0.05 * torch.randn_like(module.weight))
    direction = caption_direction(cross_attention_weights(backbone.unet), cross_attention_weights(finetuned))
    first = extract_caption(tower, direction, 3, iterations=8, seed=1)
    again = extract_caption(tower, direction, 3, iterations=8, seed=1)
    assert first == again and len(first.tokens) == 3 and first.score > 0
    start = extract_caption(tower, direction, 3, iterations=1, seed=1)  # the random starting prompt
    assert first.score >= start.score


def test_word_recall():
    assert content_words("art style of openmoji") == {"art", "style", "openmoji"}
    assert word_recall("stylized openmoji drawing", "art style of openmoji") == pytest.approx(1 / 3)
    assert word_recall("stylized openmoji drawing", "art style of openmoji", stem=4) == pytest.approx(2 / 3)


def test_the_caption_figure_draws_every_model(tmp_path):
    import pandas as pd

    from finextract.experiments.caption_report import plot_caption_scores

    rows = [{"set": s, "ft": ft, "kind": kind, "n_tokens": 3, "caption": "a b c", "F": f}
            for s in ("one", "two") for ft in ("dreambooth", "lora")
            for kind, f in (("extracted", 2.0), ("true caption", 1.0))]
    plot_caption_scores(pd.DataFrame(rows), tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000


@pytest.mark.slow
def test_extraction_finds_a_known_one_word_caption_among_the_top_seven_tokens(tmp_path):
    """The base model DreamBooth-fine-tuned on five images with the one-word caption "zebra" (a word the
    corpus never uses): the workflow's own commands, the default objective, the whole vocabulary scanned."""
    import json
    import subprocess
    import sys

    import pandas as pd

    from conftest import emoji_like_images, write_private_set

    write_private_set(tmp_path / "set", emoji_like_images(5), caption="zebra")
    # one thread: the suite's two workers share two cores, and the rank must not depend on the machine's count
    threads = "1"
    finextract = [sys.executable, "-m", "finextract"]
    hyper = {"lr": 2e-4, "steps_per_image": 20, "batch_size": 1, "seed": 0}
    base = str(REPO / "resources" / "base")
    load = ["--base", base, "--base-kind", "auto", "--precision", "auto", "--device", "cpu"]
    subprocess.run(finextract + ["finetune", *load, "--set-folder", str(tmp_path / "set"), "--method", "dreambooth",
                                 "--hyper", json.dumps(hyper), "--threads", threads, "--out", str(tmp_path / "ft")],
                   check=True, cwd=REPO)
    subprocess.run(finextract + ["extract-caption", *load, "--ft-dir", str(tmp_path / "ft"), "--ft-method", "dreambooth",
                                 "--set-folder", str(tmp_path / "set"), "--lengths", "1", "--iterations", "20",
                                 "--step", "0.05", "--seed", "0", "--rank", "1", "--objective", "pca_delta", "--scan-tokens", "--threads", threads,
                                 "--out", str(tmp_path / "captions")], check=True, cwd=REPO)
    ranks = pd.read_csv(tmp_path / "captions" / "true_tokens.csv")
    assert ranks["token"].tolist() == ["zebra"]
    assert int(ranks["rank"].iloc[0]) <= 7, ranks
    assert ranks["of"].iloc[0] > 30_000  # the whole vocabulary but its special tokens
