"""The task builds the network, the compiled model and the inputs a run trains on, from the config alone."""
import collections
import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.config_loader import ConfigError
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


def test_training_ends_with_the_epoch_in_which_the_learning_rates_reach_zero(prepared):
    """The epochs after the decay's last step would not move a weight: they are not run, unless weight averaging,
    whose average still moves, is on."""
    config, data, schema = prepared
    passes = 6.5 * 32 / schema.split_examples["train"]  # 7 steps: the decay ends in epoch 3 of 3-step epochs
    settings = dict(batch_size=32, steps_per_epoch=3, epochs=5, learning_rate_decay_passes=passes)
    task = CtrTask(with_train(config, **settings), data)
    assert task.decay_steps() == 7 and task.epochs_to_run() == 3
    assert CtrTask(with_train(config, **{**settings, "epochs": 2}), data).epochs_to_run() == 2
    assert CtrTask(with_train(config, **{**settings, "weight_averaging": 0.9}), data).epochs_to_run() == 5
    assert CtrTask(with_train(config, **{**settings, "learning_rate_decay_passes": 0}), data).epochs_to_run() == 5


def examples(batches) -> list[tuple]:
    """Each example of indexed batches as the tuple of all its feature values."""
    out = []
    for features, label in batches:
        columns = [features[k].numpy().reshape(len(label), -1) for k in sorted(features)] + [label.numpy()[:, None]]
        out += [tuple(row) for row in np.concatenate([c.astype(np.float64) for c in columns], axis=1).tolist()]
    return out


def test_validation_steps_validate_on_a_fixed_sample_from_across_the_split(prepared):
    """With `train.validation_steps`, a validation pass takes its batches from a random sample of the whole split
    drawn with `train.seed`, not from the split's first (user-clustered) records: the same examples on every pass
    and in every run with that seed, other examples with another seed."""
    config, data, schema = prepared
    steps, size = 2, 32

    def validated(seed):
        task = CtrTask(with_train(config, validation_steps=steps, batch_size=size, seed=seed), data)
        inputs = task.build_inputs("validation", task.build_network())
        return examples(inputs.take(steps)), examples(inputs.take(steps))

    whole_task = CtrTask(with_train(config, batch_size=size), data)
    in_order = examples(whole_task.build_inputs("validation", whole_task.build_network()))
    assert len(in_order) == schema.split_examples["validation"] > 3 * steps * size
    first, again = validated(seed=5)
    assert len(first) == steps * size and again == first  # the same sample on the next pass
    assert validated(seed=5)[0] == first  # and in another run with the seed
    assert validated(seed=6)[0] != first
    assert first != in_order[:steps * size]
    where = [in_order.index(example) for example in first]  # every one an example of the split
    assert len(set(where)) == len(where) and max(where) > 2 * steps * size  # the first records end at steps * size


def test_parameter_server_workers_read_disjoint_parts_that_make_one_pass(prepared):
    """Under parameter servers each worker reads part `index` of the training split (`CtrTask.read`'s `shard`): the
    workers' first batches differ, and one pass of every worker over its part is one pass over the split."""
    config, data, schema = prepared
    task = CtrTask(with_train(config, batch_size=32), data)
    network = task.build_network()
    total = schema.split_examples["train"]
    whole = collections.Counter(examples(task.read("train", network).unbatch().batch(total).take(1)))
    assert sum(whole.values()) == total
    passes = collections.Counter()
    firsts = []
    for index in (0, 1):
        part = task.read("train", network, shard=(2, index))
        firsts.append(examples(part.take(1)))
        size = len(range(index, total, 2))  # the split is one file: every other record
        one_pass = collections.Counter(examples(part.unbatch().batch(size).take(1)))
        assert max(one_pass.values()) == 1
        passes += one_pass
    assert firsts[0] != firsts[1]
    assert passes == whole


def test_parameter_servers_refuse_parquet_before_any_work(prepared, tmp_path):
    config, _, _ = prepared
    config = dataclasses.replace(with_train(config, source="parquet", validation_steps=2),
                                 runtime=dataclasses.replace(config.runtime, strategy="parameter_server"))
    with pytest.raises(ConfigError, match="train.source=parquet .* use the TFRecords"):
        CtrTask(config, str(tmp_path))  # no data there: the config is refused first
