"""benchmarks/quality.py's comparison of a trial with an earlier run (`--against`), paired by seed."""
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import quality  # noqa: E402  (benchmarks/ is not a package)


def runs(aucs: dict[int, float], offset: float = 0.0) -> list[dict]:
    return [{"seed": seed, "validation_auc": auc, "test_auc": auc + offset} for seed, auc in aucs.items()]


def test_differences_pair_runs_by_seed_not_by_order():
    this = runs({3: 0.76, 1: 0.75, 2: 0.77})
    that = runs({1: 0.74, 2: 0.765, 3: 0.755, 4: 0.9})  # seed 4 has no partner: left out
    d = quality.paired_by_seed(this, that, "validation_auc")
    assert d["n"] == 3
    assert d["mean"] == pytest.approx((0.01 + 0.005 + 0.005) / 3)
    # the 95% t interval of three differences (t = 4.303 at 2 degrees of freedom)
    half = 4.303 * 0.0028867513 / 3 ** 0.5
    assert (d["low"], d["high"]) == (pytest.approx(d["mean"] - half, abs=1e-6), pytest.approx(d["mean"] + half, abs=1e-6))


def test_against_compares_every_variant_both_have(tmp_path, capsys):
    baseline = {"command": "python benchmarks/quality.py", "runs": {"man": runs({1: 0.75, 2: 0.76}),
                                                                   "marn": runs({1: 0.76, 2: 0.77}, 0.01)}}
    path = tmp_path / "defaults.json"
    path.write_text(json.dumps(baseline))
    results = {"marn": runs({1: 0.77, 2: 0.775}, 0.01), "concat": runs({1: 0.74, 2: 0.75})}
    figures = quality.against_baseline(results, quality.load_baseline(str(path)), str(path))
    assert set(figures["differences"]) == {"marn"}
    assert figures["differences"]["marn"]["validation_auc"]["mean"] == pytest.approx(0.0075)
    assert figures["differences"]["marn"]["test_auc"]["mean"] == pytest.approx(0.0075)
    printed = capsys.readouterr().out
    assert "| marn | 2 | +0.0075 [" in printed
    assert "concat: not in" in printed


def test_a_baseline_with_no_common_seed_reads_as_no_figure(tmp_path):
    figures = quality.against_baseline({"man": runs({5: 0.75})}, {"runs": {"man": runs({1: 0.75})}}, "x.json")
    assert figures["differences"]["man"]["test_auc"]["mean"] is None


@pytest.mark.parametrize("content", ["not json", json.dumps([1, 2]), json.dumps({"targets": []})])
def test_a_file_that_is_not_a_quality_json_stops_with_what_is_wrong(tmp_path, content):
    path = tmp_path / "q.json"
    path.write_text(content)
    with pytest.raises(SystemExit, match="quality.py --json output"):
        quality.load_baseline(str(path))


def test_the_spread_over_seeds_is_the_sample_std():
    aucs = [0.760, 0.764, 0.768, 0.772, 0.776]  # population std 0.00566, sample std 0.00632
    assert quality.mean_std(aucs) == "0.7680 ± 0.0063"
    assert quality.mean_std([0.76, None]) == "0.7600 ± 0.0000"


def test_an_earlier_json_of_both_worlds_is_compared_world_by_world(tmp_path):
    baseline = {"worlds": {"default": {"runs": {"man": runs({1: 0.75})}},
                           "realistic": {"runs": {"man": runs({1: 0.70})}}}}
    path = tmp_path / "both.json"
    path.write_text(json.dumps(baseline))
    loaded = quality.load_baseline(str(path))
    realistic = quality.against_baseline({"man": runs({1: 0.71})}, loaded, str(path), "realistic")
    assert realistic["differences"]["man"]["test_auc"]["mean"] == pytest.approx(0.01)


