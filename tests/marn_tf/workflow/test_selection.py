"""The best rung, chosen by validation AUC on hand-made results: the mean over seeds chooses, the evaluation
split's AUC never does, ties keep the main model, a rung without a validation AUC is left out, the differences
to marn pair the seeds both rungs have, and what `run.export` exports and why."""
import math

import pytest

from marn_tf.workflow.selection import choose, exported_model, paired_difference

MAIN = {"name": "model", "variant": "marn", "seed": 1}


def rung(variant: str, aucs: dict) -> list[dict]:
    """Evaluation results of a rung: {seed: AUC on the evaluation split}; seed 1 of marn is the main model."""
    return [{"name": "model" if (variant, seed) == ("marn", 1) else f"{variant}-seed{seed}", "variant": variant,
             "seed": seed, "auc": auc} for seed, auc in aucs.items()]


LADDER = {"din": rung("din", {1: 0.80, 2: 0.81}), "concat": rung("concat", {1: 0.70, 2: 0.72}),
          "marn": rung("marn", {1: 0.74, 2: 0.75})}


def test_the_best_rung_is_the_highest_mean_validation_auc_not_the_highest_test_auc():
    validation = {"din-seed1": 0.60, "din-seed2": 0.62, "concat-seed1": 0.71, "concat-seed2": 0.75,
                  "model": 0.70, "marn-seed2": 0.72}
    selection = choose(LADDER, validation, MAIN)
    assert selection["best"] == {"variant": "concat", "validation_auc": pytest.approx(0.73), "seeds": 2,
                                 "name": "concat-seed2", "seed": 2, "model_validation_auc": 0.75}
    rows = {r["variant"]: r for r in selection["rungs"]}
    assert list(rows) == ["din", "concat", "marn"] and selection["reference"] == "marn"
    # paired with marn seed by seed: concat (0.71 - 0.70 + 0.75 - 0.72) / 2, on test (0.70 - 0.74 + 0.72 - 0.75) / 2
    assert rows["concat"]["validation_auc_difference"] == pytest.approx(0.02)
    assert rows["concat"]["auc_difference"] == pytest.approx(-0.035)
    assert rows["din"]["auc_difference"] == pytest.approx(0.06) and rows["din"]["auc"] == pytest.approx(0.805)
    assert rows["marn"]["validation_auc_difference"] == 0.0 and rows["marn"]["auc_difference"] == 0.0


def test_a_tie_keeps_the_main_models_rung_and_seed():
    # Values a float holds exactly: the three rungs' means are 0.625, marn's two seeds are equal.
    validation = {"din-seed1": 0.5, "din-seed2": 0.75, "concat-seed1": 0.75, "concat-seed2": 0.5,
                  "model": 0.625, "marn-seed2": 0.625}
    assert choose(LADDER, validation, MAIN)["best"]["name"] == "model"


def test_a_tie_between_other_rungs_goes_to_the_first_in_ladder_order_and_its_first_seed():
    validation = {"din-seed1": 0.75, "din-seed2": 0.75, "concat-seed1": 0.75, "concat-seed2": 0.75,
                  "model": 0.5, "marn-seed2": 0.5}
    best = choose(LADDER, validation, MAIN)["best"]
    assert (best["variant"], best["name"]) == ("din", "din-seed1")


def test_a_rung_or_seed_without_a_validation_auc_is_left_out():
    """None: not measured (train.validation_steps: 0); NaN: no number. Neither chooses nor pairs."""
    validation = {"din-seed1": None, "din-seed2": math.nan, "concat-seed1": None, "concat-seed2": 0.69,
                  "model": 0.70, "marn-seed2": 0.66}
    selection = choose(LADDER, validation, MAIN)
    rows = {r["variant"]: r for r in selection["rungs"]}
    assert rows["din"]["validation_auc"] is None and rows["din"]["validated_seeds"] == []
    assert rows["din"]["validation_auc_difference"] is None and rows["din"]["auc_difference"] is not None
    # concat's mean is its one measured seed; its difference pairs seed 2 alone: 0.69 - 0.66
    assert rows["concat"]["validation_auc"] == 0.69 and rows["concat"]["validated_seeds"] == [2]
    assert rows["concat"]["validation_auc_difference"] == pytest.approx(0.03)
    assert selection["best"]["name"] == "concat-seed2"  # 0.69 over marn's mean 0.68
    assert choose(LADDER, {}, MAIN)["best"] is None  # nothing measured: nothing to choose


def test_without_a_marn_rung_there_is_nothing_to_compare_with():
    selection = choose({"din": LADDER["din"]}, {"din-seed1": 0.7}, MAIN)
    assert selection["reference"] is None and selection["rungs"][0]["auc_difference"] is None
    assert selection["best"]["name"] == "din-seed1"


def test_paired_difference_uses_only_the_seeds_both_measured():
    assert paired_difference({1: 0.8, 2: 0.7, 3: 0.9}, {1: 0.6, 2: None, 4: 0.1}) == pytest.approx(0.2)
    assert paired_difference({1: 0.8}, {2: 0.6}) is None


def test_what_each_export_choice_exports_and_why():
    validation = {"din-seed1": 0.60, "din-seed2": 0.62, "concat-seed1": 0.71, "concat-seed2": 0.75,
                  "model": 0.70, "marn-seed2": 0.72}
    selection = choose(LADDER, validation, MAIN)
    assert exported_model(False, selection, MAIN, 0.70) is None
    assert exported_model(True, selection, MAIN, 0.70) == {**MAIN, "reason": "main model"}
    assert exported_model("best", selection, MAIN, 0.70) == {
        "name": "concat-seed2", "variant": "concat", "seed": 2,
        "reason": "best on validation AUC 0.7300 (rung concat, mean over 2 seeds); its seed 2: 0.7500 "
                  "(main model marn 0.7000)"}
    mine = choose(LADDER, {**validation, "model": 0.80}, MAIN)  # marn's mean 0.76: the main model is the best seed
    assert exported_model("best", mine, MAIN, 0.80)["reason"].endswith("its seed 1: 0.8000 (the main model)")
    nothing = exported_model("best", choose(LADDER, {}, MAIN), MAIN, None)
    assert nothing == {**MAIN, "reason": "main model: no ladder rung has a validation AUC to choose by"}
