"""Modality embeddings: widths per modality, presence masks from the item table, the shared OOV item-ID row."""
import numpy as np
import tensorflow as tf

from marn_tf.layers.modality_embedding import ModalityEmbeddings
from tests.testing import EMBEDDING_CONFIG, assert_config_round_trip, assert_gradients_reach, item_content

def test_widths_and_masks():
    layer = ModalityEmbeddings(**EMBEDDING_CONFIG)
    embeddings, mask = layer(item_content([1, 2, 3]))
    assert layer.modalities == ["id", "image", "text", "statistic"]
    assert [e.shape[-1] for e in embeddings] == [3 * 4, 6, 2 * 3, 5]  # item + 2 fields; image as is; CNN; 1 counter
    np.testing.assert_array_equal(mask.numpy(), [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]])


def test_items_without_their_own_id_share_the_oov_row():
    layer = ModalityEmbeddings(**EMBEDDING_CONFIG)
    ids = layer(item_content([0, 7, 9]))[0][0][:, :4].numpy()  # the item-ID part; 7 and 9 >= num_item_ids
    np.testing.assert_array_equal(ids[1], ids[0])
    np.testing.assert_array_equal(ids[2], ids[0])
    assert not np.array_equal(layer(item_content([1, 2, 3]))[0][0][0, :4].numpy(), ids[0])


def test_only_the_modalities_the_table_has():
    layer = ModalityEmbeddings(num_item_ids=4, id_fields={"shop_id": 5}, image_dim=0, word_vocabulary_size=0)
    embeddings, mask = layer({"item_index": tf.constant([1, 2]), "shop_id": tf.constant([1, 1])})
    assert layer.modalities == ["id"] and len(embeddings) == 1 and mask.shape == (2, 1)


def test_config_round_trip():
    assert_config_round_trip(ModalityEmbeddings(**EMBEDDING_CONFIG), item_content([1, 2, 3]))


def test_embedding_l2_adds_the_mean_squared_norm_of_every_lookup():
    layer = ModalityEmbeddings(**EMBEDDING_CONFIG, embedding_l2=0.1)
    layer(item_content([1, 2, 3]))
    lookups = [(layer.item_embedding, [1, 2, 3]), (layer.field_embeddings["shop_id"], [1, 2, 4]),
               (layer.field_embeddings["category_id"], [0, 1, 2]),
               (layer.word_embedding, [[1, 2, 0, 0], [0, 0, 0, 0], [5, 0, 0, 0]]),
               (layer.statistic_embeddings["stat_sales_count"], [3, 0, 0])]
    expected = sum(np.mean(np.sum(emb.embeddings.numpy()[np.array(i)] ** 2, -1)) for emb, i in lookups)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0].numpy(), 0.1 * expected, rtol=1e-5)


def test_every_table_and_the_text_cnn_train():
    tf.keras.utils.set_random_seed(0)
    assert_gradients_reach(ModalityEmbeddings(**dict(EMBEDDING_CONFIG, text_filters=16)), item_content([1, 2, 3]),
                           loss=lambda out: sum(tf.reduce_sum(e * e) for e in out[0]))
