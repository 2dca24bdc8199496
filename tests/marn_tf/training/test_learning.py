"""On the embedded synthetic data MARN learns, and the adversarial game holds D1 back on the invariant
vectors (against a control without it) while a probe still attributes the specific ones to their modality."""
import dataclasses
import json

import pytest

from marn_tf.evaluation.evaluate import evaluate
from marn_tf.training.trainer import train
from tests.testing import prepare

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


def test_marn_learns_and_the_game_holds_d1_below_an_unopposed_control(embedded, tmp_path):
    config, data, _ = embedded
    marn = tmp_path / "marn"
    assert train(config, data, str(marn)).status == "completed"
    result = evaluate(str(marn), data, "test")
    assert result["auc"] > 0.62 and result["gauc"] > 0.58  # chance is 0.5
    assert set(result["modality_weights_by_category"]) and result["slices"]["cold_items"]["examples"] > 0

    # The control: the same model and budget with no pressure toward invariance (lambda_grl = 0: the encoder
    # no longer plays against D1; lambda_align = 0: no same-item agreement): D1 then learns to tell the
    # invariant vectors' modality apart.
    control = tmp_path / "control"
    train(dataclasses.replace(config, model=dataclasses.replace(config.model, grl_coefficient=0.0, lambda_align=0.0)),
          data, str(control))
    adversarial, unopposed = over_training(marn, "d1_accuracy"), over_training(control, "d1_accuracy")
    # Measured D1 accuracy per epoch (4 x 25 steps; chance 0.25): control 0.37, 0.64, 0.71, 0.80; MARN 0.22,
    # 0.10, 0.15, 0.27. The capped objective stops pushing a vector once D1 is at chance on it, but the game
    # still swings around chance at this small budget (benchmarks/quality.py measures it at full size).
    assert unopposed[-1] > unopposed[0] + 0.1  # unopposed, D1 learns the modalities...
    assert unopposed[-1] > adversarial[-1] + 0.1  # ...against the encoder, it ends well below that
    # Ds is a probe at the default lambda_s = 0: it reads the specific vectors without shaping them, and still
    # tells their modality apart well above chance (measured 0.82 at the last epoch)
    assert over_training(marn, "ds_accuracy")[-1] > 0.7
    assert result["ds_accuracy"] > 0.7
