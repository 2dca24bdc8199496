"""AUGRU: the attention score scales the update gate."""
import numpy as np
import tensorflow as tf

from marn_tf.layers.augru import AUGRUCell
from tests.testing import assert_config_round_trip, assert_gradients_reach

RNG = np.random.default_rng(0)
X = tf.constant(RNG.normal(size=(3, 5)), tf.float32)
H = tf.constant(RNG.normal(size=(3, 4)), tf.float32)


def step(cell, score):
    return cell(tf.concat([X, tf.fill([3, 1], score)], -1), [H])[0].numpy()


def test_zero_attention_keeps_the_state():
    cell = AUGRUCell(4)
    np.testing.assert_allclose(step(cell, 0.0), H.numpy(), rtol=1e-6)


def test_attention_one_is_a_gru_step_and_scores_interpolate():
    cell = AUGRUCell(4)
    full, half = step(cell, 1.0), step(cell, 0.5)
    x_r, x_u, x_h = np.split(X.numpy() @ cell.kernel.numpy() + cell.bias.numpy(), 3, -1)
    h_r, h_u, h_h = np.split(H.numpy() @ cell.recurrent_kernel.numpy(), 3, -1)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    update, candidate = sigmoid(x_u + h_u), np.tanh(x_h + sigmoid(x_r + h_r) * h_h)
    np.testing.assert_allclose(full, (1 - update) * H.numpy() + update * candidate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(half, (1 - 0.5 * update) * H.numpy() + 0.5 * update * candidate, rtol=1e-5, atol=1e-6)


def test_in_an_rnn_and_config_round_trip():
    sequence = tf.constant(RNG.normal(size=(2, 3, 6)), tf.float32)  # 5 inputs + the score column
    assert tf.keras.layers.RNN(AUGRUCell(4))(sequence).shape == (2, 4)
    assert_config_round_trip(tf.keras.layers.RNN(AUGRUCell(4)), sequence)


def test_every_weight_trains_in_an_rnn():
    sequence = tf.constant(RNG.normal(size=(2, 3, 6)), tf.float32)
    assert_gradients_reach(tf.keras.layers.RNN(AUGRUCell(4)), sequence)
