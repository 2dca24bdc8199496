"""Distinct behaviour sequences of a batch: at inference, one user's sequence is encoded once for all its candidates.

A ranking request scores many candidates for one user, and every candidate row carries the same behaviour
sequence. Everything computed from the sequence alone (the behaviour items' vectors, their properties, the
GRU states) can run once per distinct sequence; only the target attention needs the candidate. This layer
finds the distinct sequences from the integer behaviour inputs (item indices, properties, length):

    first [rows]:     a batch row holding each distinct sequence
    position [batch]: which distinct sequence each batch row has

Rows are grouped by a 64-bit fingerprint and the grouping is then checked exactly; should two different
sequences ever share a fingerprint, every row stays its own sequence. Training batches are shuffled and
rarely repeat a sequence, so in training (or with `enabled=False`, for XLA's static shapes) the layer is
the identity: first = position = range(batch).
"""
from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class DistinctSequences(tf.keras.layers.Layer):
    """Args: enabled: find distinct sequences at inference (False: always the identity).

    Inputs: a list of integer tensors [batch, ...] that together define a row's sequence.
    Outputs: `first` [rows] and `position` [batch], int32.
    """

    def __init__(self, enabled: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.enabled = enabled

    def call(self, inputs, training=None):
        batch = tf.shape(inputs[0])[0]
        identity = tf.range(batch)
        if not self.enabled or training:
            return identity, identity
        rows = tf.concat([tf.reshape(tf.cast(x, tf.int64), [batch, -1]) for x in inputs], axis=1)
        _, position = tf.unique(tf.bitcast(tf.fingerprint(rows), tf.int64), out_idx=tf.int32)
        first = tf.math.unsorted_segment_min(identity, position, tf.reduce_max(position) + 1)
        exact = tf.reduce_all(tf.equal(rows, tf.gather(rows, tf.gather(first, position))))
        return tf.cond(exact, lambda: (first, position), lambda: (identity, identity))

    def get_config(self) -> dict:
        return {**super().get_config(), "enabled": self.enabled}
