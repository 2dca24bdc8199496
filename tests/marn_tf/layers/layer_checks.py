"""Checks every layer test uses."""
import numpy as np
import tensorflow as tf


def assert_config_round_trip(layer: tf.keras.layers.Layer, inputs) -> None:
    """A layer rebuilt from get_config (through Keras serialization) computes the same outputs."""
    expected = layer(inputs)
    clone = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
    clone(inputs)  # build
    clone.set_weights(layer.get_weights())
    for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(clone(inputs))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
    assert clone.get_config() == layer.get_config()
