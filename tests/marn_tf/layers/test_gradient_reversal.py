"""Gradient reversal: identity forward, gradient times -lambda backward, lambda adjustable in place."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.gradient_reversal import GradientReversal, dann_ramp
from tests.testing import assert_config_round_trip


def gradient(layer, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
    return y, tape.gradient(loss, x)


def test_identity_forward_and_reversed_scaled_gradient():
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), tf.float32)
    upstream = tf.constant(np.random.default_rng(1).normal(size=(4, 3)), tf.float32)
    y, grad = gradient(GradientReversal(0.3), x, upstream)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(grad.numpy(), -0.3 * upstream.numpy(), rtol=1e-6)


def test_the_sign_flips_a_descent_step_into_an_ascent_step():
    """Numerically: a step against the reversed gradient increases the loss of what follows."""
    w = tf.Variable([[0.5, -1.0]])
    layer, x = GradientReversal(1.0), tf.constant([[1.0], [2.0]])

    def loss():
        return tf.reduce_sum(tf.square(layer(x @ w) - 3.0))

    before = loss().numpy()
    with tf.GradientTape() as tape:
        value = loss()
    w.assign_sub(0.01 * tape.gradient(value, w))
    assert loss().numpy() > before


def test_coefficient_changes_in_place_inside_a_compiled_function():
    layer, x = GradientReversal(1.0), tf.ones((2, 2))

    @tf.function
    def grad_of_sum():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(layer(x))
        return tape.gradient(y, x)

    np.testing.assert_allclose(grad_of_sum().numpy(), -1.0)
    layer.set_coefficient(0.25)
    np.testing.assert_allclose(grad_of_sum().numpy(), -0.25)  # same trace, new value
    assert layer.current_coefficient == 0.25
    assert [w.name.split("/")[-1] for w in layer.non_trainable_weights] == ["coefficient:0"]


def test_config_round_trip():
    assert_config_round_trip(GradientReversal(0.7), tf.ones((2, 5)))


def test_dann_ramp_starts_at_zero_and_approaches_the_maximum():
    values = [float(dann_ramp(p / 10, max_coefficient=0.5)) for p in range(11)]
    assert values[0] == 0.0 and all(a < b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.5, rel=1e-3) and float(dann_ramp(2.0, 0.5)) == values[-1]
