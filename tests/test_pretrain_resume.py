"""Pretraining is resumable: stopping after a checkpoint and resuming gives the weights of an uninterrupted run."""
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from finextract.world import pretrain as pretraining
from finextract.world.pretrain import PretrainConfig, pretrain


def broad_style_corpus(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    np.save(folder / "images.npy", rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8))
    rows = [{"image": i, "template": t, "caption": c}
            for i in range(6) for t, c in (("concept", f"thing {i}"), ("style", "art style of google"))]
    pd.DataFrame(rows).to_csv(folder / "captions.csv", index=False)


class Killed(Exception):
    pass


def small_config(steps: int) -> PretrainConfig:
    """A few steps of a small UNet on the band basis, checkpointed every second step."""
    return PretrainConfig(steps=steps, batch_size=4, lr=1e-3, seed=0, warmup=1, checkpoint_every=2,
                          block_out_channels=(16, 32, 32), layers_per_block=1, autocast="none",
                          channels_last=False, threads=1, band_basis=True)


def test_resumed_pretraining_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    broad_style_corpus(corpus)
    config = small_config(steps=5)
    pretrain(corpus, tmp_path / "straight", config, log=lambda m: None)

    save_state = pretraining._save_state

    def save_then_die(path, step, *args, **kwargs):
        save_state(path, step, *args, **kwargs)
        if step == 2:
            raise Killed  # the job is killed right after its first checkpoint

    monkeypatch.setattr(pretraining, "_save_state", save_then_die)
    with pytest.raises(Killed):
        pretrain(corpus, tmp_path / "resumed", config, log=lambda m: None)
    monkeypatch.setattr(pretraining, "_save_state", save_state)
    pretrain(corpus, tmp_path / "resumed", config, log=lambda m: None)
    straight = load_file(tmp_path / "straight" / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    losses = [pd.read_csv(tmp_path / run / "loss.csv")["loss"].tolist() for run in ("straight", "resumed")]
    assert losses[0] == losses[1] and len(losses[0]) == 5


def test_a_portable_state_resumes_from_its_step_with_its_weights(tmp_path):
    from finextract.world.pretrain import write_portable_state

    corpus = tmp_path / "corpus"
    broad_style_corpus(corpus)
    config = small_config(steps=2)
    pretrain(corpus, tmp_path / "run", config, log=lambda m: None)
    portable = tmp_path / "state.safetensors"
    assert write_portable_state(tmp_path / "run" / "state.pt", portable) == 2
    messages = []
    longer = PretrainConfig(**{**config.__dict__, "steps": 3, "init_from": str(portable)})
    pretrain(corpus, tmp_path / "continued", longer, log=messages.append)
    assert any("step 2" in m for m in messages)
    assert pd.read_csv(tmp_path / "continued" / "loss.csv")["step"].tolist() == [2]
    with pytest.raises(ValueError, match="band-basis"):
        pretrain(corpus, tmp_path / "wrong", PretrainConfig(**{**longer.__dict__, "band_basis": False}),
                 log=lambda m: None)


    # the state's EMA as a model folder (a committed step whose run folder is gone): the run's model in bf16
    import json

    from finextract.attack.load_models import load_base
    from finextract.world.pretrain import model_from_portable_state

    assert model_from_portable_state(portable, corpus, tmp_path / "from-state") == 2
    weights = "unet/diffusion_pytorch_model.safetensors"
    run_model, rebuilt = load_file(tmp_path / "run" / "model" / weights), load_file(tmp_path / "from-state" / weights)
    assert run_model.keys() == rebuilt.keys()
    assert all(torch.equal(rebuilt[k], run_model[k].to(torch.bfloat16).float()) for k in run_model)
    meta = [json.loads((tmp_path / f / "finextract.json").read_text()) for f in ("run/model", "from-state")]
    assert meta[0] == meta[1] and (tmp_path / "from-state" / "training_step.txt").read_text().strip() == "2"
    load_base(str(tmp_path / "from-state"))


def test_exported_history_keeps_the_committed_rows_before_a_run_resumed_from_them(tmp_path):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("export", REPO / "scripts" / "export_pretrain_state.py")
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    header = "step,loss,lr,seconds"
    committed = tmp_path / "committed.csv"
    committed.write_text("\n".join([header, "0,0.3,1e-5,1.0", "1,0.2,2e-5,2.0", "2,0.1,3e-5,3.0"]) + "\n")
    resumed = tmp_path / "resumed.csv"  # resumed from the state at step 2: its own rows only
    resumed.write_text("\n".join([header, "2,0.15,1e-6,0.5", "3,0.12,2e-6,1.0"]) + "\n")
    assert export.merge_loss(committed, resumed).splitlines() == [
        header, "0,0.3,1e-5,1.0", "1,0.2,2e-5,2.0", "2,0.15,1e-6,0.5", "3,0.12,2e-6,1.0"]
    # a run that kept its whole history (resumed from its own state.pt) is written as it is
    assert export.merge_loss(committed, committed) == committed.read_text()
    assert export.merge_loss(tmp_path / "none.csv", resumed) == resumed.read_text()
