"""Distinct sequences: found exactly, safe under a fingerprint collision."""
import numpy as np
import tensorflow as tf

from marn_tf.layers.distinct_sequences import DistinctSequences
from tests.testing import assert_config_round_trip

ITEMS = tf.constant([[3, 4, 0], [3, 4, 0], [5, 0, 0], [3, 4, 0], [3, 4, 9]], tf.int64)
LENGTH = tf.constant([2, 2, 1, 2, 2], tf.int64)
TYPES = tf.constant([[1, 1, 0], [1, 1, 0], [2, 0, 0], [1, 2, 0], [1, 1, 0]], tf.int64)


def test_rows_with_equal_inputs_share_a_sequence():
    first, position = DistinctSequences()([ITEMS, TYPES, LENGTH])
    first, position = first.numpy(), position.numpy()
    assert position.tolist() == [0, 0, 1, 2, 3]  # row 3 differs in a type, row 4 past its end
    assert first.tolist() == [0, 2, 3, 4]
    np.testing.assert_array_equal(tf.gather(ITEMS, first).numpy()[position], ITEMS.numpy())


def test_a_fingerprint_collision_keeps_every_row(monkeypatch):
    monkeypatch.setattr(tf, "fingerprint", lambda data: tf.zeros([tf.shape(data)[0], 8], tf.uint8))
    first, position = DistinctSequences()([ITEMS, TYPES, LENGTH])
    assert first.numpy().tolist() == position.numpy().tolist() == [0, 1, 2, 3, 4]


def test_config_round_trip():
    assert_config_round_trip(DistinctSequences(), [ITEMS, TYPES, LENGTH])
