"""The served model: a `tf.Module` whose signatures TF Serving exposes.

Signatures (all take raw ids; vocabularies and the item feature table are inside the model; the item
tower's outputs for the whole catalog are precomputed at export, so a request only gathers them):

* `serving_default`: `examples` string [n], serialized `tf.train.Example` requests (the schema's request
  features; see `export.request_features`) -> `probability` float32 [n], `modality_weights` float32 [n, M]
  (mean |a^m| of the candidate item's modality attention; 0 for a missing modality).
* `predict`: the request features as named tensors, shape [n, *feature shape] (what a REST client sends as
  JSON `instances`) -> the same outputs.

Both check a request's values before the model sees them (`check_request`) and fail with
InvalidArgumentError naming the feature: a batch size or sequence length unlike the candidate's, a bucket
outside its cardinality, a non-finite float, a sequence length beyond the behaviours given. An empty batch
returns empty outputs. (A tensor of the wrong dtype is refused by TensorFlow before the graph runs, by
input index; TF Serving's REST API converts JSON to the signature's dtypes and names the key itself.)
* `predict_raw`: like `predict`, but with the raw values a front end has in place of the pipeline's
  buckets and rates (`export.raw_features`): `item_impressions`, `item_clicks`, `user_impressions`,
  `user_clicks`, `all_impressions`, `all_clicks`, `request_time` int64 [n] and `hist_impressions`,
  `hist_clicks`, `hist_timestamp` int64 [n, L] instead of `item_stat_*`, `hist_stat_*`, `hist_time_gap`,
  `item_ctr` and `user_ctr`; the model bucketises them with the pipeline's formulas, then checks the
  request as `predict` does -> the same outputs. Also InvalidArgumentError for a behaviour after
  `request_time` or negative clicks of a counter with impressions.
* `item_representations`: `item_id` string [n] -> `representation` float32 [n, d] (the item tower's
  output, to precompute the catalog offline), `modality_weights` and `modality_mask` float32 [n, M].

An export without the item table (`marn export --item-store`), fed these representations from a feature
store in place of item ids, has its own module: `export.item_store_serving`.
"""
from __future__ import annotations

import tensorflow as tf

from marn_tf import schema as S
from marn_tf.layers.provided_item_tower import CANDIDATE_REPRESENTATION
from marn_tf.models.network import Network, request_features
from marn_tf.export import raw_features as RF
from marn_tf.export.request_features import required_features, serving_parse_spec

SERVING_DEFAULT = "serving_default"
PREDICT = "predict"
PREDICT_RAW = "predict_raw"
ITEM_REPRESENTATIONS = "item_representations"
ITEM_INPUT = "item_id"
OUTPUTS = ("probability", "modality_weights")


class ServingModule(tf.Module):
    """`network.frozen().full` (lookup -> inference over the precomputed item tower) with the serving
    signatures; `schema_file` travels as an asset. Build it from a network restored for export: the item
    tower's outputs are computed here, once.
    """

    def __init__(self, network: Network, schema: S.Schema, schema_file: str):
        super().__init__(name="marn_serving")
        self.model = network.frozen().full
        self.schema_asset = tf.saved_model.Asset(schema_file)
        self._item_lookup = network.lookup.get_layer(f"{S.ITEM_VOCABULARY}_lookup")
        self._item_tower = network.item_tower
        self._schema = schema
        self._candidate = required_features(schema)[0]
        self._modalities = len(network.modalities)
        self._parse_spec = serving_parse_spec(schema)
        self._request_specs = {f.name: tf.TensorSpec([None, *f.shape], S.tf_dtype(f.dtype), name=f.name)
                               for f in request_features(schema)}
        self._raw_request_specs = RF.raw_request_specs(schema)

    def _predict(self, features: dict) -> dict:
        features = check_request(self._schema, {name: features[name] for name in self._request_specs})
        batch = tf.shape(features[self._candidate])[0]

        def run_model() -> dict:
            out = self.model(features, training=False)
            return {key: out[key] for key in OUTPUTS}

        def empty() -> dict:  # the model's segment ops cannot take 0 rows; nothing to score anyway
            return {"probability": tf.zeros([0], tf.float32),
                    "modality_weights": tf.zeros([0, self._modalities], tf.float32)}

        return tf.cond(batch > 0, run_model, empty)

    def signatures(self) -> dict:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serving_default(examples):
            return self._predict(tf.io.parse_example(examples, self._parse_spec))

        @tf.function(input_signature=[self._request_specs])
        def predict(features):
            return self._predict(features)

        @tf.function(input_signature=[self._raw_request_specs])
        def predict_raw(inputs):
            raw = {name: inputs[name] for name in RF.raw_input_specs(self._schema)}
            features = {name: value for name, value in inputs.items() if name not in raw}
            features.update(RF.derived_features(self._schema, raw, inputs[RF.HIST_LENGTH]))
            return self._predict(features)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ITEM_INPUT)])
        def item_representations(item_id):
            encoded = self._item_tower.encode(tf.cast(self._item_lookup(item_id), tf.int32), training=False)
            return {"representation": tf.cast(encoded["representation"], tf.float32),
                    "modality_weights": tf.cast(encoded["modality_weights"], tf.float32),
                    "modality_mask": tf.cast(encoded["modality_mask"], tf.float32)}

        return {SERVING_DEFAULT: serving_default, PREDICT: predict.get_concrete_function(),
                PREDICT_RAW: predict_raw.get_concrete_function(),
                ITEM_REPRESENTATIONS: item_representations}


