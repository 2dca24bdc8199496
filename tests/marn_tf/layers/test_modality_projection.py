"""Projections: one specific projector per modality, one invariant projector shared by all."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.modality_projection import ModalityProjection
from tests.testing import assert_config_round_trip

RNG = np.random.default_rng(0)
EMBEDDINGS = [tf.constant(RNG.normal(size=(3, w)), tf.float32) for w in (12, 64, 96, 16)]  # ids, image, text, stats


def test_shapes_for_modalities_of_different_widths():
    specific, invariant = ModalityProjection(4, units=8, common_units=5)(EMBEDDINGS)
    assert specific.shape == (3, 4, 8) and invariant.shape == (3, 4, 8)


def test_the_invariant_projector_is_shared_and_the_specific_ones_are_not():
    layer = ModalityProjection(4, units=8, common_units=5, activation="tanh")  # no dead units: never 0 gradient
    layer(EMBEDDINGS)
    names = [v.name for v in layer.trainable_variables]
    assert sum("shared_invariant" in n for n in names) == 2  # one kernel, one bias for all modalities
    assert sum("specific_" in n for n in names) == 8 and sum("common_input_" in n for n in names) == 8
    # every modality's invariant vector gets gradient into the one shared kernel
    for m in range(4):
        with tf.GradientTape() as tape:
            _, invariant = layer(EMBEDDINGS)
            loss = tf.reduce_sum(invariant[:, m])
        assert np.any(tape.gradient(loss, layer.invariant.kernel).numpy())


def test_wrong_number_of_modalities():
    with pytest.raises(ValueError, match="expected 4 modality embeddings, got 3"):
        ModalityProjection(4)(EMBEDDINGS[:3])


def test_config_round_trip():
    assert_config_round_trip(ModalityProjection(4, units=6, common_units=3, activation="tanh"), EMBEDDINGS)


def test_without_invariant_part():
    layer = ModalityProjection(4, units=8, with_invariant=False)
    specific = layer(EMBEDDINGS)
    assert specific.shape == (3, 4, 8)
    assert not any("invariant" in v.name or "common_input" in v.name for v in layer.trainable_variables)
    assert_config_round_trip(ModalityProjection(4, units=8, with_invariant=False), EMBEDDINGS)
