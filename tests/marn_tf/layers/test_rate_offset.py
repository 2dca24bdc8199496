"""The click rates' offset on the logit: it starts as the no-model floor's ranking and learns its weights."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.evaluation.floor import floor_scores
from marn_tf.layers.rate_offset import RateOffset
from tests.testing import assert_config_round_trip

RATES = {"item_ctr": tf.constant([0.02, 0.5, 0.0, 1.0]), "user_ctr": tf.constant([[0.1], [0.3], [0.9], [0.05]])}


def test_starts_as_the_floor_averaged_and_its_weights_learn():
    layer = RateOffset(["item_ctr", "user_ctr"])
    offset = layer(RATES).numpy()
    floor = floor_scores({k: v.numpy() for k, v in RATES.items()})
    np.testing.assert_allclose(offset, floor / 2, rtol=1e-5)  # the same ranking as the floor, on the logit scale
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(RATES))
    assert np.all(np.abs(tape.gradient(loss, layer.rate_weights).numpy()) > 0)


def test_config_round_trip_and_no_rates():
    assert_config_round_trip(RateOffset(["item_ctr", "user_ctr"]), RATES)
    with pytest.raises(ValueError, match="at least one rate feature"):
        RateOffset([])
