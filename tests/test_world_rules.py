"""The tiny world's next base through Snakemake: the broad corpus, pretraining and the criteria are planned
from the config's world: section, and only in the embedded mode."""
import yaml

from conftest import REPO, absolute_paths
from test_workflow import planned_jobs, snakemake


def test_world_criteria_plans_corpus_pretraining_and_measurement_from_scratch(tmp_path):
    config = absolute_paths(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)
    config["results"] = str(tmp_path / "results")
    config["world"] = {"pretrain": {"steps": 10, "channels": [32, 64, 64]}}
    (tmp_path / "world.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(tmp_path / "world.yaml", "world_criteria") == {
        "corpus_broad": 1, "pretrain_broad": 1, "world_criteria": 1}
    shell = snakemake("world_criteria", "-n", "-p", "--configfile", str(tmp_path / "world.yaml")).stdout
    assert "--broad" in shell and "--steps 10 --band-basis --channels 32 64 64" in shell
    assert "--init-from" in shell and "pretrain-state/state.safetensors" in shell


def test_a_bad_world_key_fails_before_any_job(tmp_path):
    config = absolute_paths(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), REPO)
    config["results"] = str(tmp_path / "results")
    config["world"] = {"pretrain": {"channels": [30, 64]}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("world_criteria", "-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0 and "channels" in result.stdout + result.stderr