def check_request(schema: S.Schema, features: dict, item_store: bool = False) -> dict:
    """`features` once every request value is one the model was trained on; else an assertion naming the feature
    (unquoted: TensorFlow escapes quotes in assertion messages).

    Rules from the schema, not per feature name: every feature has its schema shape and the candidate's
    batch size, an int64 bucket lies in [0, cardinality), a float is finite, and the sequence length lies
    in [0, number of behaviour items given] (a longer one would let padding into the model unnoticed).

    With `item_store`, a request of an export without the item table (`export.item_store_serving`): it has
    no item keys, its batch size is that of `candidate_representation` (in `features`), and the sequence length
    lies in [0, the schema's sequence length] (the behaviours' representations have no padding marker). Only
    the schema's features are returned.
    """
    candidate = CANDIDATE_REPRESENTATION if item_store else required_features(schema)[0]
    batch = tf.shape(features[candidate])[0]
    checks, checked = [], {}
    for f in request_features(schema):
        if item_store and S.ITEM_KEY in f.tags:
            continue
        # At run time, since the signature's shapes are not enforced on a call; the error names the input.
        value = checked[f.name] = tf.ensure_shape(features[f.name], [None, *f.shape])
        checks.append(tf.debugging.assert_equal(
            tf.shape(value)[0], batch, message=f"request feature {f.name} has another batch size than {candidate}"))
        if f.dtype == "int64" and f.cardinality:
            checks.append(tf.debugging.assert_greater_equal(
                value, tf.constant(0, tf.int64), message=f"request feature {f.name} must be in [0, {f.cardinality})"))
            checks.append(tf.debugging.assert_less(
                value, tf.constant(f.cardinality, tf.int64),
                message=f"request feature {f.name} must be in [0, {f.cardinality})"))
        elif f.dtype == "float32":
            checks.append(tf.debugging.assert_all_finite(value, f"request feature {f.name} must be finite"))
    behaviour = schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)
    for f in schema.features_with_tags(S.SEQUENCE_LENGTH):
        length = checked[f.name]
        checks.append(tf.debugging.assert_non_negative(length, message=f"request feature {f.name} must be >= 0"))
        if item_store:
            checks.append(tf.debugging.assert_less_equal(
                length, tf.constant(schema.sequence_length, tf.int64),
                message=f"request feature {f.name} must not exceed the sequence length {schema.sequence_length}"))
        elif behaviour:
            given = tf.reduce_sum(tf.cast(tf.not_equal(checked[behaviour[0].name], ""), tf.int64), axis=-1)
            checks.append(tf.debugging.assert_less_equal(
                length, given, message=f"request feature {f.name} must not exceed the number of behaviour items "
                                       f"given in {behaviour[0].name} (non-empty ids)"))
    with tf.control_dependencies([c for c in checks if c is not None]):
        return {name: tf.identity(value) for name, value in checked.items()}