def test_the_report_counts_reused_runs_and_the_time_of_every_run():
    """A reused run adds its own recorded time, so the total is what the command takes with no run to reuse, and
    the code each run was trained at is listed (runs saved without it as "not recorded")."""
    import argparse

    def run(seed, seconds, **extra):
        return {"seed": seed, "validation_auc": 0.75, "test_auc": 0.76, "test_gauc": 0.7, "best_step": 40,
                "d1_accuracy": None, "ds_accuracy": None, "seconds": seconds, **extra}

    args = argparse.Namespace(seeds=2, steps_per_eval=40, batch_size=1024, patience=2, max_evals=8, runs="RUNS")
    results = {"din": [run(1, 120, code="release-1"), run(2, 180, reused=True)],
               "man": [run(1, 240, code="release-1", reused=True), run(2, 60, code="release-2")]}
    figures = quality.report(args, results, {}, seconds=65.0)
    assert figures["reused_runs"] == 2
    assert figures["run_minutes"] == 10.0
    # two runs trained side by side (--jobs 2) count half of their time each
    results["man"][1] = run(2, 120, code="release-2", jobs=2)
    assert quality.report(args, results, {}, seconds=65.0)["run_minutes"] == 10.0
    assert figures["run_code"] == {"release-1": 2, "release-2": 1, "not recorded": 1}


def test_runs_trained_side_by_side_come_back_by_variant_and_seed(make_config, tmp_path):
    """`--jobs 2` hands each run to a process of its own and gives back every variant's runs in seed order, as one
    at a time does (finished runs here, which each process reads back)."""
    import argparse

    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config().to_dict()))
    args = argparse.Namespace(config=str(config), set=[], batch_size=1024, steps_per_eval=40, max_evals=8,
                              patience=2, runs=str(tmp_path / "runs"), variants=["din", "marn"], seeds=2, jobs=2,
                              data=None)
    for variant in args.variants:
        for seed in (1, 2):
            out = quality.run_dir(args, quality.run_config(args, variant, seed))
            os.makedirs(out)
            with open(os.path.join(out, "quality.json"), "w") as f:
                json.dump({"variant": variant, "seed": seed}, f)
    side_by_side = quality.all_runs(args, {})
    assert {v: [(r["variant"], r["seed"]) for r in rs] for v, rs in side_by_side.items()} == {
        "din": [("din", 1), ("din", 2)], "marn": [("marn", 1), ("marn", 2)]}
    assert side_by_side == quality.all_runs(argparse.Namespace(**{**vars(args), "jobs": 1}), {})


def test_a_records_runs_with_the_same_config_are_reused_and_others_trained(make_config, tmp_path):
    """`--reuse RECORD` places the record's result of a variant and seed whose config digest is the one this
    command would train, and leaves a run of another config (here seed 2 under another learning rate) to train."""
    import argparse

    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_config().to_dict()))
    args = argparse.Namespace(config=str(config), set=[], batch_size=1024, steps_per_eval=40, max_evals=8,
                              patience=2, runs=str(tmp_path / "runs"), variants=["marn"], seeds=2, jobs=1, data=None)
    other = argparse.Namespace(**{**vars(args), "set": ["train.learning_rate=0.5"]})
    record = {"worlds": {"realistic": {"runs": {"marn": [
        {"variant": "marn", "seed": 1, "run": quality.run_dir(args, quality.run_config(args, "marn", 1)),
         "test_auc": 0.71, "reused": True},
        {"variant": "marn", "seed": 2, "run": quality.run_dir(other, quality.run_config(other, "marn", 2)),
         "test_auc": 0.72}]}}}}
    assert quality.reuse_from_record(args, record, "R.json", "default") == 0  # another world's runs
    assert quality.reuse_from_record(args, record, "R.json", "realistic") == 1
    with open(os.path.join(quality.run_dir(args, quality.run_config(args, "marn", 1)), "quality.json")) as f:
        placed = json.load(f)
    assert placed["test_auc"] == 0.71 and placed["from_record"] == "R.json" and "reused" not in placed
    assert not os.path.exists(quality.run_dir(args, quality.run_config(args, "marn", 2)))


def test_runs_scored_on_different_test_splits_stop_the_report():
    """Runs whose no-model floors differ were scored on different data; the report refuses to put them in one
    table."""
    def run(seed, floor):
        return {"seed": seed, "validation_auc": 0.75, "test_auc": 0.76, "test_gauc": 0.7, "best_step": 40,
                "d1_accuracy": None, "ds_accuracy": None, "seconds": 60, "floor": {"auc": floor}}

    quality.one_test_split([run(1, 0.61), run(2, 0.61)])
    with pytest.raises(SystemExit, match="different test splits"):
        quality.one_test_split([run(1, 0.61), run(2, 0.62)])
