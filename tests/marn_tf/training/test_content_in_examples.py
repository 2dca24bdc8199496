"""Training on examples that carry their items' content (`pipeline.item_content: examples`): the network holds
no item table, and the run evaluates and exports through the table with the same weights."""
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.training.trainer import train
from marn_tf.training.training_run import indexed, load_network, read_split, restore_run
from tests.testing import REPO, with_train

pytestmark = pytest.mark.integration


def test_a_run_on_content_in_examples_holds_no_table_and_serves_from_the_table(prepared_with_content, tmp_path,
                                                                               caplog):
    config, data, schema = prepared_with_content
    config = with_train(config, steps_per_epoch=4, epochs=2, validation_steps=2, learning_rate=0.01)
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="marn_tf.training.task"):
        result = train(config, data, str(run))
    assert result.status == "completed" and result.steps == 8
    assert "the examples carry their items' content" in caplog.text  # and what the shuffle buffer then holds

    trained = load_network(config, schema, data)  # what training built: the content comes with the examples
    assert trained.item_tower.content_source == "examples"
    assert not [v.name for v in trained.core.variables if "table_" in v.name]
    _, served_schema, served, checkpoint = restore_run(str(run), data)  # what evaluation and export build
    assert served.item_tower.content_source == "table" and not served_schema.content_in_examples
    tf.train.Checkpoint(core=trained.core).restore(checkpoint).expect_partial()

    features, _ = next(iter(indexed(read_split(config, data, schema, "validation", 64, shuffle=False), trained)))
    given = trained.core(features, training=False)
    from_table = served.core({name: features[name] for name in served.core.input}, training=False)
    np.testing.assert_allclose(given["probability"].numpy(), from_table["probability"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(given["modality_weights"].numpy(), from_table["modality_weights"].numpy(), atol=1e-6)

    models = tmp_path / "models"
    export = subprocess.run([sys.executable, "-m", "marn_tf.cli", "export", "--run", str(run), "--data", data,
                             "--output", str(models)], cwd=REPO, capture_output=True, text=True)
    assert export.returncode == 0, export.stdout + export.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "marn_tf.cli", "check-export", "--model",
                            os.path.join(models, config.model.variant, "1"), "--run", str(run), "--data", data,
                            "--quiet"], cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0 and "all checks passed" in check.stdout, check.stdout + check.stderr[-3000:]


def test_training_steps_on_the_examples_content_equal_those_on_the_table(prepared_with_content):
    """The same batches give the same weights, whether the item tower reads the examples or the table."""
    from marn_tf.training.task import CtrTask
    from tests.testing import with_model

    config, data, _ = prepared_with_content
    config = with_model(config, dropout=0.0)  # no random masks: the two graphs draw differently
    given, table = CtrTask(config, data), CtrTask(config, data)
    table.schema = table.schema.without_content_features()
    given_network, table_network = given.build_network(), table.build_network()
    assert table_network.item_tower.content_source == "table"
    given_model, table_model = given.build_model(given_network), table.build_model(table_network)
    # weights paired by name, in creation order: two target attentions' inner layers share their names
    by_name = {}
    for w in table_network.core.weights:
        by_name.setdefault(w.name, []).append(w)
    pairs = [(w, by_name[w.name].pop(0)) for w in given_network.core.weights]
    for w, twin in pairs:
        twin.assign(w)
    before = [w.numpy() for w in given_network.core.trainable_weights]
    for features, label in given.build_inputs("train", given_network).take(5):
        given_model.train_on_batch(features, label)
        table_model.train_on_batch({name: features[name] for name in table_network.core.input}, label)
    for w, twin in pairs:
        np.testing.assert_allclose(w.numpy(), twin.numpy(), rtol=1e-6, atol=1e-7, err_msg=w.name)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, given_network.core.trainable_weights))
