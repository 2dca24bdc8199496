"""Double discriminators: D0 weights, the D1 game (confusion and reversal), Ds, alignment, masks."""
import math

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.double_discriminator import DISCRIMINATOR_OUTPUTS, DoubleDiscriminator, ModalityClassifier
from tests.testing import assert_config_round_trip, assert_gradients_reach, weights_without_gradient

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
    raw = DoubleDiscriminator(3, normalize_weights=False, importance_floor=0.3)(
        [INVARIANT, SPECIFIC, MASK])["importance"].numpy()
    assert np.all((raw[m == 1] >= 0.3) & (raw[m == 1] <= 1))  # 1 - a probability, clipped below
    for key in DISCRIMINATOR_OUTPUTS:
        assert out[key].shape == ()


def test_chance_is_the_accuracy_of_always_naming_the_most_common_present_modality():
    """Modalities present unequally often: chance is the most common one's share of the present vectors, not 1/M,
    and occurrence weights count as they do in the accuracies."""
    out = DoubleDiscriminator(3)([INVARIANT, SPECIFIC, MASK])
    assert float(out["d1_chance"]) == pytest.approx(5 / 13)  # present: 4, 4 and 5 vectors
    weights = tf.constant([1, 1, 1, 1, 1, 10], tf.float32)  # the last item holds only modality 2
    weighted = DoubleDiscriminator(3)([INVARIANT, SPECIFIC, MASK, weights])
    assert float(weighted["d1_chance"]) == pytest.approx(14 / 22)
    everything = DoubleDiscriminator(3)([INVARIANT, SPECIFIC, tf.ones_like(MASK)])
    assert float(everything["d1_chance"]) == pytest.approx(1 / 3)


def test_d0_learns_but_sends_no_gradient_to_the_invariant_vectors():
    layer = DoubleDiscriminator(3)
    layer([INVARIANT, SPECIFIC, MASK])  # build
    to_invariant, *to_d0 = grads(layer, "d0_loss", [INVARIANT] + layer.d0.trainable_variables)
    assert to_invariant is None or not np.any(to_invariant.numpy())
    assert all(g is not None and np.any(g.numpy()) for g in to_d0)
    # ...and the importance weights it produces are constants for everything else
    assert all(g is None for g in grads(layer, "invariant", layer.d0.trainable_variables))


