"""Issue 23, "checked too late or said unclearly": each input mistake is found before the first job and
named by its key or file; degenerate inputs get a note. docs/reliability.md lists each with this file."""
import pytest
from PIL import Image

from conftest import SCHEMAS, emoji_like_images, load_test_config, write_private_set
from finextract.workflow.config import ConfigError, validate_config
from finextract.private_set import load_private_set


def check_config(config):
    return validate_config(config, SCHEMAS)


# --- issue 23: checked before the first job, naming the key --------------------------------------
def own_set(folder, **sections):
    """The smoke config on one private set `mine` (the audit and the study name the smoke sets: left out)."""
    config = load_test_config()
    config.pop("audit")
    config.pop("study")
    config["private_sets"] = {"mine": {"folder": str(folder)}}
    config.update(sections)
    return config


@pytest.fixture
def folder(tmp_path):
    return write_private_set(tmp_path / "set", emoji_like_images(3))


def fails(config, *patterns):
    with pytest.raises(ConfigError) as info:
        check_config(config)
    for pattern in patterns:
        assert pattern in str(info.value), str(info.value)
    return str(info.value)


def test_reversed_guidance_interval(folder):
    config = own_set(folder)
    config["sampling"]["guidance_interval"] = [1000, 0]
    fails(config, "sampling.guidance_interval: [1000, 0]: the first timestep must not exceed the second")
    config = own_set(folder, study={**load_test_config()["study"], "sets": ["mine"]})
    config["study"]["variants"][3]["interval"] = [1000, 300]
    fails(config, "study.variants.3.interval: [1000, 300]")


def test_calibration_that_disagrees_or_is_not_one(folder, tmp_path):
    config = own_set(folder)
    config["sscd"]["resolution"] = 256
    fails(config, "sscd.resolution: 256, but the calibration", "was fitted at 224")
    config = own_set(folder)
    config["sscd"]["prefilter_sigma"] = 2.0
    fails(config, "sscd.prefilter_sigma: 2.0, but the calibration")
    config = own_set(folder)
    config["sscd"]["model"] = "int8"
    fails(config, "sscd.model: int8, but the calibration", "was fitted for")
    (tmp_path / "calibration.json").write_text("{}")
    config = own_set(folder)
    config["sscd"]["calibration"] = str(tmp_path / "calibration.json")
    fails(config, "sscd.calibration:", "is not an SSCD calibration file")


def test_base_kind_that_is_not_the_base(folder):
    fails(own_set(folder, base_kind="sdxl"), "base_kind: sdxl, but base_model", "is a tiny-world model")


@pytest.mark.parametrize("name", [2024, 1.5, False, None])
def test_set_names_yaml_reads_as_numbers_or_booleans(folder, name):
    config = own_set(folder)
    config["private_sets"] = {name: {"folder": str(folder)}}
    fails(config, f"private_sets: the key {name!r} is a", "quote it")


def test_study_and_sweep_that_select_nothing(folder):
    fails(own_set(folder, study={**load_test_config()["study"], "sets": ["nope"]}),
          "study.sets: nope not in private_sets (mine)")
    fails(own_set(folder, n_sweep={"n_per_image": [1], "ft": ["dreambooth"], "methods": ["finextract_uncond"]}),
          "n_sweep.methods: finextract_uncond not in sampling.methods")
    config = own_set(folder, n_sweep={"n_per_image": [1], "ft": ["dreambooth"], "methods": ["direct"]})
    config["finetune"]["dreambooth"]["enabled"] = False
    fails(config, "n_sweep.ft: dreambooth is not enabled")


