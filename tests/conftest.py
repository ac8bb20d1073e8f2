import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from finextract.world.synthetic import coloured_discs

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "workflow" / "Snakefile"
SCHEMAS = REPO / "workflow" / "schemas"
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"  # paths in it are relative to .test/
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Stages set torch's thread count for their process; in the one pytest process that would leak into
    later tests, and float results depend on it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Tiny models on a busy 2-core machine: one thread is many times faster than two fighting for cores
    (``_restore_torch_threads`` puts the count back after the test)."""
    torch.set_num_threads(1)


def snakemake_cmd(directory: Path) -> list[str]:
    """Snakemake on the repository's workflow, run in its own working directory (own .snakemake/, own lock)."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(directory)]


PATH_KEYS = ("base_model", "sscd.calibration")


def absolute_paths(config: dict, root: Path) -> dict:
    """The config's file paths (base model, private set, audit candidate and reference folders, SSCD calibration)
    made absolute from root."""
    def fix(value):
        return str((root / value).resolve()) if isinstance(value, str) and value and not Path(value).is_absolute() \
            and (root / value).exists() else value

    for key in PATH_KEYS:
        *parents, last = key.split(".")
        node = config
        for parent in parents:
            node = node.get(parent, {})
        if last in node:
            node[last] = fix(node[last])
    for spec in config.get("private_sets", {}).values():
        spec["folder"] = fix(spec["folder"])
    for spec in (config.get("audit") or {}).get("suspects", {}).values():
        spec["candidates"] = fix(spec["candidates"])
        if "reference" in spec:
            spec["reference"] = fix(spec["reference"])
    return config


def load_test_config() -> dict:
    """.test/config/config.yaml with absolute paths, to run from any working directory."""
    return absolute_paths(yaml.safe_load(TEST_CONFIG.read_text()), TEST_CONFIG.parent.parent)


def make_tiny_backbone(channels=(16, 32, 32), seed=0, prediction_type="v_prediction"):
    """A randomly initialised tiny-world backbone (same code path as resources/base)."""
    from finextract.backbones.tiny import DEFAULT_SCHEDULER, TinyPixelBackbone, build_unet

    torch.manual_seed(seed)
    unet = build_unet(resolution=32, block_out_channels=channels, norm_num_groups=8).eval()
    return TinyPixelBackbone(unet, dict(DEFAULT_SCHEDULER, prediction_type=prediction_type), resolution=32)


@pytest.fixture
def tiny_backbone():
    return make_tiny_backbone()


def emoji_like_images(n, size=32, seed=0):
    """Coloured discs on white: distinct, easy to tell apart at 32 px."""
    return coloured_discs(n, size, seed)


def write_private_set(folder: Path, images: np.ndarray, caption="art style of test"):
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / "images" / f"img_{i:02d}.png")
    (folder / "caption.txt").write_text(caption + "\n")
    return folder


def pytest_collection_modifyitems(config, items):
    """Run the real-SLURM tests last.

    Once SLURM is installed (they install it), every Snakemake start imports the SLURM executor
    plugin, which asks `scontrol show config` with a 10 s timeout; with the test daemons torn down
    that call hangs, adding 10 s to each local workflow test that would come after them.
    """
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)
