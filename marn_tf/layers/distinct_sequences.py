"""Distinct behaviour sequences of a batch: at inference, one user's sequence is encoded once for all its candidates.

A ranking request scores many candidates for one user, and every candidate row carries the same behaviour
sequence. Everything computed from the sequence alone (the behaviour items' vectors, their properties, the
GRU states) can run once per distinct sequence; only the target attention needs the candidate. This layer
finds the distinct sequences from the integer behaviour inputs (item indices, properties, length):

    first [rows]:     a batch row holding each distinct sequence
    position [batch]: which distinct sequence each batch row has

Rows are grouped by a 64-bit fingerprint and the grouping is then checked exactly; should two different
sequences ever share a fingerprint, every row stays its own sequence. Only the inference network has this
layer (`marn_tf.models.network`): training batches are shuffled and rarely repeat a sequence, and the
gathers would make the training step's gradients sparse.
"""
from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class DistinctSequences(tf.keras.layers.Layer):
    """Inputs: a list of integer tensors [batch, ...] that together define a row's sequence.
    Outputs: `first` [rows] and `position` [batch], int32.
    """

    def call(self, inputs):
        batch = tf.shape(inputs[0])[0]
        identity = tf.range(batch)
        rows = tf.concat([tf.reshape(tf.cast(x, tf.int64), [batch, -1]) for x in inputs], axis=1)
        _, position = tf.unique(tf.bitcast(tf.fingerprint(rows), tf.int64), out_idx=tf.int32)
        first = tf.math.unsorted_segment_min(identity, position, tf.reduce_max(position) + 1)
        exact = tf.reduce_all(tf.equal(rows, tf.gather(rows, tf.gather(first, position))))
        return tf.cond(exact, lambda: (first, position), lambda: (identity, identity))