def test_reversal_objective_reverses_d1s_gradient_to_the_projector():
    """Same D1 weights, coefficient 1 vs -1 (no reversal): the gradient into c^m flips sign."""
    layer = DoubleDiscriminator(3, grl_coefficient=1.0, objective="reversal")
    (reversed_grad,) = grads(layer, "d1_loss", [INVARIANT])
    layer.gradient_reversal.set_coefficient(-1.0)
    (plain_grad,) = grads(layer, "d1_loss", [INVARIANT])
    assert np.any(plain_grad.numpy())
    np.testing.assert_allclose(reversed_grad.numpy(), -plain_grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("objective", ["capped", "confusion"])
def test_the_encoders_objective_splits_the_game(objective):
    """D1's loss trains D1 alone; the encoder's loss trains the encoder alone, toward D1 at chance."""
    layer = DoubleDiscriminator(3, grl_coefficient=1.0, objective=objective)
    out = layer([INVARIANT, SPECIFIC, MASK])
    if objective == "confusion":  # cross-entropy to uniform: bounded below by its entropy
        assert out["confusion_loss"].numpy() >= math.log(3) - 1e-5
    to_invariant, *to_d1 = grads(layer, "d1_loss", [INVARIANT] + layer.d1.trainable_variables)
    assert to_invariant is None or not np.any(to_invariant.numpy())
    assert all(np.any(g.numpy()) for g in to_d1)
    to_invariant, *to_d1 = grads(layer, "confusion_loss", [INVARIANT] + layer.d1.trainable_variables)
    assert np.any(to_invariant.numpy()) and all(g is None or not np.any(g.numpy()) for g in to_d1)
    # descending the confusion loss moves D1's prediction toward uniform
    moved = INVARIANT - 0.5 * to_invariant
    assert layer([moved, SPECIFIC, MASK])["confusion_loss"].numpy() < out["confusion_loss"].numpy()
    layer.set_coefficient(0.0)
    assert layer([INVARIANT, SPECIFIC, MASK])["confusion_loss"].numpy() == 0.0  # the ramp's start


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_capped_objective_pushes_only_vectors_d1_gets_better_than_chance(margin):
    """max(0, log M + margin - CE): the reversal's push until D1 is (a margin under) chance on a vector, then none."""
    layer = DoubleDiscriminator(3, grl_coefficient=1.0, objective="capped", normalize_weights=False,
                                importance_floor=1.0, mode="single", margin=margin)
    layer([INVARIANT, SPECIFIC, MASK])
    logits = layer.d1(INVARIANT)
    ce = tf.nn.softmax_cross_entropy_with_logits(labels=tf.broadcast_to(tf.eye(3), [6, 3, 3]), logits=logits)
    expected = tf.reduce_sum(tf.nn.relu(math.log(3) + margin - ce) * MASK) / tf.reduce_sum(MASK)
    out = layer([INVARIANT, SPECIFIC, MASK])
    np.testing.assert_allclose(out["confusion_loss"].numpy(), expected.numpy(), rtol=1e-5)
    assert 0.0 <= out["confusion_loss"].numpy() <= math.log(3) + margin  # bounded both ways


def test_importance_weighs_d1s_loss_or_scales_its_input():
    layer = DoubleDiscriminator(3, importance_weighting="loss")
    out = layer([INVARIANT, SPECIFIC, MASK])
    logits = layer.d1(INVARIANT)
    per_vector = tf.nn.softmax_cross_entropy_with_logits(labels=tf.broadcast_to(tf.eye(3), [6, 3, 3]), logits=logits)
    w = out["importance"] * MASK
    expected = tf.reduce_sum(per_vector * w) / tf.reduce_sum(w)
    np.testing.assert_allclose(out["d1_loss"].numpy(), expected.numpy(), rtol=1e-5)
    scaled = DoubleDiscriminator(3, importance_weighting="scale")
    out = scaled([INVARIANT, SPECIFIC, MASK])
    logits = scaled.d1(out["importance"][:, :, tf.newaxis] * INVARIANT)
    per_vector = tf.nn.softmax_cross_entropy_with_logits(labels=tf.broadcast_to(tf.eye(3), [6, 3, 3]), logits=logits)
    expected = tf.reduce_sum(per_vector * MASK) / tf.reduce_sum(MASK)
    np.testing.assert_allclose(out["d1_loss"].numpy(), expected.numpy(), rtol=1e-5)


def test_ds_has_its_own_network_unless_shared():
    layer = DoubleDiscriminator(3)
    layer([INVARIANT, SPECIFIC, MASK])
    assert not {v.ref() for v in layer.ds.trainable_variables} & {v.ref() for v in layer.d1.trainable_variables}
    to_ds = grads(layer, "ds_loss", layer.ds.trainable_variables)
    assert all(np.any(g.numpy()) for g in to_ds)


def test_alignment_rewards_agreeing_modalities_and_punishes_collapse():
    """The same item's invariant vectors alike across modalities and unlike other items': low loss; every
    vector the same (collapse): log(items)."""
    layer = DoubleDiscriminator(3, alignment_temperature=0.1)
    full = tf.ones_like(MASK)
    item = tf.constant(RNG.normal(size=(6, 1, 5)), tf.float32)
    aligned = layer([tf.tile(item, [1, 3, 1]), SPECIFIC, full])["alignment_loss"].numpy()
    random = layer([INVARIANT, SPECIFIC, full])["alignment_loss"].numpy()
    collapsed = layer([tf.ones_like(INVARIANT), SPECIFIC, full])["alignment_loss"].numpy()
    assert aligned < random
    assert collapsed == pytest.approx(math.log(6), rel=1e-4)
    assert DoubleDiscriminator(3, alignment_items=0)([INVARIANT, SPECIFIC, full])["alignment_loss"].numpy() == 0.0


def test_shared_ds_is_d1_with_a_normal_gradient():
    layer = DoubleDiscriminator(3, share_discriminator=True)
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
    for key in ("invariant", "importance", "d0_loss", "d1_loss", "confusion_loss", "ds_loss", "alignment_loss"):
        np.testing.assert_allclose(changed[key].numpy(), out[key].numpy(), rtol=1e-5, atol=1e-6)


def test_config_round_trip():
    assert_config_round_trip(DoubleDiscriminator(3, hidden_units=[8, 4], grl_coefficient=0.2, objective="reversal",
                                                 share_discriminator=True, importance_weighting="scale",
                                                 importance_floor=0.2, alignment_items=4, alignment_temperature=0.5,
                                                 specific_probe=True),
                             [INVARIANT, SPECIFIC, MASK])


def test_occurrence_weights_equal_repeating_the_items():
    """Encoding each unique item once, weighted by its occurrences, gives the losses of encoding every occurrence."""
    layer = DoubleDiscriminator(3)
    counts = tf.constant([1, 3, 0, 2, 1, 1], tf.float32)
    weighted = layer([INVARIANT, SPECIFIC, MASK, counts])
    rows = np.repeat(np.arange(6), counts.numpy().astype(int))
    repeated = layer([tf.gather(INVARIANT, rows), tf.gather(SPECIFIC, rows), tf.gather(MASK, rows)])
    # (not the alignment term: repeating an item makes it its own negative)
    for key in ("d0_loss", "d1_loss", "confusion_loss", "ds_loss", "d1_accuracy", "ds_accuracy"):
        np.testing.assert_allclose(weighted[key].numpy(), repeated[key].numpy(), rtol=1e-5)
    np.testing.assert_allclose(tf.gather(weighted["importance"], rows).numpy(), repeated["importance"].numpy(),
                               rtol=1e-5)


def test_single_mode_has_d1_only():
    layer = DoubleDiscriminator(3, mode="single")
    out = layer([INVARIANT, SPECIFIC, MASK])
    assert layer.d0 is None and out["d0_loss"].numpy() == 0.0
    np.testing.assert_array_equal(out["importance"].numpy(), MASK.numpy())  # w = 1 for present modalities
    to_specific, *to_ds = grads(layer, "ds_loss", [SPECIFIC] + layer.ds.trainable_variables)
    assert to_specific is None or not np.any(to_specific.numpy())  # Ds only measures: it moves no s^m
    assert all(np.any(g.numpy()) for g in to_ds)  # but learns, so that what it measures means something


@pytest.mark.parametrize("probe", [False, True])
def test_ds_moves_the_specific_vectors_unless_it_is_a_probe(probe):
    """Double mode: Ds's loss reaches s^m, except as a probe (`specific_probe`), where only Ds learns from it."""
    tf.keras.utils.set_random_seed(0)
    layer = DoubleDiscriminator(3, specific_probe=probe)
    to_specific, *to_ds = grads(layer, "ds_loss", [SPECIFIC] + layer.ds.trainable_variables)
    assert (to_specific is not None and np.any(to_specific.numpy())) != probe
    assert all(np.any(g.numpy()) for g in to_ds)


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
    for key in ("d0_loss", "d1_loss", "confusion_loss", "ds_loss", "d1_accuracy"):  # alignment: per-replica negatives
        total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[key], axis=None)
        np.testing.assert_allclose(total.numpy(), whole[key].numpy(), rtol=1e-5)


