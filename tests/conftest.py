import fcntl
import os
import shutil
import subprocess
import sys
import time
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
# scripts/test.sh runs two workers on the two cores: each worker's torch takes its share. Two threads per
# worker, beside the other worker's, fight for the cores (torch's threads spin while they wait).
TEST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // TEST_WORKERS)))


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


SLURM_LOCK = Path("/tmp/finextract-slurm-test.lock")
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"


def cannot_run_slurm() -> str | None:
    """Why the real-SLURM tests cannot run here, or None."""
    if os.environ.get("FX_SKIP_SLURM") == "1":
        return "FX_SKIP_SLURM=1"
    if not sys.platform.startswith("linux"):
        return "the SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root (it installs packages and starts slurmctld/slurmd/munged)"
    if shutil.which("dpkg") is None or shutil.which("apt-get") is None:
        return "the SLURM test cluster needs a Debian-like system (dpkg and apt-get)"
    return None


def slurm_cluster_sh(action: str, check: bool = True) -> subprocess.CompletedProcess:
    """tests/slurm/cluster.sh up|down|status."""
    result = subprocess.run(["bash", str(CLUSTER_SH), action], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=600)
    if check and result.returncode != 0:
        pytest.fail(f"tests/slurm/cluster.sh {action} failed (exit {result.returncode}):\n"
                    f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM cluster, kept up until this test process ends.

    Kept up, not stopped after each test file: once SLURM is installed, every Snakemake start (any test's)
    imports the SLURM executor plugin, which asks `scontrol show config`; with no controller answering,
    that call waits 9 s. The cluster is machine-wide: every process using it holds a shared lock, and the
    process that started it stops it only once no other process holds the lock."""
    reason = cannot_run_slurm()
    if reason:
        pytest.skip(reason)
    with open(SLURM_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process at a time installs and starts it
        started_here = "slurmctld: running" not in slurm_cluster_sh("status", check=False).stdout
        try:
            if started_here:
                started = time.time()
                print(slurm_cluster_sh("up").stdout)
                print(f"cluster up in {time.time() - started:.0f} s")
            fcntl.flock(lock, fcntl.LOCK_SH)
            yield
        finally:
            if started_here:
                fcntl.flock(lock, fcntl.LOCK_EX)  # waits for the other processes using it
                print(slurm_cluster_sh("down", check=False).stdout)


def pytest_collection_modifyitems(config, items):
    """The smoke run's file first, then the other files holding end-to-end tests (marked slow or slurm), then
    the rest, each in its usual order.

    The suite runs on two workers that each take whole files (`--dist loadfile`), handed out in this order;
    a long file handed out last runs on alone while the other worker sits idle. `test_workflow.py` (the smoke
    run and every stage and rerun that builds on it) is the longest by far."""
    end_to_end = {item.path for item in items if item.get_closest_marker("slow") or item.get_closest_marker("slurm")}
    items.sort(key=lambda item: (item.path.name != "test_workflow.py", item.path not in end_to_end))
