"""AUGRU, DIEN's GRU with an attentional update gate (Zhou et al., AAAI 2019).

With attention score a_t of step t for the candidate:

    r_t  = sigmoid(W_r x_t + U_r h_{t-1} + b_r)
    u_t  = sigmoid(W_u x_t + U_u h_{t-1} + b_u)
    h~_t = tanh(W_h x_t + r_t ⊙ (U_h h_{t-1}) + b_h)
    u'_t = a_t * u_t
    h_t  = (1 - u'_t) ⊙ h_{t-1} + u'_t ⊙ h~_t

so behaviour irrelevant to the candidate (a_t near 0) barely moves the interest state.
"""
from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class AUGRUCell(tf.keras.layers.Layer):
    """One AUGRU step, for `tf.keras.layers.RNN`.

    Args:
      units: state width.

    Input per step: [batch, input_dim + 1], the input with its attention score as the last column.
    State and output: [batch, units].
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        input_dim = int(input_shape[-1]) - 1
        self.kernel = self.add_weight(name="kernel", shape=(input_dim, 3 * self.units), initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(self.units, 3 * self.units),
                                                initializer="orthogonal")
        self.bias = self.add_weight(name="bias", shape=(3 * self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs, states):
        h = states[0] if isinstance(states, (list, tuple)) else states
        x, score = inputs[:, :-1], inputs[:, -1:]
        x_r, x_u, x_h = tf.split(tf.matmul(x, self.kernel) + self.bias, 3, axis=-1)
        h_r, h_u, h_h = tf.split(tf.matmul(h, self.recurrent_kernel), 3, axis=-1)
        reset = tf.sigmoid(x_r + h_r)
        update = score * tf.sigmoid(x_u + h_u)
        candidate = tf.tanh(x_h + reset * h_h)
        new_h = (1.0 - update) * h + update * candidate
        return new_h, [new_h]

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units}
