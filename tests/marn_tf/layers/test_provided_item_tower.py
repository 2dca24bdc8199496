"""ProvidedItemTower: the item tower's outputs from given representations (the `--item-store` export)."""
import numpy as np
import tensorflow as tf

from marn_tf.layers.provided_item_tower import ProvidedItemTower
from tests.testing import assert_config_round_trip


def test_the_provided_item_tower_passes_its_inputs_on_as_the_towers_outputs():
    layer = ProvidedItemTower(units=3, num_modalities=2)
    inputs = {name: tf.random.uniform([4, *spec.shape[1:]]) for name, spec in layer.input_specs(5).items()}
    assert_config_round_trip(layer, inputs)
    out = layer(inputs)
    for key, name in [("candidate", "candidate_representation"), ("behaviour", "hist_representation"),
                      ("modality_weights", "candidate_modality_weights"), ("modality_mask", "candidate_modality_mask")]:
        np.testing.assert_array_equal(out[key], inputs[name])
    assert out["importance"].shape == (4, 2) and not layer.weights  # nothing per item