def test_a_single_modality_plays_no_game():
    """A catalog with one modality (IDs only): every loss is 0, nothing fails."""
    out = DoubleDiscriminator(1)([INVARIANT[:, :1], SPECIFIC[:, :1], tf.ones([6, 1])])
    for key in ("d0_loss", "d1_loss", "confusion_loss", "ds_loss", "alignment_loss"):
        assert out[key].numpy() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("mode", ["double", "single"])
def test_every_discriminator_weight_trains(mode):
    tf.keras.utils.set_random_seed(0)
    assert_gradients_reach(DoubleDiscriminator(3, mode=mode), [INVARIANT, SPECIFIC, MASK])


def test_a_frozen_modality_classifier_passes_gradient_to_its_input_only():
    tf.keras.utils.set_random_seed(0)
    classifier = ModalityClassifier([4], 3)
    assert_gradients_reach(classifier, INVARIANT)
    assert len(weights_without_gradient(classifier, INVARIANT, frozen=True)) == len(classifier.trainable_weights) == 4
    with tf.GradientTape() as tape:
        tape.watch(INVARIANT)
        logits = classifier(INVARIANT, frozen=True)
    assert np.any(tape.gradient(logits, INVARIANT).numpy())
    np.testing.assert_array_equal(logits.numpy(), classifier(INVARIANT).numpy())  # the same logits


def test_modality_classifier_config_round_trip():
    assert_config_round_trip(ModalityClassifier([8, 4], 3), INVARIANT)
