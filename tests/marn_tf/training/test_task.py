"""The task builds the network, the compiled model and the inputs a run trains on, from the config alone."""
import math

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.training.task import CtrTask
from tests.testing import with_train

pytestmark = pytest.mark.integration


def first_items(task, network, split="train"):
    return next(iter(task.build_inputs(split, network)))[0]["item_id"].numpy()


def test_the_training_order_is_seeded(prepared):
    config, data, _ = prepared
    tasks = [CtrTask(with_train(config, seed=seed, batch_size=64), data) for seed in (3, 3, 4)]
    network = tasks[0].build_network()
    same, again, other = (first_items(task, network) for task in tasks)
    assert same.dtype == np.int64 and len(same) == 64  # vocabulary indices: what the core model takes
    np.testing.assert_array_equal(same, again)
    assert not np.array_equal(same, other)


def test_the_model_carries_the_configured_optimizers_and_averaging(prepared):
    config, data, _ = prepared
    task = CtrTask(with_train(config, optimizer="sgd", learning_rate=0.05, discriminator_learning_rate=0.002,
                              weight_averaging=0.9, learning_rate_decay_passes=0), data)
    model = task.build_model(task.build_network())
    model_optimizer, discriminator_optimizer = (o for o, _ in model.optimizer._optimizers_and_vars)
    assert isinstance(model_optimizer, tf.keras.optimizers.legacy.SGD)
    assert model_optimizer.learning_rate.numpy() == pytest.approx(0.05)
    assert discriminator_optimizer.learning_rate.numpy() == pytest.approx(0.002)
    # the configured decay, over the weights the model trains (the discriminators' are not averaged)
    assert model.weight_average.decay == 0.9
    assert [v.ref() for v in model.weight_average.variables_to_average] == [v.ref() for v in model.model_variables]
    with pytest.raises(ValueError, match="split must be one of"):
        task.build_inputs("test", None)


def test_decayed_learning_rates_reach_zero_and_the_weights_stop(prepared):
    """`train.learning_rate_decay_passes`: a cosine to 0 for both optimizers over that many passes over the training
    split, after which no step moves a weight."""
    config, data, schema = prepared
    passes = 1.5 * 32 / schema.split_examples["train"]  # 1.5 batches of 32: 2 steps
    task = CtrTask(with_train(config, learning_rate=0.01, learning_rate_decay_passes=passes, batch_size=32), data)
    assert task.decay_steps() == 2
    n = schema.split_examples["train"]
    assert CtrTask(with_train(config, batch_size=32), data).decay_steps() == math.ceil(2.5 * n / 32)  # the default
    assert CtrTask(with_train(config, batch_size=32, learning_rate_decay_passes=0), data).decay_steps() == 0
    network = task.build_network()
    model = task.build_model(network)
    batches = list(task.build_inputs("train", network).take(4))
    weights = lambda: [w.numpy() for w in network.core.trainable_weights]  # noqa: E731
    start = weights()
    for features, label in batches[:2]:
        model.train_on_batch(features, label)
    decayed = weights()
    for features, label in batches[2:]:
        model.train_on_batch(features, label)
    assert any(not np.array_equal(a, b) for a, b in zip(start, decayed))  # the first steps move the weights
    for a, b in zip(decayed, weights()):
        np.testing.assert_array_equal(a, b)  # from step 2 on the rate is 0
