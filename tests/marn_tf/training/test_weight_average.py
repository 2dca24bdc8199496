"""The moving average of the weights: its update, the swap for validation, and what the best checkpoint holds."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.training.trainer import train
from marn_tf.training.training_run import restore_run
from marn_tf.training.weight_average import WeightAverage


def test_the_average_is_the_bias_corrected_exponential_one_and_the_swap_restores():
    variable = tf.Variable([0.0, 4.0])
    average = WeightAverage([variable], decay=0.99)
    for step, value in enumerate([[1.0, 2.0], [3.0, 0.0], [5.0, 6.0]], start=1):
        variable.assign(value)
        average.update(tf.constant(step))
    ages = np.array([2, 1, 0])  # the bias-corrected exponential average of the three values
    expected = (0.99 ** ages) @ np.array([[1.0, 2.0], [3.0, 0.0], [5.0, 6.0]]) / (0.99 ** ages).sum()
    np.testing.assert_allclose(average.averages[0].numpy(), expected, rtol=1e-5)
    with average.swapped():
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5)
    np.testing.assert_array_equal(variable.numpy(), [5.0, 6.0])
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage([variable], decay=1.0)


@pytest.mark.integration
def test_validation_and_the_best_checkpoint_use_the_averages_and_checkpoints_keep_them(prepared, tmp_path):
    config, data, _ = prepared
    averaged = dataclasses.replace(config, train=dataclasses.replace(
        config.train, steps_per_epoch=4, epochs=2, validation_steps=1, weight_averaging=0.9, deterministic=True,
        early_stopping_patience=0))
    run = str(tmp_path / "run")
    result = train(averaged, data, run)
    assert result.status == "completed"
    checkpoints = os.path.join(run, "checkpoints")
    first = tf.train.load_checkpoint(os.path.join(checkpoints, "ckpt-1"))
    second = tf.train.load_checkpoint(os.path.join(checkpoints, "ckpt-2"))
    averages = sorted(k for k in second.get_variable_to_shape_map() if k.startswith("weight_average/averages/"))
    assert averages

    # The best checkpoint holds the averages, not the raw weights it trained on, and evaluation loads them.
    best = tf.train.load_checkpoint(result.best_checkpoint)
    raw = first if result.best_checkpoint.endswith("-1") else second
    kernel = "core/layer_with_weights-0/encoder/attention/kernel/.ATTRIBUTES/VARIABLE_VALUE"  # MAN's gates
    in_best = best.get_tensor(kernel)
    assert not np.allclose(raw.get_tensor(kernel), in_best)
    assert any(raw.get_tensor(k).shape == in_best.shape and np.allclose(raw.get_tensor(k), in_best) for k in averages)
    _, _, network, _ = restore_run(run, data)
    assert any(v.shape == in_best.shape and np.allclose(v.numpy(), in_best) for v in network.core.variables)

    # A resume restores the averages: the checkpoint holds them under the module the trainer adds to it.
    keys = [f"weight_average/averages/{i}/.ATTRIBUTES/VARIABLE_VALUE" for i in range(len(averages))]
    shapes = first.get_variable_to_shape_map()
    fresh = WeightAverage([tf.Variable(tf.zeros(shapes[k])) for k in keys], decay=0.9)
    tf.train.Checkpoint(weight_average=fresh).restore(os.path.join(checkpoints, "ckpt-1")).expect_partial()
    for key, average in zip(keys, fresh.averages):
        np.testing.assert_array_equal(average.numpy(), first.get_tensor(key))
