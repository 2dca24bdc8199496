"""Modality embeddings e^m of items, from their rows of the item feature table.

    id:        [E_item(item), E_f(field_f) for each ID field]      concatenated, id_embedding_dim each
    image:     the catalog's image vector as it is
    text:      word embeddings of the title through the text CNN (kernel sizes 2, 3, 4; max-pool)
    statistic: [E_s(bucket_s) for each catalog counter]             concatenated, statistic_embedding_dim each

Only the items seen at least `vocabulary.min_count` times have their own item-ID embedding (indices
below `num_item_ids`); the rest share the OOV row and keep their content. The mask says which
modalities an item has: ID always; image if the catalog had a vector; text if the title has a word;
statistic if any counter is known (bucket > 0).

With `embedding_l2` > 0 every looked-up row e adds embedding_l2 * mean ||e||^2 to the layer's losses: L2 on
the rows a batch uses (as DIN's mini-batch aware regularisation, it costs no dense update of the whole table),
each item's rows weighted by `occurrences`, how often the batch uses the item. The item tower encodes each
distinct item of a batch once and gives its number of valid occurrences, so the penalty is the same with and
without that deduplication, and padding positions add nothing.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from marn_tf import schema as S
from marn_tf.layers.feature_embedding import mean_squared_norm
from marn_tf.layers.text_cnn import TextCNN


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class ModalityEmbeddings(tf.keras.layers.Layer):
    """Per-modality embeddings and presence mask of a batch of items.

    Args:
      num_item_ids: rows of the item-ID embedding (items with their own embedding + 1 for OOV).
      id_fields: {column: rows} for each other ID field of the item table.
      image_dim: width of the image vector; 0 when the catalog has none.
      word_vocabulary_size: rows of the word embedding (OOV/padding row 0 included); 0 without titles.
      statistics: {column: number of buckets} of the catalog counters; empty for none.
      id_embedding_dim, word_embedding_dim, text_filters, text_kernel_sizes, statistic_embedding_dim: widths.
      embedding_l2: weight of the L2 penalty on looked-up rows (0: none).

    Inputs: a dict with "item_index" [batch] and the item table columns [batch, ...] of these modalities.
    Outputs: a list of M tensors [batch, width_m] in the order of `self.modalities`, and `mask` [batch, M].
    """

    def __init__(self, num_item_ids: int, id_fields: dict[str, int], image_dim: int = 0,
                 word_vocabulary_size: int = 0, statistics: Optional[dict[str, int]] = None,
                 id_embedding_dim: int = 16, word_embedding_dim: int = 32, text_filters: int = 32,
                 text_kernel_sizes=(2, 3, 4), statistic_embedding_dim: int = 8, embedding_l2: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_item_ids = num_item_ids
        self.id_fields = dict(id_fields)
        self.image_dim = image_dim
        self.word_vocabulary_size = word_vocabulary_size
        self.statistics = dict(statistics or {})
        self.id_embedding_dim = id_embedding_dim
        self.word_embedding_dim = word_embedding_dim
        self.text_filters = text_filters
        self.text_kernel_sizes = list(text_kernel_sizes)
        self.statistic_embedding_dim = statistic_embedding_dim
        self.embedding_l2 = embedding_l2

        self.modalities = ["id"] + (["image"] if image_dim else []) + (["text"] if word_vocabulary_size else []) \
            + (["statistic"] if self.statistics else [])
        self.item_embedding = tf.keras.layers.Embedding(num_item_ids, id_embedding_dim, name="item_id")
        self.field_embeddings = {name: tf.keras.layers.Embedding(rows, id_embedding_dim, name=name)
                                 for name, rows in self.id_fields.items()}
        if word_vocabulary_size:
            self.word_embedding = tf.keras.layers.Embedding(word_vocabulary_size, word_embedding_dim, name="words")
            self.text_cnn = TextCNN(text_filters, self.text_kernel_sizes, name="title_cnn")
        self.statistic_embeddings = {name: tf.keras.layers.Embedding(buckets, statistic_embedding_dim, name=name)
                                     for name, buckets in self.statistics.items()}

    def call(self, content, occurrences=None):
        """`content`: {"item_index": [n], the item table columns: [n, ...]}; `occurrences` [n]: each item's weight in
        the L2 penalty (default 1)."""
        index = content["item_index"]
        own_id = tf.where(index < self.num_item_ids, index, tf.zeros_like(index))
        ids = [self.item_embedding(own_id)] + [emb(content[name]) for name, emb in self.field_embeddings.items()]
        looked_up = list(ids)
        embeddings = [tf.concat(ids, axis=-1)]
        masks = [tf.ones_like(index, dtype=self.compute_dtype)]
        if self.image_dim:
            embeddings.append(tf.cast(content[S.IMAGE_COLUMN], self.compute_dtype))
            masks.append(tf.cast(content[S.IMAGE_PRESENT_COLUMN] > 0, self.compute_dtype))
        if self.word_vocabulary_size:
            length = content[S.TITLE_LENGTH_COLUMN]
            words = self.word_embedding(content[S.TITLE_COLUMN])
            looked_up.append(words)
            embeddings.append(self.text_cnn([words, length]))
            masks.append(tf.cast(length > 0, self.compute_dtype))
        if self.statistics:
            buckets = [content[name] for name in self.statistics]
            rows = [emb(b) for emb, b in zip(self.statistic_embeddings.values(), buckets)]
            looked_up += rows
            embeddings.append(tf.concat(rows, -1))
            masks.append(tf.cast(tf.reduce_any(tf.stack(buckets, -1) > 0, axis=-1), self.compute_dtype))
        if self.embedding_l2:
            self.add_loss(self.embedding_l2 * tf.add_n([mean_squared_norm(e, occurrences) for e in looked_up]))
        return embeddings, tf.stack(masks, axis=1)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_item_ids": self.num_item_ids, "id_fields": self.id_fields,
                "image_dim": self.image_dim, "word_vocabulary_size": self.word_vocabulary_size,
                "statistics": self.statistics, "id_embedding_dim": self.id_embedding_dim,
                "word_embedding_dim": self.word_embedding_dim, "text_filters": self.text_filters,
                "text_kernel_sizes": self.text_kernel_sizes, "statistic_embedding_dim": self.statistic_embedding_dim,
                "embedding_l2": self.embedding_l2}
