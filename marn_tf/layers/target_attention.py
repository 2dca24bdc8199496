"""Target attention (DIN's activation unit): the candidate item weighs the user's behaviour states.

For candidate representation q and behaviour states k_1..k_T (the GRU outputs over the sequence):

    a_t = MLP([q, k_t, q - k_t, q ⊙ k_t])        a scalar score per position
    u   = sum_t w_t k_t,   w_t = a_t (DIN, unnormalised) or softmax_t(a_t) ("softmax")

Positions beyond the sequence length (mask 0) get weight 0 and change nothing; an empty sequence
gives u = 0 (also under mixed_float16: the softmax runs in float32).

The MLP's first layer is linear in its four inputs, so it is computed without building the [batch, T, 4d]
concatenation, from the same kernel W = [W_q; W_k; W_d; W_p]:

    W^T [q, k, q - k, q ⊙ k] = (W_q + W_d)^T q + (W_k - W_d)^T k + W_p^T (q ⊙ k)

which halves its cost (the q term is computed once per candidate, not once per position).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

NORMALIZATIONS = ("none", "softmax")
MASKED_LOGIT = -1e9  # a masked position's softmax logit: no weight, and finite in float32


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class TargetAttention(tf.keras.layers.Layer):
    """DIN-style attention pooling of a sequence, queried by the candidate.

    Args:
      hidden_units: widths of the activation unit's hidden layers.
      activation: their activation ("sigmoid" as DIN; "relu" is a common alternative).
      normalize: "none" (DIN: weights are the raw scores) or "softmax" over valid positions.

    Inputs: `query` [batch, d], `keys` [batch, T, d], `mask` [batch, T]; optionally `key_rows` [batch]: then
      `keys` is [rows, T, d] and query i attends over keys[key_rows[i]] (rows shared by several queries,
      e.g. one user's sequence with many candidates, are projected once).
    Call argument `values` ([batch or rows, T, dv], default the keys): what the weights pool, when the scores
      are computed over a narrower view of it.
    Outputs: `pooled` [batch, d] ([batch, dv] with `values`) and `weights` [batch, T] (0 at masked positions).
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

    def call(self, inputs, values=None):
        query, keys, mask = inputs[:3]
        key_rows = inputs[3] if len(inputs) > 3 else None
        mask = tf.cast(mask, keys.dtype)
        scores, keys = self._score(query, keys, key_rows)
        if values is not None:
            keys = tf.cast(values if key_rows is None else tf.gather(values, key_rows), keys.dtype)
        scores = tf.squeeze(scores, -1)  # [batch, T]
        if self.normalize == "softmax":
            # In float32 with a finite floor: under mixed_float16 a score plus float16's lowest value rounds to -inf,
            # and a row of -inf (an empty sequence) makes the softmax NaN.
            logits = tf.where(mask > 0, tf.cast(scores, tf.float32), MASKED_LOGIT)
            weights = tf.cast(tf.nn.softmax(logits, axis=-1), scores.dtype) * mask  # an empty sequence: all zero
        else:
            weights = scores * mask
        return tf.reduce_sum(weights[:, :, tf.newaxis] * keys, axis=1), weights

    def build(self, input_shape):
        shape = tf.TensorShape([None, 4 * input_shape[1][-1]])  # over [q, k, q - k, q ⊙ k]
        # Layer by layer in this layer's scope: `Sequential.build` would name them bare ("hidden_0/kernel"), the
        # same in every attention of a model, and a report by variable name could not tell them apart.
        with tf.name_scope(self.scorer.name):
            for layer in self.scorer.layers:
                with tf.name_scope(layer.name):
                    layer.build(shape)
                shape = layer.compute_output_shape(shape)
        self.scorer.built = True
        super().build(input_shape)

    def _score(self, query, keys, key_rows=None):
        """(scores [batch, T, 1], keys [batch, T, d])."""
        first, *rest = self.scorer.layers
        w_q, w_k, w_d, w_p = tf.split(tf.cast(first.kernel, keys.dtype), 4, axis=0)
        per_query = tf.matmul(query, w_q + w_d)[:, tf.newaxis, :]
        per_key = tf.einsum("btd,du->btu", keys, w_k - w_d)
        if key_rows is not None:
            per_key, keys = tf.gather(per_key, key_rows), tf.gather(keys, key_rows)
        product = tf.einsum("btd,du->btu", query[:, tf.newaxis, :] * keys, w_p)
        hidden = first.activation(per_query + per_key + product + tf.cast(first.bias, keys.dtype))
        for layer in rest:
            hidden = layer(hidden)
        return hidden, keys

    def get_config(self) -> dict:
        return {**super().get_config(), "hidden_units": self.hidden_units, "activation": self.activation,
                "normalize": self.normalize}
