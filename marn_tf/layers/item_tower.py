"""The item tower: item indices -> item representations, encoding each unique item of a batch once.

A batch of B impressions with sequences of length L names B * (L + 1) items, most of them repeats
(popular items, padding). The tower gathers the distinct ones, looks up their content in the item
feature table (held in the model as non-trainable weights, so a request carries only ids), encodes
each once and scatters the representations back to every occurrence. The discriminators, the embeddings' L2
and the modality attention's cost weigh each unique item by its number of valid occurrences, so
deduplication changes the cost, not the math, of every term but the alignment's: it compares the first
`alignment_items` items, distinct ones with deduplication, positions without (where an item that occurs twice
is its own negative).

With `content_source="examples"` (`pipeline.item_content: examples`) the tower holds no table: the content
comes with the batch, one value per occurrence (the pipeline copies it from the table, so an item's
content is the same wherever it occurs), and the first occurrence of each distinct item is encoded.

For serving, `PrecomputedItemTower.freeze(tower)` (`precomputed_item_tower.py`) makes a separate layer
holding every catalog item's outputs, so that the exported model only gathers them.
"""
from __future__ import annotations

import tensorflow as tf

from marn_tf.layers.item_encoder import AUXILIARY_OUTPUTS, ItemEncoder

_DTYPES = {"int64": "int32", "float32": "float32"}  # int32 ids gather on every device
CONTENT_SOURCES = ("table", "examples")


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class ItemTower(tf.keras.layers.Layer):
    """Item content table + `ItemEncoder`, once per unique item.

    Args:
      num_items: rows of the item table (item vocabulary + the OOV row 0).
      columns: {name: {"shape": [...], "dtype": "int64" | "float32"}} of the item table columns the encoder reads.
      encoder: the `ItemEncoder` config.
      deduplicate: encode unique items only (False: every position, which XLA needs for static shapes).
      content_source: "table" (the item table, filled by `set_table`) or "examples" (no table: the content comes
        as inputs).

    Inputs: `candidate` [batch] item indices, `behaviour` [rows, L] item indices, `behaviour_mask` [rows, L]
      (rows = batch, or fewer when distinct sequences are encoded once: see `DistinctSequences`); with
      content_source "examples" also `candidate_content` {column: [batch, *shape]} and `behaviour_content`
      {column: [rows, L, *shape]}, for every column of `columns`.
    Output: a dict with "candidate" [batch, d], "behaviour" [rows, L, d], the candidate's "modality_weights",
      "importance" and "modality_mask" [batch, M], and the encoder's scalar outputs.
    Fill the table with `set_table(item_table)` (a `marn_tf.data.item_table.ItemTable`).
    """

    def __init__(self, num_items: int, columns: dict, encoder: dict, deduplicate: bool = True,
                 content_source: str = "table", **kwargs):
        super().__init__(**kwargs)
        if content_source not in CONTENT_SOURCES:
            raise ValueError(f"content_source {content_source!r} is not one of {CONTENT_SOURCES}")
        self.num_items = num_items
        self.columns = {name: dict(spec) for name, spec in columns.items()}
        self.encoder_config = dict(encoder)
        self.deduplicate = deduplicate
        self.content_source = content_source
        self.encoder = ItemEncoder(**self.encoder_config, name="item_encoder")
        self.table = {} if content_source == "examples" else {
            name: self.add_weight(name=f"table_{name}", shape=[num_items, *spec["shape"]],
                                  dtype=_DTYPES[spec["dtype"]], trainable=False, initializer="zeros")
            for name, spec in self.columns.items()}

    @property
    def modalities(self) -> list[str]:
        return self.encoder.modalities

    def set_table(self, item_table) -> None:
        """Loads the item table's arrays (rows by item vocabulary index) into the model."""
        if not self.table:
            raise ValueError("this item tower reads the item content from the examples (content_source='examples') "
                             "and holds no table: build the network from `Schema.without_content_features()`")
        if item_table.num_rows != self.num_items:
            raise ValueError(f"the item table has {item_table.num_rows} rows, the model was built for {self.num_items}")
        for name, variable in self.table.items():
            variable.assign(item_table.columns[name].astype(variable.dtype.as_numpy_dtype))

    def call(self, inputs, training=None):
        candidate, behaviour, behaviour_mask, *given = inputs
        batch, rows, length = tf.shape(candidate)[0], tf.shape(behaviour)[0], tf.shape(behaviour)[1]
        items = tf.concat([tf.reshape(candidate, [-1]), tf.reshape(behaviour, [-1])], axis=0)
        valid = tf.concat([tf.ones_like(candidate, tf.float32), tf.reshape(tf.cast(behaviour_mask, tf.float32), [-1])], 0)
        content = self._given_content(*given) if self.content_source == "examples" else None
        if self.deduplicate:
            occurrence = tf.range(tf.shape(items)[0])
            items, position = tf.unique(items)
            occurrences = tf.math.unsorted_segment_sum(valid, position, tf.shape(items)[0])
            if content is not None:  # each distinct item's content, from its first occurrence
                first = tf.math.unsorted_segment_min(occurrence, position, tf.shape(items)[0])
                content = {name: tf.gather(value, first) for name, value in content.items()}
        else:
            position, occurrences = tf.range(tf.shape(items)[0]), valid
        encoded = self.encode(items, occurrences, training=training, content=content)
        per_occurrence = tf.gather(encoded["representation"], position)
        candidate_position = position[:batch]
        out = {"candidate": per_occurrence[:batch],
               "behaviour": tf.reshape(per_occurrence[batch:], [rows, length, per_occurrence.shape[-1]])}
        for key in ("modality_weights", "importance", "modality_mask"):
            out[key] = tf.gather(encoded[key], candidate_position)
        out.update({key: encoded[key] for key in AUXILIARY_OUTPUTS})
        return out

    def encode(self, items, occurrences=None, training=None, content=None) -> dict:
        """The `ItemEncoder` outputs for item indices `items` [n] (each weighted by `occurrences`, default 1), with
        their table rows or `content` ({column: [n, *shape]}) given.

        What `PrecomputedItemTower.freeze` and the exported `item_representations` signature run.
        """
        if occurrences is None:
            occurrences = tf.ones_like(items, tf.float32)
        if content is None:
            content = self.content(items)
        else:
            content = {**content, "item_index": tf.cast(items, tf.int32)}
        return self.encoder([content, occurrences], training=training)

    def _given_content(self, candidate_content: dict, behaviour_content: dict) -> dict:
        """Every occurrence's content, candidates first then the behaviour positions row by row (as `call` orders
        the items), in the table's dtypes."""
        out = {}
        for name, spec in self.columns.items():
            rows = tf.reshape(behaviour_content[name], [-1, *spec["shape"]])
            out[name] = tf.cast(tf.concat([candidate_content[name], rows], 0), _DTYPES[spec["dtype"]])
        return out

    def content(self, items) -> dict:
        """The item table rows of item indices `items` [n]: what the encoder reads."""
        # embedding_lookup, not tf.gather: under ParameterServerStrategy the table is a ShardedVariable, and
        # tf.gather on one returns the rows grouped by shard, not in the order of `items` (TF 2.21).
        if not self.table:
            raise ValueError("this item tower holds no table (content_source='examples'): give the content to `encode`")
        content = {name: tf.nn.embedding_lookup(table, items) for name, table in self.table.items()}
        content["item_index"] = tf.cast(items, tf.int32)
        return content

    def get_config(self) -> dict:
        return {**super().get_config(), "num_items": self.num_items, "columns": self.columns,
                "encoder": self.encoder_config, "deduplicate": self.deduplicate, "content_source": self.content_source}
