"""Text CNN: output width, padding and short titles, missing titles, config round trip."""
import numpy as np
import tensorflow as tf

from marn_tf.layers.text_cnn import TextCNN
from tests.testing import assert_config_round_trip, assert_gradients_reach

RNG = np.random.default_rng(0)
EMBEDDED = tf.constant(RNG.normal(size=(4, 6, 5)), tf.float32)  # 4 titles, up to 6 words, d = 5
LENGTH = tf.constant([6, 3, 1, 0])


def test_output_width_and_missing_title():
    out = TextCNN(filters=7, kernel_sizes=[2, 3, 4])([EMBEDDED, LENGTH])
    assert out.shape == (4, 21)
    np.testing.assert_allclose(out[3].numpy(), 0.0)
    assert np.any(out[2].numpy() != 0)  # a one-word title still gets a vector from every kernel size


def test_padding_changes_nothing_whatever_it_holds():
    layer = TextCNN(filters=7)
    out = layer([EMBEDDED, LENGTH])
    inside = tf.sequence_mask(LENGTH, 6)[:, :, tf.newaxis]
    noisy = tf.where(inside, EMBEDDED, 1e3 * tf.ones_like(EMBEDDED))
    np.testing.assert_allclose(layer([noisy, LENGTH]).numpy(), out.numpy(), rtol=1e-5, atol=1e-5)


def test_word_order_matters_within_a_window():
    layer = TextCNN(filters=16, kernel_sizes=[2])
    a = layer([EMBEDDED[:1], LENGTH[:1]])
    b = layer([tf.reverse(EMBEDDED[:1], axis=[1]), LENGTH[:1]])
    assert not np.allclose(a.numpy(), b.numpy())


def test_config_round_trip():
    assert_config_round_trip(TextCNN(filters=3, kernel_sizes=[2, 4]), [EMBEDDED, LENGTH])


def test_every_kernel_size_trains():
    tf.keras.utils.set_random_seed(0)
    assert_gradients_reach(TextCNN(filters=16, kernel_sizes=[2, 4]), [EMBEDDED, LENGTH])
