"""The frozen item tower: the live tower's inference outputs, gathered; the live tower is left as it was."""
import numpy as np

from marn_tf.layers.precomputed_item_tower import PrecomputedItemTower
from tests.testing import NUM_ITEMS, assert_config_round_trip, item_tower_inputs, small_item_tower as tower

INPUTS = item_tower_inputs()
MASK = INPUTS[2]


def test_gives_the_live_towers_inference_outputs():
    live = tower()
    want = live(INPUTS, training=False)
    frozen = PrecomputedItemTower.freeze(live, batch_size=4)  # two chunks
    got = frozen(INPUTS)
    for key in ("candidate", "modality_weights", "modality_mask"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    valid = MASK.numpy() > 0  # past a sequence's end the batch encoder gives padding no invariant part
    np.testing.assert_allclose(got["behaviour"].numpy()[valid], want["behaviour"].numpy()[valid], rtol=1e-5, atol=1e-6)
    # ("importance" is D0's weight scaled to mean 1 over the batch: over the catalog once precomputed.)
    assert float(got["d1_loss"]) == 0.0
    assert frozen.catalog["representation"].shape == (NUM_ITEMS, 8) and not frozen.trainable_weights


def test_the_live_tower_still_trains_and_later_changes_do_not_reach_the_frozen_copy():
    live = tower()
    frozen = PrecomputedItemTower.freeze(live)
    before = frozen(INPUTS)["candidate"].numpy()
    assert float(live(INPUTS, training=True)["d1_loss"]) != 0.0  # the live tower runs its encoder as before
    for variable in live.trainable_variables:
        variable.assign(variable * 2)
    assert not np.allclose(live(INPUTS, training=False)["candidate"].numpy(), before)
    np.testing.assert_array_equal(frozen(INPUTS)["candidate"].numpy(), before)


def test_config_round_trip():
    assert_config_round_trip(PrecomputedItemTower.freeze(tower()), INPUTS)
