"""Gradient reversal: the min-max game between the shared invariant projector and discriminator D1.

Forward it is the identity; backward it multiplies the gradient by -lambda:

    y = x,    dL/dx = -lambda * dL/dy

so D1 (after the layer) learns to tell modalities apart while the projector I (before it) learns to
make them indistinguishable, in one ordinary optimizer step (Ganin & Lempitsky, DANN, 2015).
"""
from __future__ import annotations


import tensorflow as tf


@tf.custom_gradient
def reverse_gradient(x, coefficient):
    """Identity on `x`; the gradient to `x` is multiplied by -coefficient (none flows to it)."""

    def grad(upstream):
        return -coefficient * upstream, tf.zeros_like(coefficient)

    return tf.identity(x), grad


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class GradientReversal(tf.keras.layers.Layer):
    """Identity forward, gradient times -coefficient backward.

    The coefficient lives in a non-trainable variable, so the train step can ramp it (`dann_ramp`) without
    retracing; it is saved with the model's weights.

    Args:
      coefficient: lambda_grl at the start of training.

    Input shape: any. Output shape: the same.
    """

    def __init__(self, coefficient: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.coefficient = coefficient
        self._coefficient = self.add_weight(
            name="coefficient", shape=(), dtype=tf.float32, trainable=False,
            initializer=tf.keras.initializers.Constant(coefficient),
            # set inside the train step on every replica, to the same value
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def call(self, inputs):
        return reverse_gradient(inputs, tf.cast(self._coefficient, inputs.dtype))

    def set_coefficient(self, value: float) -> None:
        self._coefficient.assign(value)

    @property
    def coefficient_variable(self) -> tf.Variable:
        return self._coefficient

    @property
    def current_coefficient(self) -> float:
        return float(self._coefficient.numpy())

    def get_config(self) -> dict:
        return {**super().get_config(), "coefficient": self.coefficient}


def dann_ramp(progress, max_coefficient: float = 1.0, gamma: float = 10.0) -> tf.Tensor:
    """The DANN schedule: lambda = max * (2 / (1 + exp(-gamma * p)) - 1), p in [0, 1] of training.

    Starts at 0 (discriminator signals are noise early on) and approaches `max_coefficient`. A float32 scalar
    tensor, so the train step computes it from the step counter in the graph.
    """
    p = tf.clip_by_value(tf.cast(progress, tf.float32), 0.0, 1.0)
    return max_coefficient * (2.0 / (1.0 + tf.exp(-gamma * p)) - 1.0)
