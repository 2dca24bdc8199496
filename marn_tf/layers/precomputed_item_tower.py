"""The item tower frozen for inference: every catalog item's outputs computed once, then only gathered.

An item's representation, modality weights and modality mask depend on the item alone, so the exported
model does not run the item encoder per request: `PrecomputedItemTower.freeze(tower)` encodes the whole
item table once (inference mode) and keeps the results as weights. It is a new layer, built explicitly
for export from a trained `ItemTower`; the trained tower is left as it was (it still trains, and still
serves the `item_representations` signature). Freeze after the last weight change: later training is not
seen by a frozen copy.

Differences from the live tower that reach no prediction: the discriminators' scalars are 0 (there is
nothing to train), D0's `importance` is scaled to mean 1 over the catalog instead of over the batch, and
padding positions (masked downstream) get the OOV item's full vector.
"""
from __future__ import annotations

import tensorflow as tf

from marn_tf.layers.item_encoder import AUXILIARY_OUTPUTS
from marn_tf.layers.item_tower import ItemTower

PRECOMPUTED = ("representation", "modality_weights", "importance", "modality_mask")


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class PrecomputedItemTower(tf.keras.layers.Layer):
    """Item indices -> the item tower's outputs, gathered from per-item tables.

    Args:
      num_items: rows of the tables (item vocabulary + the OOV row 0).
      units: width d of an item representation.
      num_modalities: M.
      output_dtype: dtype of the tables (the trained tower's compute dtype).

    Inputs: `candidate` [batch] item indices, `behaviour` [rows, L] item indices, `behaviour_mask` [rows, L]
      (unused: kept so the layer takes the live tower's place).
    Output: the dict `ItemTower` returns: "candidate" [batch, d], "behaviour" [rows, L, d], the candidate's
      "modality_weights", "importance" and "modality_mask" [batch, M], and the discriminators' scalars (0).
    Fill the tables with `freeze`.
    """

    def __init__(self, num_items: int, units: int, num_modalities: int, output_dtype: str = "float32", **kwargs):
        super().__init__(**kwargs)
        self.num_items = num_items
        self.units = units
        self.num_modalities = num_modalities
        self.output_dtype = output_dtype
        widths = {"representation": units, **{key: num_modalities for key in PRECOMPUTED[1:]}}
        self.catalog = {key: self.add_weight(name=key, shape=[num_items, width], dtype=output_dtype, trainable=False,
                                             initializer="zeros") for key, width in widths.items()}

    @classmethod
    def freeze(cls, tower: ItemTower, batch_size: int = 4096, **kwargs) -> "PrecomputedItemTower":
        """A precomputed copy of `tower`'s inference outputs for every item of its table, in chunks of `batch_size`."""
        chunks = [tower.encode(tf.range(start, min(start + batch_size, tower.num_items)), training=False)
                  for start in range(0, tower.num_items, batch_size)]
        tables = {key: tf.concat([chunk[key] for chunk in chunks], 0) for key in PRECOMPUTED}
        frozen = cls(tower.num_items, int(tables["representation"].shape[-1]), int(tables["modality_mask"].shape[-1]),
                     tables["representation"].dtype.name, **kwargs)
        for key, table in tables.items():
            frozen.catalog[key].assign(tf.cast(table, frozen.output_dtype))
        return frozen

    def call(self, inputs):
        candidate, behaviour, _ = inputs
        # embedding_lookup: right on a ShardedVariable too (see ItemTower.content)
        out = {"candidate": tf.nn.embedding_lookup(self.catalog["representation"], candidate),
               "behaviour": tf.nn.embedding_lookup(self.catalog["representation"], behaviour)}
        out.update({key: tf.nn.embedding_lookup(self.catalog[key], candidate) for key in PRECOMPUTED[1:]})
        out.update({key: tf.constant(0.0) for key in AUXILIARY_OUTPUTS})
        return out

    def get_config(self) -> dict:
        return {**super().get_config(), "num_items": self.num_items, "units": self.units,
                "num_modalities": self.num_modalities, "output_dtype": self.output_dtype}
