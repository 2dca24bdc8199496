"""Embeddings of the per-example features: user and context, the candidate's point-in-time counters,
and the behaviour property of each sequence position (type, time gap, point-in-time counters).

Each feature is one of
    {"kind": "categorical", "rows": n}    an index (a looked-up string or an int64 bucket), embedded
    {"kind": "numeric"}                   a count: log(1 + max(x, 0)), one column
and the layer concatenates them in order along the last axis.
"""
from __future__ import annotations

import tensorflow as tf

KINDS = ("categorical", "numeric")


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class FeatureEmbeddings(tf.keras.layers.Layer):
    """Concatenated embeddings of named features of any (equal) shape.

    Args:
      features: {name: spec} as above, in output order.
      dim: embedding width of every categorical feature.

    Input: a dict {name: tensor [batch, ...]} with at least these features.
    Output: [batch, ..., sum of widths].
    """

    def __init__(self, features: dict, dim: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.features = {name: dict(spec) for name, spec in features.items()}
        self.dim = dim
        self.embeddings = {}
        for name, spec in self.features.items():
            if spec["kind"] not in KINDS:
                raise ValueError(f"feature {name!r}: kind must be one of {KINDS}, got {spec['kind']!r}")
            if spec["kind"] == "categorical":
                self.embeddings[name] = tf.keras.layers.Embedding(spec["rows"], dim, name=f"{name}_embedding")

    def call(self, inputs):
        parts = []
        for name, spec in self.features.items():
            value = inputs[name]
            if spec["kind"] == "numeric":
                parts.append(tf.math.log1p(tf.maximum(tf.cast(value, self.compute_dtype), 0.0))[..., tf.newaxis])
                continue
            parts.append(self.embeddings[name](value))
        return tf.concat(parts, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "features": self.features, "dim": self.dim}
