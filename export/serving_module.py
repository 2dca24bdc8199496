"""The served model: a `tf.Module` whose signatures TF Serving exposes.

Signatures (all take raw ids; vocabularies and the item feature table are inside the model; the item
tower's outputs for the whole catalog are precomputed at export, so a request only gathers them):

* `serving_default`: `examples` string [n], serialized `tf.train.Example` requests (the schema's request
  features; see `export.request_features`) -> `probability` float32 [n], `modality_weights` float32 [n, M]
  (mean |a^m| of the candidate item's modality attention; 0 for a missing modality).
* `predict`: the request features as named tensors, shape [n, *feature shape] (what a REST client sends as
  JSON `instances`) -> the same outputs.
* `item_representations`: `item_id` string [n] -> `representation` float32 [n, d] (the item tower's
  output, to precompute the catalog offline), `modality_weights` and `modality_mask` float32 [n, M].
"""
from __future__ import annotations

import tensorflow as tf

from marn_tf import schema as S
from marn_tf.models.network import Network, request_features
from export.request_features import serving_parse_spec

_TF_DTYPES = {"int64": tf.int64, "float32": tf.float32, "string": tf.string}
SERVING_DEFAULT = "serving_default"
PREDICT = "predict"
ITEM_REPRESENTATIONS = "item_representations"
ITEM_INPUT = "item_id"
OUTPUTS = ("probability", "modality_weights")


class ServingModule(tf.Module):
    """`network.full` (lookup -> core) with the serving signatures; `schema_file` travels as an asset.

    Precomputes the network's item tower for the catalog (see `ItemTower.precompute`): build it from a
    network restored for export, not one that will train further.
    """

    def __init__(self, network: Network, schema: S.Schema, schema_file: str):
        super().__init__(name="marn_serving")
        network.item_tower.precompute()
        self.model = network.full
        self.schema_asset = tf.saved_model.Asset(schema_file)
        self._item_lookup = network.lookup.get_layer(f"{S.ITEM_VOCABULARY}_lookup")
        self._item_tower = network.item_tower
        self._parse_spec = serving_parse_spec(schema)
        self._request_specs = {f.name: tf.TensorSpec([None, *f.shape], _TF_DTYPES[f.dtype], name=f.name)
                               for f in request_features(schema)}

    def _predict(self, features: dict) -> dict:
        out = self.model({name: features[name] for name in self._request_specs}, training=False)
        return {key: out[key] for key in OUTPUTS}

    def signatures(self) -> dict:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serving_default(examples):
            return self._predict(tf.io.parse_example(examples, self._parse_spec))

        @tf.function(input_signature=[self._request_specs])
        def predict(features):
            return self._predict(features)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ITEM_INPUT)])
        def item_representations(item_id):
            encoded = self._item_tower.encode(tf.cast(self._item_lookup(item_id), tf.int32), training=False)
            return {"representation": tf.cast(encoded["representation"], tf.float32),
                    "modality_weights": tf.cast(encoded["modality_weights"], tf.float32),
                    "modality_mask": tf.cast(encoded["modality_mask"], tf.float32)}

        return {SERVING_DEFAULT: serving_default, PREDICT: predict.get_concrete_function(),
                ITEM_REPRESENTATIONS: item_representations}
