"""Modality embeddings: widths per modality, presence masks from the item table, the shared OOV item-ID row."""
import numpy as np
import tensorflow as tf

from marn_tf.layers.modality_embedding import ModalityEmbeddings
from tests.marn_tf.layers.layer_checks import assert_config_round_trip

CONFIG = dict(num_item_ids=4, id_fields={"shop_id": 5, "category_id": 3}, image_dim=6, word_vocabulary_size=9,
              statistics={"stat_sales_count": 7}, id_embedding_dim=4, word_embedding_dim=3, text_filters=2,
              statistic_embedding_dim=5)


def content(item_index, has_image=(1, 0, 1), title_length=(2, 0, 1), sales=(3, 0, 0)):
    n = len(item_index)
    return {"item_index": tf.constant(item_index, tf.int32), "shop_id": tf.constant([1, 2, 4][:n], tf.int32),
            "category_id": tf.constant([0, 1, 2][:n], tf.int32),
            "image": tf.constant(np.random.default_rng(0).normal(size=(n, 6)), tf.float32),
            "has_image": tf.constant(has_image[:n], tf.int32),
            "title_tokens": tf.constant([[1, 2, 0, 0], [0, 0, 0, 0], [5, 0, 0, 0]][:n], tf.int32),
            "title_length": tf.constant(title_length[:n], tf.int32),
            "stat_sales_count": tf.constant(sales[:n], tf.int32)}


def test_widths_and_masks():
    layer = ModalityEmbeddings(**CONFIG)
    embeddings, mask = layer(content([1, 2, 3]))
    assert layer.modalities == ["id", "image", "text", "statistic"]
    assert [e.shape[-1] for e in embeddings] == [3 * 4, 6, 2 * 3, 5]  # item + 2 fields; image as is; CNN; 1 counter
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]])


def test_items_without_their_own_id_share_the_oov_row():
    layer = ModalityEmbeddings(**CONFIG)
    ids = layer(content([0, 7, 9]))[0][0][:, :4].numpy()  # the item-ID part; 7 and 9 >= num_item_ids
    np.testing.assert_array_equal(ids[1], ids[0])
    np.testing.assert_array_equal(ids[2], ids[0])
    assert not np.array_equal(layer(content([1, 2, 3]))[0][0][0, :4].numpy(), ids[0])


def test_only_the_modalities_the_table_has():
    layer = ModalityEmbeddings(num_item_ids=4, id_fields={"shop_id": 5}, image_dim=0, word_vocabulary_size=0)
    embeddings, mask = layer({"item_index": tf.constant([1, 2]), "shop_id": tf.constant([1, 1])})
    assert layer.modalities == ["id"] and len(embeddings) == 1 and mask.shape == (2, 1)


def test_config_round_trip():
    assert_config_round_trip(ModalityEmbeddings(**CONFIG), content([1, 2, 3]))


def test_embedding_l2_adds_the_mean_squared_norm_of_every_lookup():
    layer = ModalityEmbeddings(**CONFIG, embedding_l2=0.1)
    layer(content([1, 2, 3]))
    lookups = [(layer.item_embedding, [1, 2, 3]), (layer.field_embeddings["shop_id"], [1, 2, 4]),
               (layer.field_embeddings["category_id"], [0, 1, 2]),
               (layer.word_embedding, [[1, 2, 0, 0], [0, 0, 0, 0], [5, 0, 0, 0]]),
               (layer.statistic_embeddings["stat_sales_count"], [3, 0, 0])]
    expected = sum(np.mean(np.sum(emb.embeddings.numpy()[np.array(i)] ** 2, -1)) for emb, i in lookups)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0].numpy(), 0.1 * expected, rtol=1e-5)
