"""Batch means under tf.distribute: each replica's share sums to the global mean; the global mean is the same on
every replica; outside a multi-replica step both are the plain weighted mean."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.replica_statistics import cross_replica_sum, global_mean, replica_share_of_mean

VALUES = tf.constant([1.0, 2.0, 3.0, 10.0])
WEIGHTS = tf.constant([1.0, 1.0, 0.0, 2.0])  # weighted mean: (1 + 2 + 20) / 4
MEAN = 23.0 / 4


def two_replicas():
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "tests/conftest.py configures 2 logical CPU devices"
    return tf.distribute.MirroredStrategy(devices[:2])


def per_replica(strategy, fn):
    """fn(values, weights) on each replica's half of the batch: the list of the replicas' results."""
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: (VALUES[ctx.replica_id_in_sync_group * 2:][:2], WEIGHTS[ctx.replica_id_in_sync_group * 2:][:2]))
    return [v.numpy() for v in strategy.experimental_local_results(strategy.run(tf.function(fn), args=halves))]


def test_outside_a_strategy_the_plain_weighted_mean():
    assert float(replica_share_of_mean(VALUES, WEIGHTS)) == pytest.approx(MEAN)
    assert float(global_mean(VALUES, WEIGHTS)) == pytest.approx(MEAN)
    assert float(cross_replica_sum(tf.constant(4.0))) == 4.0
    assert float(replica_share_of_mean(VALUES, tf.zeros(4))) == 0.0  # no weight: 0, not NaN


def test_two_replicas_shares_sum_to_the_global_mean():
    shares = per_replica(two_replicas(), replica_share_of_mean)
    assert shares == pytest.approx([3.0 / 4, 20.0 / 4])  # each its own sum over the global weight
    assert sum(shares) == pytest.approx(MEAN)


def test_two_replicas_see_the_same_global_mean_and_sum():
    strategy = two_replicas()
    assert per_replica(strategy, global_mean) == pytest.approx([MEAN, MEAN])
    assert per_replica(strategy, lambda v, w: cross_replica_sum(tf.reduce_sum(w))) == pytest.approx([4.0, 4.0])


def test_the_shares_gradient_is_the_global_means_gradient():
    """The global weight is a constant for the gradient: summed over replicas, d share / d values = w / sum(w)."""
    def gradient(values, weights):
        with tf.GradientTape() as tape:
            tape.watch(values)
            share = replica_share_of_mean(values, weights)
        return tape.gradient(share, values)

    grads = per_replica(two_replicas(), gradient)
    np.testing.assert_allclose(np.concatenate(grads), WEIGHTS.numpy() / 4.0, rtol=1e-6)
