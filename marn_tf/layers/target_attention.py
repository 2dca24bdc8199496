"""Target attention (DIN's activation unit): the candidate item weighs the user's behaviour states.

For candidate representation q and behaviour states k_1..k_T (the GRU outputs over the sequence):

    a_t = MLP([q, k_t, q - k_t, q ⊙ k_t])        a scalar score per position
    u   = sum_t w_t k_t,   w_t = a_t (DIN, unnormalised) or softmax_t(a_t) ("softmax")

Positions beyond the sequence length (mask 0) get weight 0 and change nothing; an empty sequence
gives u = 0.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

NORMALIZATIONS = ("none", "softmax")


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class TargetAttention(tf.keras.layers.Layer):
    """DIN-style attention pooling of a sequence, queried by the candidate.

    Args:
      hidden_units: widths of the activation unit's hidden layers.
      activation: their activation ("sigmoid" as DIN; "relu" is a common alternative).
      normalize: "none" (DIN: weights are the raw scores) or "softmax" over valid positions.

    Inputs: `query` [batch, d], `keys` [batch, T, d], `mask` [batch, T].
    Outputs: `pooled` [batch, d] and `weights` [batch, T] (0 at masked positions).
    """

    def __init__(self, hidden_units: Sequence[int] = (80, 40), activation: str = "sigmoid",
                 normalize: str = "none", **kwargs):
        super().__init__(**kwargs)
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.hidden_units = list(hidden_units)
        self.activation = activation
        self.normalize = normalize
        self.scorer = tf.keras.Sequential(
            [tf.keras.layers.Dense(u, activation=activation, name=f"hidden_{i}") for i, u in enumerate(hidden_units)]
            + [tf.keras.layers.Dense(1, name="score")], name="activation_unit")

    def call(self, inputs):
        query, keys, mask = inputs
        mask = tf.cast(mask, keys.dtype)
        q = tf.broadcast_to(query[:, tf.newaxis, :], tf.shape(keys))
        scores = tf.squeeze(self.scorer(tf.concat([q, keys, q - keys, q * keys], axis=-1)), -1)  # [batch, T]
        if self.normalize == "softmax":
            scores += (1.0 - mask) * scores.dtype.min
            weights = tf.nn.softmax(scores, axis=-1) * mask  # an empty sequence: all zero
        else:
            weights = scores * mask
        return tf.reduce_sum(weights[:, :, tf.newaxis] * keys, axis=1), weights

    def get_config(self) -> dict:
        return {**super().get_config(), "hidden_units": self.hidden_units, "activation": self.activation,
                "normalize": self.normalize}
