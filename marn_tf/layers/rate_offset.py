"""The click rates as a learned offset on the model's logit (a "wide" part that starts at the no-model floor).

For the K features tagged `rate` (the candidate's smoothed click rate, the user's running click rate):

    offset = sum_k w_k * sum_positions logit(clip(r_k, 1e-3, 1 - 1e-3)),    w_k = 1 / K at the start

so a network whose deep part outputs about 0 at the start ranks as the no-model floor does
(`evaluation/floor.py` sums the same logits), and the deep part learns what counting misses.
"""
from __future__ import annotations

import tensorflow as tf

from marn_tf.layers.feature_embedding import rate_logit


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class RateOffset(tf.keras.layers.Layer):
    """Weighted sum of the rate features' logits.

    Args:
      names: the rate features, in the order of their weights.

    Input: a dict {name: tensor [batch] or [batch, ...]} of probabilities.
    Output: [batch] float32.
    """

    def __init__(self, names: list[str], **kwargs):
        super().__init__(**kwargs)
        if not names:
            raise ValueError("RateOffset needs at least one rate feature")
        self.names = list(names)

    def build(self, input_shape):
        self.rate_weights = self.add_weight(name="rate_weights", shape=(len(self.names),),
                                            initializer=tf.keras.initializers.Constant(1.0 / len(self.names)))
        super().build(input_shape)

    def call(self, inputs):
        logits = []
        for name in self.names:
            value = rate_logit(inputs[name])
            logits.append(tf.reduce_sum(tf.reshape(value, [tf.shape(value)[0], -1]), axis=1))
        return tf.linalg.matvec(tf.stack(logits, axis=1), tf.cast(self.rate_weights, tf.float32))

    def get_config(self) -> dict:
        return {**super().get_config(), "names": self.names}
