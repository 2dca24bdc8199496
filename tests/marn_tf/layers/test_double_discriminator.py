"""Double discriminators: D0 weights stop-gradient, D1 behind gradient reversal, Ds sharing D1, masks."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.double_discriminator import DoubleDiscriminator
from tests.marn_tf.layers.layer_checks import assert_config_round_trip

RNG = np.random.default_rng(0)
INVARIANT = tf.constant(RNG.normal(size=(6, 3, 5)), tf.float32)  # batch 6, M = 3, d = 5
SPECIFIC = tf.constant(RNG.normal(size=(6, 3, 5)), tf.float32)
MASK = tf.constant([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 1, 1], [0, 0, 1]], tf.float32)


def grads(layer, output_key, wrt):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([INVARIANT, SPECIFIC])
        out = layer([INVARIANT, SPECIFIC, MASK])
        target = tf.reduce_sum(out[output_key])
    return [tape.gradient(target, w) for w in wrt]


def test_outputs_and_importance_weights():
    out = DoubleDiscriminator(3)([INVARIANT, SPECIFIC, MASK])
    assert out["invariant"].shape == (6, 5) and out["importance"].shape == (6, 3)
    w, m = out["importance"].numpy(), MASK.numpy()
    assert np.all(w[m == 0] == 0) and np.all(w[m == 1] > 0)
    assert w[m == 1].mean() == pytest.approx(1.0, rel=1e-5)  # normalised over present modalities
    raw = DoubleDiscriminator(3, normalize_weights=False)([INVARIANT, SPECIFIC, MASK])["importance"].numpy()
    assert np.all((raw >= 0) & (raw <= 1))  # 1 - a probability
    for key in ("d0_loss", "d1_loss", "ds_loss", "d1_accuracy", "ds_accuracy"):
        assert out[key].shape == ()


def test_d0_learns_but_sends_no_gradient_to_the_invariant_vectors():
    layer = DoubleDiscriminator(3)
    layer([INVARIANT, SPECIFIC, MASK])  # build
    to_invariant, *to_d0 = grads(layer, "d0_loss", [INVARIANT] + layer.d0.trainable_variables)
    assert to_invariant is None or not np.any(to_invariant.numpy())
    assert all(g is not None and np.any(g.numpy()) for g in to_d0)
    # ...and the importance weights it produces are constants for everything else
    assert all(g is None for g in grads(layer, "invariant", layer.d0.trainable_variables))


def test_d1_gradient_to_the_projector_is_reversed():
    """Same D1 weights, coefficient 1 vs -1 (no reversal): the gradient into c^m flips sign."""
    layer = DoubleDiscriminator(3, grl_coefficient=1.0)
    (reversed_grad,) = grads(layer, "d1_loss", [INVARIANT])
    layer.gradient_reversal.set_coefficient(-1.0)
    (plain_grad,) = grads(layer, "d1_loss", [INVARIANT])
    assert np.any(plain_grad.numpy())
    np.testing.assert_allclose(reversed_grad.numpy(), -plain_grad.numpy(), rtol=1e-5, atol=1e-7)


def test_ds_shares_d1_variables_with_a_normal_gradient():
    layer = DoubleDiscriminator(3)
    layer([INVARIANT, SPECIFIC, MASK])
    d1_vars = {v.ref() for v in layer.d1.trainable_variables}
    assert {v.ref() for v in layer.trainable_variables} == d1_vars | {v.ref() for v in layer.d0.trainable_variables}
    to_specific, *to_d1 = grads(layer, "ds_loss", [SPECIFIC] + layer.d1.trainable_variables)
    assert np.any(to_specific.numpy()) and all(np.any(g.numpy()) for g in to_d1)
    # gradient descent on ds_loss lowers it: the specific vectors are pushed apart, not together
    step = SPECIFIC - 0.1 * to_specific
    before = layer([INVARIANT, SPECIFIC, MASK])["ds_loss"].numpy()
    assert layer([INVARIANT, step, MASK])["ds_loss"].numpy() < before


def test_missing_modalities_take_no_part():
    layer = DoubleDiscriminator(3)
    out = layer([INVARIANT, SPECIFIC, MASK])
    noise = 1e3 * tf.ones_like(INVARIANT)
    missing = MASK[:, :, tf.newaxis] == 0
    changed = layer([tf.where(missing, noise, INVARIANT), tf.where(missing, noise, SPECIFIC), MASK])
    for key in ("invariant", "importance", "d0_loss", "d1_loss", "ds_loss"):
        np.testing.assert_allclose(changed[key].numpy(), out[key].numpy(), rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    assert_config_round_trip(DoubleDiscriminator(3, hidden_units=[8, 4], grl_coefficient=0.2),
                             [INVARIANT, SPECIFIC, MASK])


def test_occurrence_weights_equal_repeating_the_items():
    """Encoding each unique item once, weighted by its occurrences, gives the losses of encoding every occurrence."""
    layer = DoubleDiscriminator(3)
    counts = tf.constant([1, 3, 0, 2, 1, 1], tf.float32)
    weighted = layer([INVARIANT, SPECIFIC, MASK, counts])
    rows = np.repeat(np.arange(6), counts.numpy().astype(int))
    repeated = layer([tf.gather(INVARIANT, rows), tf.gather(SPECIFIC, rows), tf.gather(MASK, rows)])
    for key in ("d0_loss", "d1_loss", "ds_loss", "d1_accuracy", "ds_accuracy"):
        np.testing.assert_allclose(weighted[key].numpy(), repeated[key].numpy(), rtol=1e-5)
    np.testing.assert_allclose(tf.gather(weighted["importance"], rows).numpy(), repeated["importance"].numpy(),
                               rtol=1e-5)


def test_single_mode_has_d1_only():
    layer = DoubleDiscriminator(3, mode="single")
    out = layer([INVARIANT, SPECIFIC, MASK])
    assert layer.d0 is None and out["d0_loss"].numpy() == 0.0
    np.testing.assert_array_equal(out["importance"].numpy(), MASK.numpy())  # w = 1 for present modalities
    (to_specific,) = grads(layer, "ds_loss", [SPECIFIC])
    assert to_specific is None or not np.any(to_specific.numpy())  # Ds only measures


def test_two_replicas_return_shares_of_the_global_mean():
    """Under MirroredStrategy each replica's losses sum to the 1-replica value on the whole batch."""
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest configures 2 logical CPU devices"
    strategy = tf.distribute.MirroredStrategy(devices[:2])
    with strategy.scope():
        layer = DoubleDiscriminator(3)
        layer([INVARIANT, SPECIFIC, MASK])
    whole = layer([INVARIANT, SPECIFIC, MASK])
    halves = strategy.experimental_distribute_values_from_function(
        lambda ctx: tuple(t[ctx.replica_id_in_sync_group * 3:(ctx.replica_id_in_sync_group + 1) * 3]
                          for t in (INVARIANT, SPECIFIC, MASK)))
    per_replica = strategy.run(tf.function(lambda *t: layer(list(t))), args=halves)
    for key in ("d0_loss", "d1_loss", "ds_loss", "d1_accuracy"):
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[key], axis=None)
        np.testing.assert_allclose(total.numpy(), whole[key].numpy(), rtol=1e-5)
