"""The item tower: deduplication changes the cost, not the outputs; the item table lives in the model."""
import numpy as np
import tensorflow as tf
import pytest

from marn_tf.data.item_table import ItemTable
from tests.testing import assert_config_round_trip, item_table, item_tower_inputs, small_item_tower as tower

CANDIDATE, BEHAVIOUR, MASK = item_tower_inputs()


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


def content_of(items, table: ItemTable) -> dict:
    """What the pipeline writes into examples with `pipeline.item_content: examples`: each position's table row
    ({column: [*items.shape, *column shape]}, int64 as the examples hold them)."""
    out = {}
    for name, values in table.columns.items():
        rows = values[np.asarray(items)]
        out[name] = tf.constant(rows, tf.float32 if values.dtype == np.float32 else tf.int64)
    return out


@pytest.mark.parametrize("deduplicate", [True, False])
def test_content_from_the_examples_gives_the_tables_outputs(deduplicate):
    from marn_tf.layers.item_tower import ItemTower
    from tests.testing import ITEM_COLUMNS, ITEM_ENCODER, NUM_ITEMS

    table = tower(deduplicate)
    given = ItemTower(NUM_ITEMS, ITEM_COLUMNS, ITEM_ENCODER, deduplicate=deduplicate, content_source="examples")
    inputs = [CANDIDATE, BEHAVIOUR, MASK, content_of(CANDIDATE, item_table()), content_of(BEHAVIOUR, item_table())]
    given(inputs)
    assert not [w.name for w in given.weights if "table" in w.name]  # nothing per item is held
    given.encoder.set_weights(table.encoder.get_weights())
    a, b = table([CANDIDATE, BEHAVIOUR, MASK]), given(inputs)
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-6, atol=1e-6, err_msg=key)
    with pytest.raises(ValueError, match="holds no table"):
        given.set_table(item_table())
    assert_config_round_trip(given, inputs)



def test_the_embeddings_l2_and_the_attention_cost_weigh_items_by_use():
    """`embedding_l2` and `attention_cost` average over the items' valid occurrences: encoding each distinct item
    once gives the same penalties as encoding every position, and padding positions add nothing."""
    from marn_tf.layers.item_tower import ItemTower
    from tests.testing import EMBEDDING_CONFIG, ITEM_COLUMNS, ITEM_ENCODER, NUM_ITEMS

    encoder = dict(ITEM_ENCODER, attention_cost=0.3, embeddings=dict(EMBEDDING_CONFIG, embedding_l2=0.2))
    layers = {deduplicate: ItemTower(NUM_ITEMS, ITEM_COLUMNS, encoder, deduplicate=deduplicate)
              for deduplicate in (True, False)}
    for layer in layers.values():
        layer([CANDIDATE, BEHAVIOUR, MASK])
        layer.set_table(item_table())
    layers[False].set_weights(layers[True].get_weights())

    def penalties(deduplicate, behaviour=BEHAVIOUR):
        layer = layers[deduplicate]
        layer([CANDIDATE, behaviour, MASK])
        return [float(loss) for loss in layer.encoder.losses]

    once = penalties(True)
    assert len(once) == 2 and min(once) > 0  # the L2 and the cost
    np.testing.assert_allclose(penalties(False), once, rtol=1e-5)
    padding_changed = tf.where(tf.cast(MASK, tf.bool), BEHAVIOUR, tf.fill(tf.shape(BEHAVIOUR), 5))
    for deduplicate in (True, False):
        np.testing.assert_allclose(penalties(deduplicate, padding_changed), once, rtol=1e-5)
