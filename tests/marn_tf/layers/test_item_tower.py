"""The item tower: deduplication changes the cost, not the outputs; the item table lives in the model."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.data.item_table import ItemTable
from marn_tf.layers.item_tower import ItemTower
from tests.marn_tf.layers.layer_checks import assert_config_round_trip
from tests.marn_tf.layers.test_modality_embedding import CONFIG

NUM_ITEMS = 6
COLUMNS = {"shop_id": {"shape": [], "dtype": "int64"}, "category_id": {"shape": [], "dtype": "int64"},
           "image": {"shape": [6], "dtype": "float32"}, "has_image": {"shape": [], "dtype": "int64"},
           "title_tokens": {"shape": [4], "dtype": "int64"}, "title_length": {"shape": [], "dtype": "int64"},
           "stat_sales_count": {"shape": [], "dtype": "int64"}}
ENCODER = dict(embeddings=CONFIG, fusion="attention", discriminators="double", units=8, common_units=6,
               discriminator_hidden=[5])
CANDIDATE = tf.constant([1, 3, 1, 5])
BEHAVIOUR = tf.constant([[2, 1, 0], [3, 3, 4], [1, 0, 0], [5, 2, 2]])
MASK = tf.constant([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], tf.float32)


def item_table(seed=0):
    rng = np.random.default_rng(seed)
    columns = {"shop_id": rng.integers(0, 5, NUM_ITEMS), "category_id": rng.integers(0, 3, NUM_ITEMS),
               "image": rng.normal(size=(NUM_ITEMS, 6)).astype(np.float32), "has_image": rng.integers(0, 2, NUM_ITEMS),
               "title_tokens": rng.integers(1, 9, (NUM_ITEMS, 4)), "title_length": rng.integers(0, 5, NUM_ITEMS),
               "stat_sales_count": rng.integers(0, 7, NUM_ITEMS)}
    return ItemTable([""] + [f"i{k}" for k in range(1, NUM_ITEMS)], columns)


def tower(deduplicate=True):
    layer = ItemTower(NUM_ITEMS, COLUMNS, ENCODER, deduplicate=deduplicate)
    layer([CANDIDATE, BEHAVIOUR, MASK])
    layer.set_table(item_table())
    return layer


def test_deduplicated_equals_every_position():
    once, every = tower(True), tower(False)
    every.set_weights(once.get_weights())
    a, b = once([CANDIDATE, BEHAVIOUR, MASK]), every([CANDIDATE, BEHAVIOUR, MASK])
    assert a["candidate"].shape == (4, 8) and a["behaviour"].shape == (4, 3, 8)
    for key in set(a) - {"alignment_loss"}:  # alignment contrasts items: a repeated item is its own negative
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


def test_the_same_item_gets_the_same_representation_everywhere():
    out = tower()([CANDIDATE, BEHAVIOUR, MASK])
    np.testing.assert_allclose(out["candidate"][0].numpy(), out["behaviour"][0, 1].numpy())  # item 1
    np.testing.assert_allclose(out["candidate"][1].numpy(), out["behaviour"][1, 0].numpy())  # item 3


def test_content_comes_from_the_table():
    layer = tower()
    before = layer([CANDIDATE, BEHAVIOUR, MASK])["candidate"].numpy()
    layer.set_table(item_table(seed=1))
    assert not np.allclose(layer([CANDIDATE, BEHAVIOUR, MASK])["candidate"].numpy(), before)
    with pytest.raises(ValueError, match="the item table has 3 rows, the model was built for 6"):
        layer.set_table(ItemTable(["", "a", "b"], {}))


def test_config_round_trip():
    layer = tower()
    assert_config_round_trip(layer, [CANDIDATE, BEHAVIOUR, MASK])
