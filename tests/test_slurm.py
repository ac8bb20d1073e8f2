"""The smoke workflow on a real (single-node, loopback) SLURM cluster through workflow/profiles/slurm.

tests/slurm/cluster.sh brings the cluster up (installing slurmctld, slurmd, slurm-client and munge with
apt-get if needed); the `slurm_cluster` fixture (conftest.py) keeps it up until the test process ends.
The node has two *fake* GPUs (gres backed by /dev/null, /dev/zero), so rules asking `gpu=1` are really
scheduled against a GPU count while running on the CPU. Needs root and dpkg/apt-get; skipped otherwise,
or when FX_SKIP_SLURM=1.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SNAKEFILE
from test_workflow import smoke_config

pytestmark = pytest.mark.slurm

PROFILE = REPO / "workflow" / "profiles" / "slurm"
# Only the polling is tightened for the test; everything else comes from the profile as shipped.
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run_snakemake(*args: str, cwd: Path = REPO, timeout: int = 900) -> subprocess.CompletedProcess:
    """Snakemake with args; callers name the workflow's --directory, so each run has its own .snakemake/."""
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def workflow_in(directory: Path) -> list[str]:
    """Run the repository's workflow in directory (with cwd=directory too: sbatch -D takes Snakemake's start dir)."""
    return ["--snakefile", str(SNAKEFILE), "--directory", str(directory)]


def slurm_run_id(output: str) -> str:
    match = re.search(r"SLURM run ID: (\S+)", output)
    assert match, f"no 'SLURM run ID' in the Snakemake output:\n{output[-3000:]}"
    return match.group(1)


def slurm_jobs(run_id: str) -> list[dict[str, str]]:
    """The records slurmctld keeps of this run's jobs (job name = the plugin's run ID).

    There is no accounting database (sacct) on the test cluster; slurmctld keeps finished jobs for
    MinJobAge (3600 s, set by cluster.sh), and `scontrol show job` prints them, one per line with -o.
    """
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        if fields.get("JobName") == run_id:
            jobs.append(fields)
    return sorted(jobs, key=lambda job: int(job["JobId"]))


def rule_of(job: dict[str, str]) -> str:
    """The plugin's --comment is rule_<rule>[_wildcards_<w>] or, for a group job, rule_<group>..."""
    comment = job.get("Comment", "")
    return comment.removeprefix("rule_").split("_wildcards_")[0]


def asks_one_gpu(job: dict[str, str]) -> bool:
    """slurmctld's record of a job submitted with --gpus=1 (TresPerJob=gres:gpu:1; gres/gpu:1 from SLURM 23)."""
    return re.fullmatch(r"gres[:/]gpu:1", job.get("TresPerJob", "")) is not None


def compared_files(results: Path) -> list[Path]:
    """Outputs that must not depend on where a job ran: the generated images of every shard, the
    extracted images, and every metrics table (perf.csv and logs hold timings, so they are left out)."""
    patterns = ["samples/**/seed_*.png", "clusters/**/extracted/*.png", "clusters/**/assignments.csv",
                "metrics/**/*.csv", "summary/table1.csv", "summary/all_metrics.csv"]
    files = sorted({p.relative_to(results) for pattern in patterns for p in results.glob(pattern)})
    return files


# .test/config/config.yaml trimmed to fit the CI budget (every SLURM job costs a queue round trip and two
# Snakemake start-ups): one private set (wesnoth-drake, N0 = 5), LoRA only, every sampling method and the
# control row, and shards of 5 seeds, so each combination is sampled by two GPU jobs. 13 SLURM jobs.
# FX_SLURM_FULL_SMOKE=1 runs .test/config/config.yaml as it is (41 SLURM jobs).
TRIM = {
    "private_sets": {"wesnoth-drake": {"folder": "resources/datasets/wesnoth-drake"}},
    "finetune.dreambooth.enabled": False,
    "n_sweep.ft": ["lora"],  # an explicit n_sweep.ft must name an enabled method (config check)
    "sampling.shard_size": 5,
}


