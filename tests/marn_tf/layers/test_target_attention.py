"""Target attention: DIN scores, masked positions, softmax option, config round trip."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.target_attention import TargetAttention
from tests.testing import assert_config_round_trip, weights_without_gradient

RNG = np.random.default_rng(0)
QUERY = tf.constant(RNG.normal(size=(4, 6)), tf.float32)
KEYS = tf.constant(RNG.normal(size=(4, 5, 6)), tf.float32)
MASK = tf.sequence_mask([5, 3, 1, 0], 5, dtype=tf.float32)


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_masked_positions_have_no_weight_and_change_nothing(normalize):
    layer = TargetAttention(hidden_units=[8], normalize=normalize)
    pooled, weights = layer([QUERY, KEYS, MASK])
    assert pooled.shape == (4, 6) and weights.shape == (4, 5)
    assert np.all(weights.numpy()[MASK.numpy() == 0] == 0)
    np.testing.assert_allclose(pooled[3].numpy(), 0.0)  # empty sequence
    noisy = tf.where(MASK[:, :, tf.newaxis] > 0, KEYS, 1e3 * tf.ones_like(KEYS))
    np.testing.assert_allclose(layer([QUERY, noisy, MASK])[0].numpy(), pooled.numpy(), rtol=1e-5, atol=1e-6)


def test_softmax_weights_sum_to_one_over_the_sequence():
    _, weights = TargetAttention(hidden_units=[8], normalize="softmax")([QUERY, KEYS, MASK])
    np.testing.assert_allclose(tf.reduce_sum(weights, -1).numpy(), [1, 1, 1, 0], rtol=1e-6, atol=1e-7)


def test_scores_depend_on_the_candidate():
    layer = TargetAttention(hidden_units=[8])
    _, weights = layer([QUERY, KEYS, MASK])
    _, other = layer([-QUERY, KEYS, MASK])
    assert not np.allclose(weights.numpy()[:3], other.numpy()[:3])


NUMPY_ACTIVATIONS = {"sigmoid": lambda x: 1 / (1 + np.exp(-x)), "relu": lambda x: np.maximum(x, 0)}


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_scores_are_the_activation_unit_over_the_concatenation(activation):
    """DIN's formula in numpy, from the layer's weights: a_t = MLP([q, k_t, q - k_t, q * k_t]) with the named
    activation on every hidden layer and a linear score."""
    layer = TargetAttention(hidden_units=[8, 3], activation=activation)
    _, weights = layer([QUERY, KEYS, MASK])
    q = np.broadcast_to(QUERY.numpy()[:, None, :], KEYS.shape).astype(np.float64)
    k = KEYS.numpy().astype(np.float64)
    hidden = np.concatenate([q, k, q - k, q * k], axis=-1)
    *dense, score = layer.scorer.layers
    for unit in dense:
        hidden = NUMPY_ACTIVATIONS[activation](hidden @ unit.kernel.numpy() + unit.bias.numpy())
    want = (hidden @ score.kernel.numpy() + score.bias.numpy())[..., 0] * MASK.numpy()
    np.testing.assert_allclose(weights.numpy(), want, rtol=1e-5, atol=1e-6)


def test_shared_key_rows_equal_repeated_keys():
    layer = TargetAttention(hidden_units=[8])
    rows = tf.constant([2, 0, 2, 1])  # four queries over three distinct sequences
    mask = tf.gather(MASK[:3], rows)
    shared = layer([QUERY, KEYS[:3], mask, rows])
    repeated = layer([QUERY, tf.gather(KEYS[:3], rows), mask])
    for a, b in zip(shared, repeated):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)


def test_pooled_is_the_weighted_sum_of_keys():
    pooled, weights = TargetAttention(hidden_units=[8])([QUERY, KEYS, MASK])
    np.testing.assert_allclose(pooled.numpy(), np.einsum("bt,btd->bd", weights.numpy(), KEYS.numpy()),
                               rtol=1e-5, atol=1e-6)


def test_given_values_are_pooled_by_the_keys_weights_also_with_shared_rows():
    layer = TargetAttention(hidden_units=[8])
    values = tf.constant(RNG.normal(size=(4, 5, 3)), tf.float32)
    pooled, weights = layer([QUERY, KEYS, MASK], values=values)
    assert pooled.shape == (4, 3)
    np.testing.assert_allclose(weights.numpy(), layer([QUERY, KEYS, MASK])[1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(pooled.numpy(), np.einsum("bt,btd->bd", weights.numpy(), values.numpy()),
                               rtol=1e-5, atol=1e-6)
    rows = tf.constant([2, 0, 2, 1])
    shared = layer([QUERY, KEYS[:3], tf.gather(MASK[:3], rows), rows], values=values[:3])[0]
    repeated = layer([QUERY, tf.gather(KEYS[:3], rows), tf.gather(MASK[:3], rows)], values=tf.gather(values[:3], rows))[0]
    np.testing.assert_allclose(shared.numpy(), repeated.numpy(), rtol=1e-6, atol=1e-7)


def test_config_round_trip_and_bad_option():
    assert_config_round_trip(TargetAttention(hidden_units=[8, 4], activation="relu", normalize="softmax"),
                             [QUERY, KEYS, MASK])
    with pytest.raises(ValueError, match="normalize must be one of"):
        TargetAttention(normalize="l2")


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_every_scorer_weight_trains(normalize):
    tf.keras.utils.set_random_seed(0)
    layer = TargetAttention(hidden_units=[8, 4], normalize=normalize)
    # a softmax over the positions cancels the score's constant: its last bias gets no gradient, by design
    assert weights_without_gradient(layer, [QUERY, KEYS, MASK]) == (
        [] if normalize == "none" else [f"{layer.name}/activation_unit/score/bias:0"])


@pytest.fixture
def mixed_float16():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    tf.keras.mixed_precision.set_global_policy("float32")


def finite(*tensors) -> bool:
    return all(np.isfinite(tf.cast(t, tf.float32).numpy()).all() for t in tensors)


def test_an_empty_sequence_gives_zero_under_mixed_float16(mixed_float16):
    """Softmax attention in float16: masked positions whose score is far below 0 (so that the score plus float16's
    lowest value would overflow to -inf) still give an empty sequence a zero output and finite gradients."""
    layer = TargetAttention(hidden_units=[8], normalize="softmax")
    layer([QUERY, KEYS, MASK])
    layer.scorer.layers[-1].bias.assign([-20.0])
    with tf.GradientTape() as tape:
        pooled, weights = layer([QUERY, KEYS, MASK])
        loss = tf.reduce_sum(tf.cast(pooled, tf.float32))
    assert pooled.dtype == tf.float16 and finite(pooled, weights)
    np.testing.assert_array_equal(pooled[3].numpy(), 0.0)
    np.testing.assert_allclose(tf.reduce_sum(tf.cast(weights, tf.float32), -1).numpy(), [1, 1, 1, 0], atol=2e-3)
    assert finite(*tape.gradient(loss, layer.trainable_weights))


def test_augru_interest_of_an_empty_history_is_finite_under_mixed_float16(mixed_float16):
    """AUGRU takes the softmax attention's weights as its update gates: an empty history gives the zero state."""
    from marn_tf.layers.user_interest import UserInterest

    layer = UserInterest("augru", units=6, attention_hidden=[8])
    layer([QUERY, KEYS, MASK])
    layer.attention.scorer.layers[-1].bias.assign([-20.0])
    with tf.GradientTape() as tape:
        interest, weights = layer([QUERY, KEYS, MASK])
        loss = tf.reduce_sum(tf.cast(interest, tf.float32))
    assert finite(interest, weights)
    np.testing.assert_array_equal(interest[3].numpy(), 0.0)
    assert finite(*tape.gradient(loss, layer.trainable_weights))
