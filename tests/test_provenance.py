"""Provenance through Snakemake (issue 23): each edit of an input plans exactly the jobs that read it.

One small real run (one private set, LoRA only, direct sampling plus the control row) in folders whose
names hold a space, brackets, `*` and `?`; then each edit — the caption, θ's weights, a private image
replaced by an older-dated one — and a dry run that must plan the jobs downstream of that input and
nothing else. Each edit is undone, mtimes included, before the next.
"""
from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import REPO, load_test_config
from test_workflow import planned_jobs, snakemake

# What reruns when an input of the fine-tuning changes, per rule; the private embedding is not among them.
AFTER_FINETUNE = {"finetune": 1, "sample_shard": 2, "embed_generated": 2, "cluster": 2, "score": 2,
                  "summary": 1, "extracted_grid": 1, "all": 1}
# A private image: fine-tuning and the private set's descriptors; the control row samples θ alone.
AFTER_IMAGES = {"finetune": 1, "embed_private": 1, "sample_shard": 1, "embed_generated": 1, "cluster": 1,
                "score": 2, "summary": 1, "extracted_grid": 1, "all": 1}


def small_config(root: Path, **extra) -> dict:
    config = load_test_config()
    config.pop("audit")
    config.update(base_model=str(root / "base model [θ]"), results=str(root / "res ults"))
    config["private_sets"] = {"drake": {"folder": str(root / "my set [1] *?")}}
    config["finetune"] = {"dreambooth": {"lr": 1e-4, "enabled": False},
                          "lora": {"lr": 1e-3, "rank": 4, "steps_per_image": 1, "seed": 0}}
    config["sampling"].update(n_per_image=1, steps=2, shard_size=5, methods={"direct": {}}, control=True)
    config["n_sweep"] = {"n_per_image": [1], "ft": ["lora"], "methods": ["direct"]}
    for paper_experiment in ("study", "defences"):
        config.pop(paper_experiment)
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The small run, done once: (root, configfile)."""
    root = tmp_path_factory.mktemp("prov")
    shutil.copytree(REPO / "resources" / "base", root / "base model [θ]")
    shutil.copytree(REPO / "resources" / "datasets" / "wesnoth-drake", root / "my set [1] *?")
    (root / "my set [1] *?" / "caption.txt").write_text("@notes.txt\n")  # a caption, not a file reference
    (root / "notes.txt").write_text("the text of a user's file\n")
    for piece in ("ults", "res"):  # what an unquoted `tee {log}` would overwrite
        (root / piece).write_text("a user's file\n")
    configfile = root / "config.yaml"
    configfile.write_text(yaml.safe_dump(small_config(root), allow_unicode=True))
    snakemake("--configfile", str(configfile), "--cores", "1")
    return root, configfile


def edited(path: Path, data: bytes):
    """Write data to path, keeping its mtime (as `cp -p` or `rsync -a` would); returns the undo."""
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    def undo():
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return undo


def assert_edit_plans(configfile: Path, undo, expected: dict[str, int]) -> None:
    """With the edit in place the dry run plans ``expected``; undone (mtime included), nothing."""
    try:
        assert planned_jobs(configfile) == expected
    finally:
        undo()
    assert planned_jobs(configfile) == {}


@pytest.mark.slow
def test_the_run_with_odd_paths_is_up_to_date_and_clobbers_nothing(world):
    root, configfile = world
    assert planned_jobs(configfile) == {}
    for piece in ("ults", "res"):
        assert (root / piece).read_text() == "a user's file\n"
    log = (root / "res ults" / "logs" / "samples" / "drake" / "lora" / "direct" / "000000-000004.log").read_text()
    assert "caption: '@notes.txt'" in log  # the caption as written, not the text of ./notes.txt
    assert len(list((root / "res ults" / "clusters" / "drake" / "lora" / "direct" / "extracted").iterdir())) == 5


@pytest.mark.slow
def test_editing_caption_txt_reruns_fine_tuning_and_sampling(world):
    root, configfile = world
    caption = root / "my set [1] *?" / "caption.txt"
    # and a caption starting with -: text, not a flag
    assert_edit_plans(configfile, edited(caption, b"-a red drake burner\n"), AFTER_FINETUNE)


@pytest.mark.slow
def test_new_base_weights_at_the_same_path_rerun_what_used_them(world):
    root, configfile = world
    weights = root / "base model [θ]" / "unet" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of the last tensor; the header (and the size) unchanged
    assert_edit_plans(configfile, edited(weights, bytes(data)), AFTER_FINETUNE)


@pytest.mark.slow
def test_a_private_image_replaced_by_an_older_one_reruns(world):
    root, configfile = world
    images = sorted((root / "my set [1] *?" / "images").iterdir())
    assert_edit_plans(configfile, edited(images[0], images[1].read_bytes()), AFTER_IMAGES)


@pytest.mark.slow
def test_a_truncated_checkpoint_names_the_rule_to_rerun(world):
    root, configfile = world
    lora = root / "res ults" / "finetune" / "drake" / "lora" / "lora.safetensors"
    # Only the LoRA's own shard: forcing every sample_shard would also rewrite the control row's shard (which
    # does not read the LoRA) whenever it ran first or beside the failing job, and the module's later tests
    # share this run.
    shard = str(root / "res ults" / "samples" / "drake" / "lora" / "direct" / "shard_000000-000004")
    undo = edited(lora, lora.read_bytes()[:-100])
    try:
        result = snakemake(shard, "--configfile", str(configfile), "--cores", "1", "--forcerun", shard,
                           check=False)
        assert result.returncode != 0
        log = (root / "res ults" / "logs" / "samples" / "drake" / "lora" / "direct" / "000000-000004.log").read_text()
        assert "is damaged or changed since fine-tuning" in log and "rerun the rule that wrote it (finetune)" in log
        assert "Traceback" not in log
    finally:
        undo()
    assert planned_jobs(configfile) == {}  # the failed job left the finished run as it was


def test_unknown_lora_targets_fail_before_any_job(tmp_path):
    config = small_config(tmp_path)
    config.update(base_model=str(REPO / "resources" / "base"), results=str(tmp_path / "results"))
    config["private_sets"] = {"drake": {"folder": str(REPO / "resources" / "datasets" / "wesnoth-drake")}}
    config["finetune"]["lora"]["targets"] = ["to_q", "to_kk", "conv_9"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(tmp_path / "config.yaml"), check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "finetune.lora.targets: 'to_kk', 'conv_9' match no module of the base UNet" in output
    assert "Traceback" not in output


def test_shell_commands_keep_every_path_and_caption_one_word(tmp_path):
    """Every job of every target, printed by a dry run: the results folder with a space, the set folder and
    a caption starting with - and @ each reach the command as one argument."""
    folder = tmp_path / "my set [1]"
    shutil.copytree(REPO / "resources" / "datasets" / "wesnoth-drake", folder)
    config = small_config(tmp_path)
    config.update(base_model=str(REPO / "resources" / "base"), results=str(tmp_path / "res ults"))
    smoke = load_test_config()
    config["finetune"], config["sampling"]["methods"] = smoke["finetune"], smoke["sampling"]["methods"]
    config["n_sweep"]["methods"] = ["finextract"]
    config["study"], config["defences"] = {**smoke["study"], "sets": ["drake"]}, smoke["defences"]
    config["private_sets"] = {"drake": {"folder": str(folder), "caption": "-@notes.txt --w 9"}}
    config["audit"] = {"control_draws": 2, "suspects": {"s": {"target": "drake", "candidates": str(
        REPO / "resources" / "audit" / "wesnoth-drake")}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = snakemake("all", "n_sweep", "audit", "defences", "captions", "study", "-n", "-p",
                    "--configfile", str(tmp_path / "config.yaml")).stdout
    commands = [line.split("Shell command:", 1)[1].strip() for line in out.splitlines() if "Shell command:" in line]
    assert len(commands) > 30
    results = str(tmp_path / "res ults")
    for command in commands:
        words = shlex.split(command.replace("(", " ").replace(")", " "))
        for word in words:
            assert word == results or not word.startswith(str(tmp_path)) or word.startswith(results + "/") \
                or word.startswith(str(folder)), (word, command)
        assert "ults" not in words, command
        if "--caption" in command:
            assert "--caption=-@notes.txt --w 9" in words or "--caption-file" in words, command


def planned_with(configfile: Path, *extra: str) -> dict[str, int]:
    """Job counts per rule of a dry run with extra arguments (e.g. --forcerun RULE ...)."""
    out = snakemake("-n", "--quiet", "rules", *extra, "--configfile", str(configfile)).stdout
    return {p[0]: int(p[1]) for p in (line.split() for line in out.splitlines())
            if len(p) == 2 and p[1].isdigit() and p[0] not in ("job", "total")}


# Which rules read each input directly; everything downstream of them must rerun, and nothing else.
READERS = {"caption": ["finetune", "sample_shard"], "theta": ["finetune", "sample_shard"],
           "image": ["finetune", "embed_private"], "sampling.steps": ["sample_shard"],
           "finetune.lora.lr": ["finetune"], "metrics.taus": ["score"],
           "sscd.batch_size": ["embed_generated", "embed_private"], "clustering.time_cap_s": ["cluster"]}


@pytest.mark.slow
def test_random_edits_plan_exactly_the_jobs_downstream(world):
    """A random valid edit of each kind (the caption, θ's weights, an image, a key): the dry run plans what
    `--forcerun` of the rules that read that input plans — its downstream closure in the DAG — and no more."""
    import random

    root, configfile = world
    rng = random.Random(23)
    folder = root / "my set [1] *?"
    for kind in ("caption", "theta", "image", *rng.sample(sorted(k for k in READERS if "." in k), 2)):
        expected = planned_with(configfile, "--forcerun", *READERS[kind])
        undo, edited_config = (lambda: None), configfile
        if kind == "caption":
            words = ["a", "drake", "burner", "red", "@x", "-y", "[1]", "θ'"]
            undo = edited(folder / "caption.txt", " ".join(rng.sample(words, 4)).encode())
        elif kind == "theta":
            weights = root / "base model [θ]" / "unet" / "diffusion_pytorch_model.safetensors"
            data = bytearray(weights.read_bytes())
            data[rng.randrange(len(data) - 4096, len(data))] ^= 1 << rng.randrange(8)
            undo = edited(weights, bytes(data))
        elif kind == "image":
            images = sorted((folder / "images").iterdir())
            victim, donor = rng.sample(images, 2)
            undo = edited(victim, donor.read_bytes())
        else:
            config = yaml.safe_load(configfile.read_text())
            section, key = kind.split(".")
            value = {"sampling.steps": rng.randint(3, 9), "finetune.lora.lr": rng.choice([2e-3, 5e-4]),
                     "metrics.taus": [round(rng.uniform(0.5, 0.9), 2)], "sscd.batch_size": rng.randint(2, 16),
                     "clustering.time_cap_s": rng.randint(31, 60)}[kind]
            node = config[section]["lora"] if section == "finetune" else config.setdefault(section, {})
            node[key] = value
            edited_config = root / "edited.yaml"
            edited_config.write_text(yaml.safe_dump(config, allow_unicode=True))
        try:
            assert planned_jobs(edited_config) == expected, kind
        finally:
            undo()
    assert planned_jobs(configfile) == {}  # every edit undone, mtimes included: nothing to do


# --- the same, function by function (fast) ---------------------------------------------------------
def test_captions_are_data_on_the_command_line(tmp_path, monkeypatch):
    from finextract.workflow.cli import build_parser
    from finextract.workflow.commands.options import _caption_from

    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("the text of a user's file\n")
    common = ["sample", "--base", "b", "--base-kind", "auto", "--precision", "auto", "--device", "cpu",
              "--ft-method", "none", "--method", "direct", "--w", "1", "--k", "0", "--scheduler", "ddim",
              "--steps", "1", "--guidance-interval", "0", "1000", "--seeds", "000000-000001", "--batch-size", "1",
              "--threads", "1", "--out", "o"]
    for caption in ("@notes.txt", "-a drake", "--w 9"):
        assert _caption_from(build_parser().parse_args([*common, f"--caption={caption}"])) == caption
    (tmp_path / "caption.txt").write_text("a drake burner\n")
    assert _caption_from(build_parser().parse_args([*common, "--caption-file", "caption.txt"])) == "a drake burner"


def test_set_folders_are_listed_not_globbed(tmp_path):
    from conftest import emoji_like_images, write_private_set
    from finextract.private_set import image_files
    from finextract.workflow.provenance import image_set_digest

    folder = write_private_set(tmp_path / "set [1] *?", emoji_like_images(2))
    assert [p.name for p in image_files(folder)] == ["img_00.png", "img_01.png"]
    before = image_set_digest(folder)
    Image.fromarray(emoji_like_images(1, seed=9)[0]).save(folder / "images" / "img_01.png")
    assert image_set_digest(folder) != before


def test_a_damaged_checkpoint_without_checksums_is_named(tmp_path):
    """Folders fine-tuned before checksums.json existed: each .safetensors must be as long as its header says."""
    from safetensors.torch import save_file

    from finextract.workflow.provenance import CheckpointError, verify_checkpoint

    folder = tmp_path / "results" / "finetune" / "s" / "lora"
    folder.mkdir(parents=True)
    import torch

    save_file({"a.lora_A.weight": torch.zeros(4, 4)}, str(folder / "lora.safetensors"))
    verify_checkpoint(folder)
    data = (folder / "lora.safetensors").read_bytes()
    (folder / "lora.safetensors").write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match=r"lora.safetensors: \d+ bytes where its header says \d+"):
        verify_checkpoint(folder)
    (folder / "lora.safetensors").write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=r"shorter than a safetensors header.*\(finetune\)"):
        verify_checkpoint(folder)
