"""Multimodal attention: shapes, per-modality gates, missing modalities left out, config round trip."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.modality_attention import ModalityAttention
from tests.testing import assert_config_round_trip, assert_gradients_reach

RNG = np.random.default_rng(0)
SPECIFIC = tf.constant(RNG.normal(size=(5, 4, 6)), tf.float32)  # batch 5, M = 4 modalities, d = 6
MASK = tf.constant([[1, 1, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], tf.float32)


@pytest.mark.parametrize("gate,width", [("vector", 6), ("scalar", 1)])
@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_shapes_and_missing_modalities_have_no_weight(gate, width, normalize):
    layer = ModalityAttention(4, gate=gate, normalize=normalize)
    fused, weights = layer([SPECIFIC, MASK])
    assert fused.shape == (5, 6) and weights.shape == (5, 4, width)
    assert np.all(weights.numpy()[MASK.numpy() == 0] == 0)
    np.testing.assert_allclose(fused[4].numpy(), 0.0)  # an item with no modality at all


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_a_missing_modality_changes_nothing_whatever_its_vector(normalize):
    layer = ModalityAttention(4, normalize=normalize)
    fused, _ = layer([SPECIFIC, MASK])
    noisy = tf.where(MASK[:, :, tf.newaxis] > 0, SPECIFIC, 1e3 * tf.ones_like(SPECIFIC))
    np.testing.assert_allclose(layer([noisy, MASK])[0].numpy(), fused.numpy(), rtol=1e-6)


def test_softmax_weights_sum_to_one_over_present_modalities():
    _, weights = ModalityAttention(4, normalize="softmax")([SPECIFIC, MASK])
    sums = tf.reduce_sum(weights, axis=1).numpy()  # [batch, d]
    np.testing.assert_allclose(sums[:4], 1.0, rtol=1e-6)
    np.testing.assert_allclose(sums[4], 0.0)


def test_tanh_gates_follow_the_formula_with_one_gate_per_modality():
    layer = ModalityAttention(4, gate="scalar")
    fused, weights = layer([SPECIFIC, MASK])
    kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
    s, m = SPECIFIC.numpy(), MASK.numpy()
    expected_w = np.tanh(np.einsum("bmd,mdw->bmw", s, kernel) + bias) * m[:, :, None]
    np.testing.assert_allclose(weights.numpy(), expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused.numpy(), (expected_w * s).sum(axis=1), rtol=1e-5, atol=1e-5)
    assert layer.kernel.shape == (4, 6, 1) and not np.allclose(kernel[0], kernel[1])


def test_no_gradient_reaches_a_missing_modality():
    layer = ModalityAttention(4)
    with tf.GradientTape() as tape:
        tape.watch(SPECIFIC)
        loss = tf.reduce_sum(layer([SPECIFIC, MASK])[0])
    grad = tape.gradient(loss, SPECIFIC).numpy()
    assert np.all(grad[MASK.numpy() == 0] == 0) and np.any(grad[MASK.numpy() == 1] != 0)


def test_config_round_trip_and_bad_options():
    assert_config_round_trip(ModalityAttention(4, gate="scalar", normalize="softmax"), [SPECIFIC, MASK])
    with pytest.raises(ValueError, match="gate must be one of"):
        ModalityAttention(4, gate="matrix")


@pytest.mark.parametrize("normalize", ["none", "softmax"])
def test_every_modalitys_gate_trains(normalize):
    assert_gradients_reach(ModalityAttention(4, gate="vector", normalize=normalize), [SPECIFIC, MASK])


def test_unit_scale_makes_the_fused_vector_blind_to_each_modalitys_scale():
    layer = ModalityAttention(4, unit_scale=True)
    fused, weights = layer([SPECIFIC, MASK])
    # factors of at least 1: UNIT_SCALE_EPSILON's share of a shrunk modality's mean square would exceed 1e-2
    rescaled = SPECIFIC * tf.constant([1.5, 3.0, 10.0, 2.0])[tf.newaxis, :, tf.newaxis]
    fused_rescaled, weights_rescaled = layer([rescaled, MASK])
    np.testing.assert_allclose(fused_rescaled.numpy(), fused.numpy(), rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(weights_rescaled.numpy(), weights.numpy(), rtol=1e-2, atol=1e-2)
    without = ModalityAttention(4)
    without([SPECIFIC, MASK])
    without.set_weights(layer.get_weights())
    assert not np.allclose(without([rescaled, MASK])[0].numpy(), without([SPECIFIC, MASK])[0].numpy(), atol=1e-2)


def test_the_gate_cost_is_the_mean_l1_of_the_present_gates_and_pulls_them_shut():
    layer = ModalityAttention(4, cost=0.5)
    _, weights = layer([SPECIFIC, MASK])
    expected = 0.5 * np.abs(weights.numpy()).mean(axis=-1).sum(axis=1).mean()
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0].numpy(), expected, rtol=1e-5)
    plain = ModalityAttention(4)
    plain([SPECIFIC, MASK])
    assert not plain.losses
    optimizer = tf.keras.optimizers.SGD(0.5)
    for _ in range(20):  # the cost alone: every present gate shrinks
        with tf.GradientTape() as tape:
            layer([SPECIFIC, MASK])
            loss = tf.add_n(layer.losses)
        optimizer.apply_gradients(zip(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables))
    shrunk = np.abs(layer([SPECIFIC, MASK])[1].numpy()).mean(axis=-1)
    assert shrunk[MASK.numpy() == 1].mean() < 0.5 * np.abs(weights.numpy()).mean(axis=-1)[MASK.numpy() == 1].mean()


def test_config_round_trip_with_unit_scale_and_cost():
    assert_config_round_trip(ModalityAttention(4, context="item", unit_scale=True, cost=0.01), [SPECIFIC, MASK])


def test_softmax_gates_of_an_item_with_every_modality_missing_are_zero_under_mixed_float16():
    """In float16, gate logits far below 0 plus the dtype's lowest value would overflow to -inf: an item with no
    modality must still get zero weights, a zero fused vector and finite gradients."""
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = ModalityAttention(4, normalize="softmax")
        layer([SPECIFIC, MASK])
        layer.bias.assign(-20.0 * tf.ones_like(layer.bias))
        with tf.GradientTape() as tape:
            fused, weights = layer([SPECIFIC, MASK])
            loss = tf.reduce_sum(tf.cast(fused, tf.float32))
        gradients = tape.gradient(loss, layer.trainable_weights)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    assert fused.dtype == tf.float16
    assert all(np.isfinite(tf.cast(t, tf.float32).numpy()).all() for t in [fused, weights, *gradients])
    np.testing.assert_array_equal(fused[4].numpy(), 0.0)
    sums = tf.reduce_sum(tf.cast(weights, tf.float32), axis=1).numpy()
    np.testing.assert_allclose(sums[:4], 1.0, atol=2e-3)
