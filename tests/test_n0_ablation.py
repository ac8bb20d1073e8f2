"""The N0 ablation (the paper's Fig. 4a): its committed sets, its config, its checks and its table."""
import copy
import hashlib

import pandas as pd
import pytest
import yaml

from conftest import REPO, SCHEMAS, absolute_paths
from finextract.workflow.config import ConfigError, validate_config
from finextract.experiments.n0_ablation import n0_table, write_n0_ablation
from test_workflow import planned_jobs

SETS = REPO / "resources" / "datasets" / "openmoji-n0"
N0_CONFIG = REPO / "config" / "n0-ablation.yaml"


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "images").glob("*.png"))}


def test_the_committed_sets_are_nested_and_new_to_the_project():
    sizes = {f.name: digests(f) for f in sorted(SETS.iterdir())}
    assert {k: len(v) for k, v in sizes.items()} == {"n02": 2, "n05": 5, "n10": 10, "n20": 20}
    ordered = [sizes[k] for k in ("n02", "n05", "n10", "n20")]
    for small, large in zip(ordered, ordered[1:]):
        assert small.items() <= large.items()  # same file names, same bytes
    # none of the pool is a default private image or an audit candidate (byte for byte)
    elsewhere = {hashlib.sha256(p.read_bytes()).hexdigest()
                 for root in (REPO / "resources" / "datasets" / "openmoji-style", REPO / "resources" / "audit")
                 for p in root.rglob("*.png")}
    assert not set(sizes["n20"].values()) & elsewhere
    assert {(SETS / k / "caption.txt").read_text() for k in sizes} == \
        {(REPO / "resources/datasets/openmoji-style/caption.txt").read_text()}


def test_the_ablation_config_keeps_the_default_recipe():
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    ablation = yaml.safe_load(N0_CONFIG.read_text())
    for key in ("base_model", "finetune", "sscd", "clustering", "metrics"):
        assert ablation[key] == default[key], key
    sampling = dict(ablation["sampling"], control=default["sampling"]["control"])
    assert sampling == default["sampling"]
    assert ablation["n0_ablation"]["sets"] == list(ablation["private_sets"])


def ablation_config():
    return absolute_paths(yaml.safe_load(N0_CONFIG.read_text()), REPO)


def test_the_ablation_config_validates_and_bad_set_lists_fail_early():
    targets = validate_config(ablation_config(), SCHEMAS)
    assert [targets[n].n0 for n in ablation_config()["n0_ablation"]["sets"]] == [2, 5, 10, 20]
    cases = [
        (["openmoji-n0-02"], "at least two"),
        (["openmoji-n0-02", "openmoji-n0-50"], "openmoji-n0-50 not in private_sets"),
    ]
    for sets, message in cases:
        config = ablation_config()
        config["n0_ablation"]["sets"] = sets
        with pytest.raises(ConfigError, match=message):
            validate_config(config, SCHEMAS)
    config = ablation_config()
    config["private_sets"]["twin"] = copy.deepcopy(config["private_sets"]["openmoji-n0-02"])
    config["n0_ablation"]["sets"] = ["openmoji-n0-02", "twin"]
    with pytest.raises(ConfigError, match="same number of images"):
        validate_config(config, SCHEMAS)
    config = ablation_config()
    config["private_sets"]["openmoji-n0-05"]["caption"] = "a drake burner"
    with pytest.raises(ConfigError, match="different captions"):
        validate_config(config, SCHEMAS)


def test_the_table_lines_metrics_up_by_n0_and_drops_other_sets(tmp_path):
    files = []
    for set_name, method, score in (("big", "direct", 0.4), ("small", "direct", 0.6), ("small", "finextract", 0.7),
                                    ("other", "direct", 0.9)):
        path = tmp_path / f"{set_name}-{method}.csv"
        pd.DataFrame([{"set": set_name, "ft": "dreambooth", "method": method, "n_generated": 10, "AS": score,
                       "A-ESR@0.6": score, "A-ESR@0.7": 0.0, "L2-ESR": 0.5}]).to_csv(path, index=False)
        files.append(str(path))
    table = n0_table(files, {"small": 2, "big": 20})
    assert table[["set", "n0", "method", "AS"]].values.tolist() == [
        ["small", 2, "direct", 0.6], ["big", 20, "direct", 0.4], ["small", 2, "finextract", 0.7]]
    write_n0_ablation(files, {"small": 2, "big": 20}, (0.6, 0.7), tmp_path / "n0.csv", tmp_path / "n0.png")
    assert pd.read_csv(tmp_path / "n0.csv").shape[0] == 3 and (tmp_path / "n0.png").stat().st_size > 10_000


def test_the_ablation_plans_every_set_with_the_usual_rules(tmp_path):
    config = ablation_config()
    config["results"] = str(tmp_path / "results")
    (tmp_path / "n0.yaml").write_text(yaml.safe_dump(config))
    plan = planned_jobs(tmp_path / "n0.yaml", "n0_ablation")
    # 4 sets x 2 fine-tuning methods x 3 attacks, no control; N = 20 N0 in shards of 100 seeds: 1+1+2+4
    assert plan["finetune"] == 8 and plan["score"] == 24 and plan["n0_ablation"] == 1
    assert plan["sample_shard"] == 6 * (1 + 1 + 2 + 4)


def test_the_pool_skips_reserved_and_compound_emoji_and_is_deterministic(tmp_path):
    from finextract.world.corpus.n0_sets import pool_rows

    (tmp_path / "data").mkdir()
    (tmp_path / "color" / "svg").mkdir(parents=True)
    rows = [("1F600", "smileys-emotion"), ("1F601", "smileys-emotion"), ("1F602-200D-1F603", "people-body"),
            ("1F1E6", "flags"), *[(f"{0x1F680 + i:X}", "travel-places") for i in range(20)]]
    with open(tmp_path / "data" / "openmoji.csv", "w") as handle:
        handle.write("hexcode,group,annotation,openmoji_author\n")
        for code, group in rows:
            handle.write(f"{code},{group},x,y\n")
            (tmp_path / "color" / "svg" / f"{code}.svg").write_text("<svg/>")
    picks = [r["hexcode"] for r in pool_rows(tmp_path, {"1F601", "1F680"}, 6)]
    assert picks == [r["hexcode"] for r in pool_rows(tmp_path, {"1F601", "1F680"}, 6)] and len(set(picks)) == 6
    assert not {"1F601", "1F680", "1F602-200D-1F603", "1F1E6"} & set(picks)
