"""Crash safety: a sampling run killed with SIGKILL midway resumes without redoing finished work, and
leaves no truncated image behind; under the SLURM profile a failed job is retried, then reported."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO, snakemake_cmd
from test_slurm import FAST_POLLING, PROFILE, rule_of, run_snakemake, slurm_jobs, slurm_run_id
from test_workflow import smoke_config

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
SET = "wesnoth-drake"  # 5 private images


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start cmd in its own process group, so that one killpg reaches it and every child."""
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 240.0) -> None:
    """SIGKILL proc's whole process group as soon as ready() is true."""
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"finished (exit {proc.returncode}) before the kill point:\n{log.read_text()[-3000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"kill point not reached within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    for _ in range(100):  # the job's own processes die with the group
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail("processes of the killed group are still alive")


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("seed_*.png"))


def assert_complete_pngs(folder: Path) -> None:
    for path in pngs(folder):
        with Image.open(path) as image:
            image.load()  # raises on a truncated file
            assert image.size == (32, 32), path


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in pngs(folder)}


@pytest.mark.slow
def test_killed_workflow_resumes_and_keeps_finished_shards(tmp_path):
    # The control row only (base model, no fine-tuning): 2 shards of 10 seeds, sampled one image at a
    # time with 30 steps so that a shard takes seconds and the kill lands inside one.
    config = smoke_config(tmp_path, **{
        "private_sets": {SET: {"folder": f"resources/datasets/{SET}"}},
        "sampling.n_per_image": 4, "sampling.shard_size": 10, "sampling.batch_size": 1, "sampling.steps": 30,
    })
    root = tmp_path / "results" / "samples" / SET / "none" / "direct"
    shards = [root / f"shard_{a:06d}-{a + 9:06d}" for a in (0, 10)]
    targets = [str(s) for s in shards]
    log = tmp_path / "first-run.log"
    # No --workflow-profile: workflow/profiles/default applies (rerun-incomplete among others).
    cmd = snakemake_cmd(tmp_path) + ["--configfile", str(config)]
    proc = start(cmd + ["--cores", "1", *targets], log)
    # Shards run one after the other (--cores 1), in an order Snakemake picks. Once a shard has images,
    # the shards before it are finished and recorded as such. Kill while one is half done.
    done = lambda shard: (shard / "perf.csv").exists()
    running = lambda: [s for s in shards if not done(s) and len(pngs(s)) >= 2]
    kill_when(proc, lambda: running() and any(done(s) for s in shards), log)

    interrupted = running()
    finished_shards = [s for s in shards if done(s)]
    assert len(interrupted) == 1 and 2 <= len(pngs(interrupted[0])) < 10
    assert len(finished_shards) == 1
    assert_complete_pngs(interrupted[0])  # images are written atomically: none is truncated
    finished = {s: snapshot(s) for s in finished_shards}
    assert all(len(f) == 10 for f in finished.values())
    todo = sorted(str(s) for s in shards if s not in finished_shards)

    # The plan redoes the interrupted shard (incomplete) and any not started, never a finished one.
    plan = subprocess.run(cmd + ["--cores", "1", "-n", *targets], cwd=REPO, env=ENV, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    planned = plan.stdout + plan.stderr
    assert sorted(re.findall(r"^\s*output: (\S+)", planned, flags=re.M)) == todo, planned[-3000:]
    # That is the default profile's rerun-incomplete: without it Snakemake stops and names the shard.
    bare = subprocess.run(cmd + ["--workflow-profile", "none", "--cores", "1", "-n", *targets], cwd=REPO,
                          env=ENV, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert bare.returncode != 0 and "incomplete" in (bare.stdout + bare.stderr).lower()
    assert interrupted[0].name in bare.stdout + bare.stderr

    # The killed Snakemake left its lock: a rerun stops and says how to remove it (the README's --unlock).
    locked = subprocess.run(cmd + ["--cores", "2", *targets], cwd=REPO, env=ENV, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL)
    assert locked.returncode != 0 and "LockException" in locked.stderr and "--unlock" in locked.stderr
    unlock = subprocess.run(cmd + ["--unlock"], cwd=REPO, env=ENV, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    rerun = subprocess.run(cmd + ["--cores", "2", *targets], cwd=REPO, env=ENV, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-5000:]
    assert {s: snapshot(s) for s in finished_shards} == finished  # not recomputed: same files, same mtimes
    for shard in shards:
        assert len(pngs(shard)) == 10 and (shard / "perf.csv").exists(), shard
        assert_complete_pngs(shard)
        assert not list(shard.glob("*.tmp*")), f"temporary files left in {shard}"


@pytest.mark.slow
def test_killed_sample_command_skips_the_seeds_it_already_wrote(tmp_path):
    """`python -m finextract sample` resumes inside a shard: seeds whose PNG exists are kept as they are,
    and the shard ends up identical to one sampled without interruption."""
    def sample_cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "finextract", "sample", "--base", "resources/base", "--ft-method", "none",
                "--set-folder", f"resources/datasets/{SET}", "--method", "direct", "--steps", "30", "--scheduler", "ddim",
                "--seeds", "000100-000109", "--batch-size", "1", "--threads", "1", "--out", str(out),
                "--w", "1", "--k", "0", "--guidance-interval", "0", "1000",
                "--base-kind", "auto", "--precision", "auto", "--device", "auto"]

    out, reference = tmp_path / "shard", tmp_path / "reference"
    log = tmp_path / "sample.log"
    kill_when(start(sample_cmd(out), log), lambda: len(pngs(out)) >= 3, log)
    assert not (out / "perf.csv").exists() and 3 <= len(pngs(out)) < 10
    assert_complete_pngs(out)
    before = snapshot(out)

    for cmd in (sample_cmd(out), sample_cmd(reference)):
        result = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    after = snapshot(out)
    assert {name: after[name] for name in before} == before  # untouched
    assert len(after) == 10 and (out / "perf.csv").exists()
    assert_complete_pngs(out)
    assert {n: b for n, (_, b) in after.items()} == {n: b for n, (_, b) in snapshot(reference).items()}


RETRY_SNAKEFILE = """
# A failure injected outside the production workflow: `flaky` fails on its first attempt only,
# `always_fails` on every attempt. Memory grows with the attempt, as a rule would ask for more.
rule all:
    input: "flaky.txt", "always.txt"

rule flaky:
    output: "flaky.txt"
    resources: mem_mb=lambda wc, attempt: 100 * attempt, runtime=5
    shell:
        "if [ ! -e flaky.failed-once ]; then touch flaky.failed-once; "
        "echo 'flaky: failing on purpose' >&2; exit 3; fi; echo ok > {output}"

rule always_fails:
    output: "always.txt"
    resources: mem_mb=lambda wc, attempt: 100 * attempt, runtime=5
    shell: "echo 'always_fails: failing on purpose' >&2; exit 4"
"""


@pytest.mark.slurm
def test_slurm_profile_retries_a_failed_job_then_reports_it(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(RETRY_SNAKEFILE)
    run = run_snakemake("--snakefile", str(tmp_path / "Snakefile"), "--directory", str(tmp_path),
                        "--workflow-profile", str(PROFILE), *FAST_POLLING, cwd=tmp_path, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode != 0, "a job that always fails must fail the run"
    assert (tmp_path / "flaky.txt").read_text() == "ok\n"  # second attempt succeeded (keep-going)

    jobs = slurm_jobs(slurm_run_id(output))
    attempts = {rule: [j for j in jobs if rule_of(j) == rule] for rule in ("flaky", "always_fails")}
    assert [j["JobState"] for j in attempts["flaky"]] == ["FAILED", "COMPLETED"], attempts["flaky"]
    assert [j["JobState"] for j in attempts["always_fails"]] == ["FAILED"] * 3  # 1 + retries: 2
    assert [j["MinMemoryNode"] for j in attempts["always_fails"]] == ["100M", "200M", "300M"]

    # Reported: the rule, the SLURM log it left (failed jobs' logs are kept), and what it said.
    assert "Error in rule always_fails" in output, output[-5000:]
    logs = re.findall(r"(\S+/slurm_logs/rule_always_fails/\S+\.log)", output)
    assert logs, output[-5000:]
    assert "always_fails: failing on purpose" in Path(logs[-1]).read_text()
