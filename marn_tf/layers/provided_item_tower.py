"""The item tower's outputs given with the request: serving from an item store, with no item table in the model.

`marn embed-items` writes every item's representation, modality weights and modality mask (the
`item_representations` signature's outputs) to a feature store. A model exported with
`marn export --item-store` takes them from the request instead of item ids: this layer stands where the
item tower stands in the inference graph and passes them on as the tower's output dict, so the exported
model holds no per-item weights and its size does not depend on the catalog.

Differences from the live tower that reach no prediction: the candidate's `importance` and the
discriminators' scalars are 0 (the store does not hold them; nothing trains).
"""
from __future__ import annotations

import tensorflow as tf

from marn_tf.layers.item_encoder import AUXILIARY_OUTPUTS

CANDIDATE_REPRESENTATION = "candidate_representation"
CANDIDATE_MODALITY_WEIGHTS = "candidate_modality_weights"
CANDIDATE_MODALITY_MASK = "candidate_modality_mask"
BEHAVIOUR_REPRESENTATION = "hist_representation"


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class ProvidedItemTower(tf.keras.layers.Layer):
    """Given item tower outputs -> the dict `ItemTower` returns.

    Args:
      units: width d of an item representation.
      num_modalities: M.

    Inputs: a dict with `candidate_representation` [batch, d], `candidate_modality_weights` and
      `candidate_modality_mask` [batch, M], `hist_representation` [batch, L, d] (positions beyond the
      sequence length are masked downstream, whatever they hold).
    Output: "candidate" [batch, d], "behaviour" [batch, L, d], "modality_weights", "importance" (0) and
      "modality_mask" [batch, M], and the discriminators' scalars (0).
    """

    def __init__(self, units: int, num_modalities: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.num_modalities = num_modalities

    def input_specs(self, sequence_length: int) -> dict[str, tf.TensorSpec]:
        """{input name: its float32 spec, batch dimension None}: what a request carries in place of item ids."""
        return {CANDIDATE_REPRESENTATION: tf.TensorSpec([None, self.units], tf.float32, CANDIDATE_REPRESENTATION),
                CANDIDATE_MODALITY_WEIGHTS: tf.TensorSpec([None, self.num_modalities], tf.float32,
                                                          CANDIDATE_MODALITY_WEIGHTS),
                CANDIDATE_MODALITY_MASK: tf.TensorSpec([None, self.num_modalities], tf.float32,
                                                       CANDIDATE_MODALITY_MASK),
                BEHAVIOUR_REPRESENTATION: tf.TensorSpec([None, sequence_length, self.units], tf.float32,
                                                        BEHAVIOUR_REPRESENTATION)}

    def call(self, inputs):
        weights = inputs[CANDIDATE_MODALITY_WEIGHTS]
        out = {"candidate": inputs[CANDIDATE_REPRESENTATION], "behaviour": inputs[BEHAVIOUR_REPRESENTATION],
               "modality_weights": weights, "importance": tf.zeros_like(weights),
               "modality_mask": inputs[CANDIDATE_MODALITY_MASK]}
        out.update({key: tf.constant(0.0) for key in AUXILIARY_OUTPUTS})
        return out

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "num_modalities": self.num_modalities}
