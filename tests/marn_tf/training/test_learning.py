"""On the embedded synthetic data MARN learns, and the adversarial game makes the invariant vectors hard
to attribute to their modality while the specific ones stay easy."""
import dataclasses
import json

import pytest

from marn_tf.evaluation.evaluate import evaluate
from marn_tf.training.trainer import train
from tests.conftest import prepare

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    return prepare(tmp_path_factory.mktemp("embedded"), users=300, items=500, days=12,
                   overrides=["sequence.max_length=20", "model.units=32", "model.common_units=32",
                              "model.gru_units=32", "train.batch_size=256", "train.steps_per_epoch=25",
                              "train.epochs=4", "train.validation_steps=4", "train.early_stopping_patience=0",
                              "train.deterministic=true"])


def over_training(run, key):
    return [json.loads(line)[key] for line in (run / "history.jsonl").read_text().splitlines()]


def test_marn_learns_and_its_invariant_vectors_hide_their_modality(embedded, tmp_path):
    config, data, _ = embedded
    marn = tmp_path / "marn"
    assert train(config, data, str(marn)).status == "completed"
    result = evaluate(str(marn), data, "test")
    assert result["auc"] > 0.62 and result["gauc"] > 0.58  # chance is 0.5
    assert set(result["modality_weights_by_category"]) and result["slices"]["cold_items"]["examples"] > 0

    # The control: the same model and budget with the gradient reversal off (lambda_grl = 0): D1 then
    # separates the invariant vectors as easily as Ds the specific ones.
    control = tmp_path / "control"
    train(dataclasses.replace(config, model=dataclasses.replace(config.model, grl_coefficient=0.0)), data,
          str(control))
    chance = 1.0 / 4
    adversarial, unopposed = over_training(marn, "d1_accuracy"), over_training(control, "d1_accuracy")
    assert abs(adversarial[-1] - chance) < 0.1 < abs(adversarial[0] - chance)  # D1 falls toward chance...
    assert unopposed[-1] > unopposed[0] and unopposed[-1] > adversarial[-1] + 0.2  # ...and without reversal it rises
    assert over_training(marn, "ds_accuracy")[-1] > 0.95  # the specific vectors stay modality-specific
    assert result["ds_accuracy"] > 0.9
