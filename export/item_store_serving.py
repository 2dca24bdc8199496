"""The served model of `marn export --item-store`: item representations from a feature store, no item table inside.

A regular export holds every catalog item's tower outputs (and the item table, and the item vocabulary), so it
grows with the catalog. This one holds none of them: a request carries, in place of the candidate's and the
behaviour items' ids, their representations as `marn embed-items` writes them (the `item_representations`
signature's outputs of a regular export of the same checkpoint), looked up in a feature store by item id.

Signatures (the same function under both names, so a TF Serving request without `signature_name` finds it):

* `predict` and `serving_default`: the request features except the item keys (`item_id`, `hist_item_id`), as
  named tensors [n, *feature shape], plus `candidate_representation` float32 [n, d],
  `candidate_modality_weights` and `candidate_modality_mask` float32 [n, M] (the candidate's
  `representation`, `modality_weights`, `modality_mask` from the store) and `hist_representation` float32
  [n, L, d] (each behaviour item's `representation`; positions at or beyond `hist_length` are ignored, send
  zeros) -> `probability` float32 [n], `modality_weights` float32 [n, M].

A request is checked as `predict`'s of a regular export (`serving_module.check_request`), and each
representation input must have its shape, the candidate's batch size and finite values; the error
(InvalidArgumentError) names the input.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from marn_tf import schema as S
from marn_tf.layers.provided_item_tower import (BEHAVIOUR_REPRESENTATION, CANDIDATE_MODALITY_MASK,
                                                CANDIDATE_MODALITY_WEIGHTS, CANDIDATE_REPRESENTATION)
from marn_tf.models.network import Network, request_features
from marn_tf.export import serving_module as SM
from marn_tf.export.request_features import required_features

SIGNATURES = (SM.SERVING_DEFAULT, SM.PREDICT)
# item_representations output -> the request input of the candidate's
CANDIDATE_INPUTS = {"representation": CANDIDATE_REPRESENTATION, "modality_weights": CANDIDATE_MODALITY_WEIGHTS,
                    "modality_mask": CANDIDATE_MODALITY_MASK}


class ItemStoreServingModule(tf.Module):
    """`network.item_store().full` (lookup of the non-item features -> inference over given item representations)
    with the `predict` / `serving_default` signature; `schema_file` travels as an asset.

    Args:
      network: a network restored for export.
      schema: its schema.
      schema_file: the schema's file, copied into the SavedModel's assets.
    """

    def __init__(self, network: Network, schema: S.Schema, schema_file: str):
        super().__init__(name="marn_item_store_serving")
        store = network.item_store()
        self.model = store.full
        self.schema_asset = tf.saved_model.Asset(schema_file)
        self._schema = schema
        self._modalities = len(network.modalities)
        self._representation_specs = store.inference.get_layer("provided_item_tower").input_specs(
            schema.sequence_length)
        self._request_specs = {**{f.name: tf.TensorSpec([None, *f.shape], S.tf_dtype(f.dtype), name=f.name)
                                  for f in request_features(schema) if S.ITEM_KEY not in f.tags},
                               **self._representation_specs}

    @property
    def representation_dim(self) -> int:
        """d: the width of an item representation the signature takes."""
        return int(self._representation_specs[CANDIDATE_REPRESENTATION].shape[-1])

    def signatures(self) -> dict:
        @tf.function(input_signature=[self._request_specs])
        def predict(features):
            given = check_representations(self._representation_specs, features)
            checked = SM.check_request(self._schema, {**features, **given}, item_store=True)
            out = self.model({**checked, **given}, training=False)
            return {key: out[key] for key in SM.OUTPUTS}

        function = predict.get_concrete_function()
        return {name: function for name in SIGNATURES}


def check_representations(specs: Mapping[str, tf.TensorSpec], features: Mapping[str, tf.Tensor]) -> dict:
    """The representation inputs of `features` once each has its spec's shape (the error names the input), the
    candidate representation's batch size and finite values; else an assertion naming the input.

    Args:
      specs: {input name: spec}, `ProvidedItemTower.input_specs`.
      features: the request's tensors, holding at least the inputs of `specs`.
    """
    batch = tf.shape(features[CANDIDATE_REPRESENTATION])[0]
    checks, checked = [], {}
    for name, spec in specs.items():
        # At run time, since a signature's shapes are not enforced on a call: d or M of another model fails here.
        value = checked[name] = tf.ensure_shape(features[name], spec.shape)
        checks.append(tf.debugging.assert_equal(
            tf.shape(value)[0], batch, message=f"request input {name} has another batch size than "
                                               f"{CANDIDATE_REPRESENTATION}"))
        checks.append(tf.debugging.assert_all_finite(value, f"request input {name} must be finite"))
    with tf.control_dependencies(checks):
        return {name: tf.identity(value) for name, value in checked.items()}


def item_store_request(schema: S.Schema, features: Mapping[str, np.ndarray],
                       item_representations: Callable[[np.ndarray], Mapping]) -> dict[str, np.ndarray]:
    """A regular `predict` request (numpy columns with item ids) -> the same request for a store-mode export.

    Args:
      schema: the model's schema.
      features: the request features, [n, *feature shape] each (e.g. `request_features.to_columns`).
      item_representations: item ids string [k] -> {"representation" [k, d], "modality_weights",
        "modality_mask" [k, M]}: a regular export's `item_representations` signature, or a feature store's rows.

    Returns:
      The features without the item keys, plus the candidate's representation, modality weights and mask and the
      behaviour items' representations [n, L, d] (padding positions get the empty id's, which the model ignores).
    """
    candidate = required_features(schema)[0]
    behaviour = schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)[0].name
    rows, length = np.shape(features[behaviour])
    ids = np.concatenate([np.reshape(features[candidate], [-1]), np.reshape(features[behaviour], [-1])])
    distinct, position = np.unique(ids, return_inverse=True)  # each item looked up once
    looked_up = {key: np.asarray(value)[position] for key, value in item_representations(distinct).items()}
    request = {name: value for name, value in features.items() if name not in (candidate, behaviour)}
    request.update({name: looked_up[key][:rows] for key, name in CANDIDATE_INPUTS.items()})
    request[BEHAVIOUR_REPRESENTATION] = looked_up["representation"][rows:].reshape(rows, length, -1)
    return request


def network_item_representations(network: Network) -> Callable[[np.ndarray], dict]:
    """item ids -> `network`'s item tower outputs, as a regular export's `item_representations` signature gives
    them: the store a warmup request or check-export takes the representations from."""
    lookup = network.lookup.get_layer(f"{S.ITEM_VOCABULARY}_lookup")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def encode(item_id):
        encoded = network.item_tower.encode(tf.cast(lookup(item_id), tf.int32), training=False)
        return {key: tf.cast(encoded[key], tf.float32) for key in CANDIDATE_INPUTS}

    return lambda ids: {key: value.numpy() for key, value in encode(tf.constant(ids)).items()}
