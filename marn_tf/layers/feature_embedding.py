"""Embeddings of the per-example features: user and context, the candidate's point-in-time counters,
and the behaviour property of each sequence position (type, time gap, point-in-time counters).

Each feature is one of
    {"kind": "categorical", "rows": n}    an index (a looked-up string or an int64 bucket), embedded
    {"kind": "numeric"}                   a count: log(1 + max(x, 0)), one column
    {"kind": "rate"}                      a probability: logit(clip(x, 1e-3, 1 - 1e-3)), one column (the
                                          scale on which rates add up, as in the no-model floor)
and the layer concatenates them in order along the last axis. With `embedding_l2` > 0 the looked-up rows
add embedding_l2 * mean ||e||^2 to the layer's losses (as `ModalityEmbeddings` does).
"""
from __future__ import annotations

import tensorflow as tf

KINDS = ("categorical", "numeric", "rate")
RATE_EPSILON = 1e-3  # rates are clipped to [RATE_EPSILON, 1 - RATE_EPSILON]: finite logits


def rate_logit(rate: tf.Tensor) -> tf.Tensor:
    """logit(clip(rate, RATE_EPSILON, 1 - RATE_EPSILON)) in float32: the scale on which the floor sums rates."""
    p = tf.clip_by_value(tf.cast(rate, tf.float32), RATE_EPSILON, 1.0 - RATE_EPSILON)
    return tf.math.log(p) - tf.math.log1p(-p)


def mean_squared_norm(rows: tf.Tensor, weights=None) -> tf.Tensor:
    """Mean over looked-up rows [..., dim] of their squared L2 norm, in float32. With `weights` [n], the rows
    [n, ..., dim] of n items: the weighted mean over the items of each item's mean."""
    squared = tf.reduce_sum(tf.square(tf.cast(rows, tf.float32)), axis=-1)
    if weights is None:
        return tf.reduce_mean(squared)
    return weighted_mean(tf.reduce_mean(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=1), weights)


def weighted_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """sum(values * weights) / sum(weights) over [n] values, in float32 (0 when no weight)."""
    weights = tf.cast(weights, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(tf.cast(values, tf.float32) * weights), tf.reduce_sum(weights))


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class FeatureEmbeddings(tf.keras.layers.Layer):
    """Concatenated embeddings of named features of any (equal) shape.

    Args:
      features: {name: spec} as above, in output order.
      dim: embedding width of every categorical feature.
      embedding_l2: weight of the L2 penalty on looked-up rows (0: none).

    Input: a dict {name: tensor [batch, ...]} with at least these features.
    Output: [batch, ..., sum of widths].
    """

    def __init__(self, features: dict, dim: int = 8, embedding_l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.features = {name: dict(spec) for name, spec in features.items()}
        self.dim = dim
        self.embedding_l2 = embedding_l2
        self.embeddings = {}
        for name, spec in self.features.items():
            if spec["kind"] not in KINDS:
                raise ValueError(f"feature {name!r}: kind must be one of {KINDS}, got {spec['kind']!r}")
            if spec["kind"] == "categorical":
                self.embeddings[name] = tf.keras.layers.Embedding(spec["rows"], dim, name=f"{name}_embedding")

    def call(self, inputs):
        parts, looked_up = [], []
        for name, spec in self.features.items():
            value = inputs[name]
            if spec["kind"] == "numeric":
                parts.append(tf.math.log1p(tf.maximum(tf.cast(value, self.compute_dtype), 0.0))[..., tf.newaxis])
                continue
            if spec["kind"] == "rate":
                parts.append(tf.cast(rate_logit(value), self.compute_dtype)[..., tf.newaxis])
                continue
            looked_up.append(self.embeddings[name](value))
            parts.append(looked_up[-1])
        if self.embedding_l2 and looked_up:
            self.add_loss(self.embedding_l2 * tf.add_n([mean_squared_norm(e) for e in looked_up]))
        return tf.concat(parts, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "features": self.features, "dim": self.dim,
                "embedding_l2": self.embedding_l2}