def test_tilde_is_expanded_for_every_path(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    config = own_set("~/set", base_model=load_test_config()["base_model"])
    targets = check_config(config)
    assert targets["mine"].images == str(folder) and targets["mine"].n0 == 3


def test_paths_that_are_files_say_so(tmp_path):
    (tmp_path / "set.txt").write_text("x")
    fails(own_set(tmp_path / "set.txt"), "set.txt is a file; expected a folder holding images/")


def test_caption_txt_that_is_a_folder_or_not_utf8(folder):
    (folder / "caption.txt").unlink()
    (folder / "caption.txt").mkdir()
    fails(own_set(folder), "private_sets.mine:", "caption.txt is a folder; expected a text file")
    (folder / "caption.txt").rmdir()
    (folder / "caption.txt").write_bytes("a drake br\xfbler".encode("latin-1"))
    fails(own_set(folder), "private_sets.mine:", "caption.txt: not UTF-8 text")


def test_degenerate_images_get_notes_before_the_first_job(tmp_path, capsys):
    import numpy as np

    folder = write_private_set(tmp_path / "set", emoji_like_images(2))
    Image.new("RGB", (1, 1), "red").save(folder / "images" / "dot.png")
    Image.fromarray(np.zeros((10, 3840, 3), np.uint8)).save(folder / "images" / "strip.png")
    (folder / "images" / "copy.png").write_bytes((folder / "images" / "img_00.png").read_bytes())
    photo = Image.fromarray(emoji_like_images(1, size=48, seed=3)[0][:, :32])  # 32 wide, 48 high
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    photo.save(folder / "images" / "phone.jpg", exif=exif)
    check_config(own_set(folder))
    err = capsys.readouterr().err
    assert "dot.png is 1x1 px" in err
    assert "strip.png is 3840x10" in err and "keeps the middle" in err
    assert "phone.jpg is rotated by its EXIF orientation" in err
    assert "identical images: copy.png, img_00.png" in err
    assert "images of mixed sizes" in err  # was filtered out with the routine "resized" note
    private = load_private_set("x", folder, 32)
    phone = private.images[[p.name for p in private.files].index("phone.jpg")]
    upright = np.asarray(Image.open(folder / "images" / "phone.jpg").transpose(Image.Transpose.ROTATE_270))
    assert upright.shape[1] > upright.shape[0]  # shown 48 wide: the crop keeps the viewer's orientation
    assert phone.shape == (32, 32, 3)


def test_a_run_of_more_than_1e5_images_is_noted(folder, capsys):
    config = own_set(folder)
    config["sampling"]["n_per_image"] = 100_000
    check_config(config)
    assert "sampling plans 2,100,000 images in 210,000 sampling jobs" in capsys.readouterr().err  # 3 x 1e5 x 7


def test_taus_that_print_alike_are_one_column(folder):
    config = own_set(folder)
    config["metrics"] = {"taus": [0.6, 0.60000001]}
    fails(config, "metrics.taus: 0.6 and 0.60000001 are the same column A-ESR@0.6")


@pytest.mark.parametrize("content, expected", [
    (None, "pairs.csv: no such file"),
    ("", "pairs.csv: empty"),
    ("x,y\n1,2\n", "expected columns a,b"),
    ("a,b\nimg.png\n", "row 1: no image in column b"),
])
def test_similarity_pairs_errors_name_the_file(tmp_path, capsys, content, expected):
    from finextract.workflow.cli import main

    if content is not None:
        (tmp_path / "pairs.csv").write_text(content)
    with pytest.raises(SystemExit) as info:
        main(["similarity", "--pairs", str(tmp_path / "pairs.csv")])
    assert expected in str(info.value)


def test_similarity_given_a_folder_says_so(tmp_path):
    from finextract.workflow.cli import main

    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(SystemExit, match="is a folder; expected an image file"):
        main(["similarity", str(tmp_path / "a.png"), str(tmp_path)])


def test_a_missing_relative_base_taken_for_a_hub_id_is_noted(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    from finextract.workflow import model_checks

    model_checks.check_base_model("models/base", "base_model")
    assert f"base_model: models/base is no path under the working directory {tmp_path}" in capsys.readouterr().err


def test_similarity_reads_its_config_strictly(tmp_path):
    from finextract.workflow.cli import main

    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "config.yaml").write_text("sscd: {calibration: null}\nsscd: {}\n")
    with pytest.raises(SystemExit, match=r"config.yaml:2:1: duplicated key 'sscd'"):
        main(["similarity", str(tmp_path / "a.png"), str(tmp_path / "a.png"), "--config", str(tmp_path / "config.yaml")])


def test_an_audit_that_cannot_reach_p_005_says_so(tmp_path, capsys):
    """1 control draw x 2 candidates: the smallest empirical p is 1 / 3."""
    candidates = write_private_set(tmp_path / "candidates", emoji_like_images(2))
    (candidates / "caption.txt").unlink()
    config = load_test_config()
    config.pop("study")
    config["audit"] = {"control_draws": 1, "suspects": {"s": {"target": "wesnoth-drake",
                                                              "candidates": str(candidates / "images")}}}
    check_config(config)
    assert "audit.suspects.s: no p-value of this audit can be below 0.333" in capsys.readouterr().err


def test_a_number_given_as_text_says_why(folder):
    config = own_set(folder)
    config["sampling"]["steps"] = "3"  # what a nested `--config 'sampling={steps: 3}'` passes
    fails(config, "sampling.steps: '3' is not of type 'integer' (a number in quotes; inside a nested `--config`")


def test_an_audit_candidate_folder_that_is_a_file_says_so(tmp_path):
    (tmp_path / "candidates.zip").write_bytes(b"PK")
    config = load_test_config()
    config.pop("study")
    config["audit"]["suspects"]["wesnoth"]["candidates"] = str(tmp_path / "candidates.zip")
    fails(config, "audit.suspects.wesnoth.candidates:", "candidates.zip is a file; expected a folder of images")