def content(results: Path, relative: Path) -> bytes:
    """A file's bytes; in CSV tables, the results folder's own path (they list image paths) is neutralised."""
    data = (results / relative).read_bytes()
    if relative.suffix == ".csv":
        data = data.replace(str(results).encode(), b"<results>")
    return data


def test_smoke_workflow_on_slurm_matches_a_local_run(slurm_cluster, tmp_path):
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    slurm_dir.mkdir()
    local_dir.mkdir()
    overrides = {} if os.environ.get("FX_SLURM_FULL_SMOKE") == "1" else TRIM
    slurm_config = smoke_config(slurm_dir, **overrides)
    local_config = smoke_config(local_dir, **overrides)

    # The plan under the SLURM profile: how many jobs of each rule to expect.
    plan = run_snakemake(*workflow_in(slurm_dir), "--workflow-profile", str(PROFILE), "--configfile",
                         str(slurm_config), "-n", cwd=slurm_dir)
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", plan.stdout + plan.stderr, flags=re.M))
    n_shards, n_finetune = int(planned["sample_shard"]), int(planned["finetune"])
    assert n_shards >= 2 and n_finetune >= 1

    started = time.time()
    run = run_snakemake(*workflow_in(slurm_dir), "--workflow-profile", str(PROFILE), "--configfile", str(slurm_config),
                        *FAST_POLLING, "--slurm-logdir", str(tmp_path / "slurm_logs"), cwd=slurm_dir)
    slurm_s = time.time() - started
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"SLURM run failed:\n{output[-8000:]}"
    print(f"SLURM run: {slurm_s:.0f} s")

    # Every non-local job went through SLURM and finished there; GPU rules asked for a GPU.
    jobs = slurm_jobs(slurm_run_id(output))
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in jobs:
        by_rule.setdefault(rule_of(job), []).append(job)
    assert {job["JobState"] for job in jobs} == {"COMPLETED"}, [(j["JobId"], j["JobState"]) for j in jobs]
    assert len(by_rule.get("sample_shard", [])) == n_shards, sorted(by_rule)
    assert len(by_rule.get("finetune", [])) == n_finetune, sorted(by_rule)
    for job in by_rule["sample_shard"] + by_rule["finetune"]:
        assert asks_one_gpu(job), job  # sbatch --gpus=1
    cpu_jobs = [job for rule, js in by_rule.items() if rule not in ("sample_shard", "finetune") for job in js]
    assert cpu_jobs and not any("gpu" in job.get("TresPerJob", "") for job in cpu_jobs)
    # embed_generated + cluster run as one group job per combination; the rest never reaches SLURM.
    groups = [job for job in cpu_jobs if rule_of(job).startswith("embed_cluster")]
    assert len(groups) == len(cpu_jobs) == int(planned["embed_generated"]), sorted(by_rule)

    # A plain local run of the same config gives the same bytes.
    started = time.time()
    local = run_snakemake(*workflow_in(local_dir), "--workflow-profile", "none", "--cores", "2", "--configfile",
                          str(local_config), cwd=local_dir)
    assert local.returncode == 0, f"local run failed:\n{(local.stdout + local.stderr)[-8000:]}"
    print(f"local run: {time.time() - started:.0f} s")

    slurm_results, local_results = slurm_dir / "results", local_dir / "results"
    files = compared_files(slurm_results)
    assert files == compared_files(local_results)
    shards = sorted(slurm_results.glob("samples/*/*/*/shard_*"))
    assert len(shards) == n_shards
    for shard in shards:  # every seed of every shard has its image
        first, last = (int(x) for x in shard.name.removeprefix("shard_").split("-"))
        assert len(list(shard.glob("seed_*.png"))) == last - first + 1, shard
    assert any(f.parts[0] == "metrics" for f in files)
    differ = [str(f) for f in files if content(slurm_results, f) != content(local_results, f)]
    assert not differ, f"differ between the SLURM and the local run: {differ}"
