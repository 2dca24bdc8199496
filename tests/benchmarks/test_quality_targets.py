"""The targets benchmarks/quality.py checks on each world: paired means, the floor, D1 and hiding costs."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import quality_targets as Q  # noqa: E402  (benchmarks/ is not a package)


def runs(aucs: dict[int, float], **extra) -> list[dict]:
    return [{"seed": seed, "test_auc": auc, "chance": 0.25, **extra} for seed, auc in aucs.items()]


def by_name(targets: list[dict]) -> dict:
    return {t["name"]: t for t in targets}


def test_differences_are_means_over_the_seeds_both_rungs_ran():
    results = {"marn": runs({1: 0.770, 2: 0.772, 3: 0.9}), "din": runs({1: 0.765, 2: 0.769})}
    found = by_name(Q.targets_of({"default": {"results": results, "floor_auc": None}}))
    difference = found["default: test AUC marn - din, mean over paired seeds"]
    assert difference["measured"] == pytest.approx(0.004) and difference["met"]  # seed 3 has no partner
    assert not any("man" in name for name in found)  # rungs not run give no target


def test_the_realistic_world_needs_every_rung_above_the_floor_and_marn_two_points_above():
    results = {"marn": runs({1: 0.731}), "din": runs({1: 0.735}), "concat": runs({1: 0.709})}
    found = by_name(Q.targets_of({"realistic": {"results": results, "floor_auc": 0.71}}))
    assert found["realistic: marn test AUC - no-model floor"]["met"] is True
    assert found["realistic: concat test AUC - no-model floor"]["met"] is False
    assert found["realistic: test AUC marn - din, mean over paired seeds"]["met"] is False


def test_d1_is_judged_by_its_median_over_seeds_against_chance():
    results = {"marn": [{"seed": s, "test_auc": 0.7, "chance": 0.25, "d1_accuracy": a}
                        for s, a in enumerate([0.30, 0.31, 0.90], 1)]}
    found = by_name(Q.targets_of({"default": {"results": results, "floor_auc": None}}))
    assert found["default: marn D1 accuracy, median over seeds"] == Q.target(
        "default: marn D1 accuracy, median over seeds", 0.31, "0.25 ± 0.07", True)


def test_hiding_costs_compare_kinds_and_a_modality_that_costs_nothing_where_it_should_fails():
    costs = [{"visual": {"image": 0.02, "statistic": 0.001}, "popularity": {"image": 0.01, "statistic": 0.0}},
             {"visual": {"image": 0.04, "statistic": 0.001}, "popularity": {"image": 0.02, "statistic": -0.001}}]
    results = {"marn": [{"seed": s, "test_auc": 0.7, "chance": 0.25, "importance_by_kind": c}
                        for s, c in enumerate(costs, 1)]}
    found = by_name(Q.targets_of({"default": {"results": results, "floor_auc": None}}))
    image = found["default: AUC cost of hiding image in visual / in popularity categories (marn; [cost there, cost "
                  "here, ratio])"]
    assert image["measured"] == [0.03, 0.015, 2.0] and image["met"]
    statistic = [t for name, t in found.items() if "hiding statistic" in name][0]
    assert statistic["measured"] == [-0.0005, 0.001, -0.25] and not statistic["met"]


def test_a_cost_within_the_noise_counts_as_the_noise_floor_in_the_ratio():
    """Hiding a modality that costs nothing in the other kind passes only on a cost above the seeds' noise."""
    for there, here, ratio, met in ((0.003, 0.0, 1.5, True), (0.001, -0.002, 0.5, False)):
        costs = {"visual": {"statistic": here}, "popularity": {"statistic": there}}
        results = {"marn": [{"seed": 1, "test_auc": 0.7, "chance": 0.25, "importance_by_kind": costs}]}
        statistic = [t for t in Q.targets_of({"default": {"results": results, "floor_auc": None}})
                     if "hiding statistic" in t["name"]][0]
        assert statistic["measured"] == [there, here, ratio] and statistic["met"] == met
