"""The title encoder: word embeddings through a 1-D text CNN with max-pooling over time (Kim, 2014).

For word embeddings x_1..x_L of a title and each kernel size k:

    h_k = max_t relu(Conv1D_k(x)_t)      over the windows inside the title's length

and the title vector is [h_2, h_3, h_4, ...] (filters per kernel size each). Positions after the
title are zeroed and windows starting there are left out of the max (a title shorter than a kernel
keeps its one window); a missing title (length 0) gives zeros, and the caller marks the text
modality as missing.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class TextCNN(tf.keras.layers.Layer):
    """Convolution + max-pool over time, one branch per kernel size, concatenated.

    Args:
      filters: output channels per kernel size.
      kernel_sizes: window widths in words.

    Inputs: `embedded` [batch, L, d] word embeddings, `length` [batch] words in each title.
    Output: [batch, filters * len(kernel_sizes)].
    """

    def __init__(self, filters: int = 32, kernel_sizes: Sequence[int] = (2, 3, 4), **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_sizes = list(kernel_sizes)
        self.convolutions = [tf.keras.layers.Conv1D(filters, k, activation="relu", name=f"conv_{k}")
                             for k in self.kernel_sizes]

    def call(self, inputs):
        embedded, length = inputs
        max_len = tf.shape(embedded)[1]
        length = tf.cast(length, tf.int32)
        in_title = tf.sequence_mask(length, max_len, dtype=embedded.dtype)[:, :, tf.newaxis]
        embedded *= in_title  # padding positions contribute nothing, whatever their embedding
        pooled = []
        for k, conv in zip(self.kernel_sizes, self.convolutions):
            padded = tf.pad(embedded, [[0, 0], [0, tf.maximum(k - max_len, 0)], [0, 0]])  # titles shorter than k
            features = conv(padded)  # [batch, windows, filters]
            # A window starting at t covers words t..t+k-1; keep it if it starts inside the title
            # (a title shorter than k still gets its one window).
            valid = tf.sequence_mask(tf.maximum(length - k + 1, tf.minimum(length, 1)), tf.shape(features)[1])
            masked = tf.where(valid[:, :, tf.newaxis], features, tf.zeros_like(features))
            pooled.append(tf.reduce_max(masked, axis=1))  # relu >= 0, so 0 is a neutral fill
        return tf.concat(pooled, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_sizes": self.kernel_sizes}
