"""Batch means that stay exact under tf.distribute.

A replica sees part of the global batch. Its loss is summed with the other replicas' when gradients are
all-reduced, so each replica returns *its share* of the global mean: its own weighted sum divided by
the weight summed over all replicas. One replica (or no strategy) gives the plain weighted mean, and
a 2-replica step on a global batch gives the same loss and gradients as 1 replica on that batch.
"""
from __future__ import annotations

import tensorflow as tf


def cross_replica_sum(value: tf.Tensor) -> tf.Tensor:
    """`value` summed over the replicas of the current step (itself outside a multi-replica step)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def replica_share_of_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """sum(values * weights) on this replica / sum(weights) on all replicas (0 when no weight)."""
    total = tf.stop_gradient(cross_replica_sum(tf.reduce_sum(weights)))
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), total)


def global_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """The weighted mean over the whole global batch, the same value on every replica."""
    return tf.math.divide_no_nan(cross_replica_sum(tf.reduce_sum(values * weights)),
                                 cross_replica_sum(tf.reduce_sum(weights)))
