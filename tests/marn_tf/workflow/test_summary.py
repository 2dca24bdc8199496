"""The summary table on hand-made results: the no-model floor's row, each model's AUC over it, and the
discriminator notes computed from the measured accuracies."""
import pytest

from marn_tf.workflow.summary import render


def result(variant: str, seed: int, auc: float, d1=None, ds=None) -> dict:
    return {"variant": variant, "seed": seed, "examples": 1000, "auc": auc, "gauc": auc - 0.05, "logloss": 0.5,
            "d1_accuracy": d1, "ds_accuracy": ds, "chance_accuracy": 0.25}


FLOOR = {"auc": 0.70, "gauc": 0.66, "logloss": 0.61, "examples": 1000}


def summary(main: dict, ladder: dict, floor=FLOOR) -> dict:
    return {"run": "/runs/x", "split": "test", "main": main, "floor": floor, "ladder": ladder, "export": None}


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]


def test_the_floor_comes_first_and_every_model_shows_its_auc_over_it():
    main = result("marn", 1, 0.74, d1=0.27, ds=0.93)
    text = render(summary(main, {"concat": [result("concat", 1, 0.71), result("concat", 2, 0.73)],
                                 "marn": [main, result("marn", 2, 0.76, d1=0.23, ds=0.95)]}))
    assert "| model | seeds | AUC | AUC - floor | GAUC | log loss | D1 accuracy | Ds accuracy |" in text
    rows = table_rows(text)
    assert [r[0] for r in rows] == ["no-model floor", "main model: marn", "ladder: concat", "ladder: marn"]
    assert rows[0] == ["no-model floor", "–", "0.7000", "–", "0.6600", "0.6100", "–", "–"]
    assert rows[1][2:4] == ["0.7400", "+0.0400"]
    # the mean over seeds against the floor, with the sample std: |0.71 - 0.73| / sqrt(2)
    assert rows[2][2:4] == ["0.7200 ± 0.0141", "+0.0200"]
    assert rows[3][3] == "+0.0500"


def test_a_model_below_the_floor_shows_a_negative_lift():
    text = render(summary(result("concat", 1, 0.65), {}))
    assert table_rows(text)[1][3] == "-0.0500"


def test_the_discriminator_notes_follow_the_measured_values():
    main = result("marn", 1, 0.74, d1=0.27, ds=0.93)
    text = render(summary(main, {"maan": [result("maan", 1, 0.73, d1=0.04, ds=0.9),
                                          result("maan", 2, 0.73, d1=0.06, ds=0.9)],
                                 "concat": [result("concat", 1, 0.71)]}))
    assert ("- main model marn: D1 accuracy 0.27 vs chance 0.25, near chance: the invariant vectors hide their "
            "modality; Ds accuracy 0.93, above chance: the specific vectors keep their modality.") in text
    assert ("- ladder maan (mean over seeds): D1 accuracy 0.05 vs chance 0.25, far below chance: the encoder "
            "is fooling D1 by swapping modalities, not hiding them") in text
    assert "ladder concat" not in text.split("Discriminators")[1]  # no discriminators, no note


@pytest.mark.parametrize("floor", [None, "absent"])
def test_without_discriminators_or_floor_the_table_says_nothing_it_did_not_measure(floor):
    data = summary(result("concat", 1, 0.74), {"din": [result("din", 1, 0.7)]}, floor=floor)
    if floor == "absent":  # a summary written before the floor was measured
        del data["floor"]
    text = render(data)
    assert "D1" not in text.split("|\n\n", 1)[1] and "Discriminators" not in text
    rows = table_rows(text)
    assert rows[0] == ["no-model floor", "–", "–", "–", "–", "–", "–", "–"] and rows[1][3] == "–"
    assert "no-model floor: not measured" in text


def test_the_rungs_chosen_between_by_validation_and_the_exported_model_are_printed():
    from marn_tf.workflow.selection import choose, exported_model

    main = {**result("marn", 1, 0.74), "name": "model"}
    ladder = {"concat": [{**result("concat", s, a), "name": f"concat-seed{s}"} for s, a in ((1, 0.71), (2, 0.73))],
              "marn": [main, {**result("marn", 2, 0.76), "name": "marn-seed2"}]}
    validation = {"concat-seed1": 0.70, "concat-seed2": 0.80, "model": 0.72, "marn-seed2": 0.73}
    data = summary(main, ladder)
    data["selection"] = choose(ladder, validation, main)
    data["export"] = {"path": "/runs/x/export/marn/1", "checks": [{"passed": True}],
                      "model": exported_model("best", data["selection"], main, 0.72)}
    text = render(data)
    assert "| rung | seeds with validation | validation AUC | validation AUC - marn | test AUC | test AUC - marn |" \
        in text
    rows = table_rows(text.split("Chosen by validation AUC")[1])[1:]  # under its header row
    # concat - marn, paired by seed: validation (0.70 - 0.72 + 0.80 - 0.73) / 2, test (0.71 - 0.74 + 0.73 - 0.76) / 2
    assert rows[0] == ["concat", "1,2", "0.7500", "+0.0250", "0.7200", "-0.0300"]
    assert rows[1] == ["marn", "1,2", "0.7250", "+0.0000", "0.7500", "+0.0000"]
    assert "best rung on validation AUC: concat (0.7500; its best seed 2: 0.8000)" in text
    assert ("export: /runs/x/export/marn/1 (1/1 checks passed): concat-seed2 (concat, seed 2), best on validation "
            "AUC 0.7500 (rung concat, mean over 2 seeds); its seed 2: 0.8000 (main model marn 0.7200)") in text
