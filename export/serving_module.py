"""The served model: a `tf.Module` whose signatures TF Serving exposes.

Signatures (all take raw ids; vocabularies and the item feature table are inside the model; the item
tower's outputs for the whole catalog are precomputed at export, so a request only gathers them):

* `serving_default`: `examples` string [n], serialized `tf.train.Example` requests (the schema's request
  features; see `export.request_features`) -> `probability` float32 [n], `modality_weights` float32 [n, M]
  (mean |a^m| of the candidate item's modality attention; 0 for a missing modality), `item_known` bool [n]
  (False: the candidate id is not in the item vocabulary, and it was scored as the out-of-vocabulary item).
* `predict`: the request features as named tensors, shape [n, *feature shape] (what a REST client sends as
  JSON `instances`) -> the same outputs.

Both check a request's values before the model sees them (`check_request`) and fail with
InvalidArgumentError naming the feature: a batch size or sequence length unlike the candidate's, a bucket
outside its cardinality, a non-finite float, a rate outside [0, 1], a behaviour history whose ids are not
one block from the first position (the pipeline writes them oldest first, padded with '' at the end), a
sequence length other than the number of behaviour ids given, more rows than the export's maximum batch
(`export_model`'s `max_batch`, `DEFAULT_MAX_BATCH` by default; in export_info.json). An empty batch returns
empty outputs. A left-out rate in a `serving_default` example reads as `request_features.NEUTRAL_RATE`.
(A tensor of the wrong dtype is refused by TensorFlow before the graph runs, by input index; TF Serving's
REST API converts JSON to the signature's dtypes and names the key itself.)
* `predict_raw`: like `predict`, but with the raw values a front end has in place of the pipeline's
  buckets and rates (`export.raw_features`): `item_impressions`, `item_clicks`, `user_impressions`,
  `user_clicks`, `all_impressions`, `all_clicks`, `request_time` int64 [n] and `hist_impressions`,
  `hist_clicks`, `hist_timestamp` int64 [n, L] instead of `item_stat_*`, `hist_stat_*`, `hist_time_gap`,
  `item_ctr` and `user_ctr`; the model bucketises them with the pipeline's formulas, then checks the
  request as `predict` does -> the same outputs. Also InvalidArgumentError for a behaviour after
  `request_time` or before the behaviour it follows, a counter below -1 (-1: unknown), clicks of a counter
  with impressions that are negative or exceed them.
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
ITEM_KNOWN = "item_known"  # an output of the scoring signatures besides OUTPUTS: was the candidate id in the vocabulary
DEFAULT_MAX_BATCH = 10_000  # rows per request; a bound on what one request can make the server allocate


class ServingModule(tf.Module):
    """`network.frozen().full` (lookup -> inference over the precomputed item tower) with the serving
    signatures; `schema_file` travels as an asset. Build it from a network restored for export: the item
    tower's outputs are computed here, once.
    """

    def __init__(self, network: Network, schema: S.Schema, schema_file: str, max_batch: int = DEFAULT_MAX_BATCH):
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
        self.max_batch = max_batch

    def _predict(self, features: dict) -> dict:
        features = check_request(self._schema, {name: features[name] for name in self._request_specs})
        batch = tf.shape(features[self._candidate])[0]
        # StringLookup's one out-of-vocabulary index is 0
        known = tf.greater(self._item_lookup(features[self._candidate]), 0)

        def run_model() -> dict:
            out = self.model(features, training=False)
            return {key: out[key] for key in OUTPUTS}

        def empty() -> dict:  # the model's segment ops cannot take 0 rows; nothing to score anyway
            return {"probability": tf.zeros([0], tf.float32),
                    "modality_weights": tf.zeros([0, self._modalities], tf.float32)}

        return {**tf.cond(batch > 0, run_model, empty), ITEM_KNOWN: known}

    def signatures(self) -> dict:
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serving_default(examples):
            with tf.control_dependencies([check_batch(examples, self.max_batch, "examples")]):
                examples = tf.identity(examples)  # counted before the parser allocates the features
            return self._predict(tf.io.parse_example(examples, self._parse_spec))

        @tf.function(input_signature=[self._request_specs])
        def predict(features):
            with tf.control_dependencies([check_batch(features[self._candidate], self.max_batch, self._candidate)]):
                return self._predict(features)

        @tf.function(input_signature=[self._raw_request_specs])
        def predict_raw(inputs):
            with tf.control_dependencies([check_batch(inputs[self._candidate], self.max_batch, self._candidate)]):
                inputs = {name: tf.identity(value) for name, value in inputs.items()}
            raw = {name: inputs[name] for name in RF.raw_input_specs(self._schema)}
            features = {name: value for name, value in inputs.items() if name not in raw}
            features.update(RF.derived_features(self._schema, raw, inputs[RF.HIST_LENGTH]))
            return self._predict(features)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ITEM_INPUT)])
        def item_representations(item_id):
            with tf.control_dependencies([check_batch(item_id, self.max_batch, ITEM_INPUT)]):
                item_id = tf.identity(item_id)
            encoded = self._item_tower.encode(tf.cast(self._item_lookup(item_id), tf.int32), training=False)
            return {"representation": tf.cast(encoded["representation"], tf.float32),
                    "modality_weights": tf.cast(encoded["modality_weights"], tf.float32),
                    "modality_mask": tf.cast(encoded["modality_mask"], tf.float32)}

        return {SERVING_DEFAULT: serving_default, PREDICT: predict.get_concrete_function(),
                PREDICT_RAW: predict_raw.get_concrete_function(),
                ITEM_REPRESENTATIONS: item_representations}


def check_batch(first_input: tf.Tensor, max_batch: int, name: str) -> tf.Operation:
    """An assertion that a request has at most `max_batch` rows (the length of `first_input`, its input `name`)."""
    return tf.debugging.assert_less_equal(
        tf.shape(first_input, out_type=tf.int64)[0], tf.constant(max_batch, tf.int64),
        message=f"request input {name} has more rows than the maximum batch {max_batch} of this export "
                f"(export_model max_batch): split the request")


def check_request(schema: S.Schema, features: dict, item_store: bool = False) -> dict:
    """`features` once every request value is one the model was trained on; else an assertion naming the feature
    (unquoted: TensorFlow escapes quotes in assertion messages).

    Rules from the schema, not per feature name: every feature has its schema shape and the candidate's
    batch size, an int64 bucket lies in [0, cardinality), a float is finite, a rate (tag `rate`) lies in
    [0, 1], the behaviour ids are non-empty from the first position on and then '' (as the pipeline pads),
    and the sequence length equals the number of behaviour ids given (a longer one would let padding into
    the model unnoticed, a shorter one drop behaviours unnoticed).

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
            if S.RATE in f.tags:  # a non-finite value is the check above's to name
                outside = tf.logical_and(tf.math.is_finite(value), tf.logical_or(value < 0.0, value > 1.0))
                checks.append(tf.debugging.assert_equal(
                    tf.reduce_any(outside), False, message=f"request feature {f.name} must be in [0, 1] (a rate)"))
    behaviour = schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)
    for f in schema.features_with_tags(S.SEQUENCE_LENGTH):
        length = checked[f.name]
        checks.append(tf.debugging.assert_non_negative(length, message=f"request feature {f.name} must be >= 0"))
        if item_store:
            checks.append(tf.debugging.assert_less_equal(
                length, tf.constant(schema.sequence_length, tf.int64),
                message=f"request feature {f.name} must not exceed the sequence length {schema.sequence_length}"))
        elif behaviour:
            ids = behaviour[0].name
            filled = tf.not_equal(checked[ids], "")
            given = tf.reduce_sum(tf.cast(filled, tf.int64), axis=-1)
            checks.append(tf.debugging.assert_less_equal(
                length, given, message=f"request feature {f.name} must not exceed the number of behaviour items "
                                       f"given in {ids} (non-empty ids)"))
            checks.append(tf.debugging.assert_greater_equal(  # a negative length is the check above's to name
                tf.where(length < 0, given, length), given, message=f"request feature {f.name} must not be less than the number of behaviour "
                                       f"items given in {ids} (non-empty ids)"))
            # the pipeline writes behaviours oldest first from position 0, then '' padding: no id after a ''
            checks.append(tf.debugging.assert_equal(
                tf.reduce_any(tf.logical_and(filled[:, 1:], tf.logical_not(filled[:, :-1]))), False,
                message=f"request feature {ids} must hold its behaviour ids first, then '' padding "
                        f"(no id after an empty one)"))
    with tf.control_dependencies([c for c in checks if c is not None]):
        return {name: tf.identity(value) for name, value in checked.items()}
