"""Build (and send) TF Serving requests from raw features: REST JSON and gRPC `PredictRequest`.

A request instance is a dict of the schema's request features (`export.request_features`): ids as strings,
bucketed statistics as ints, behaviour sequences as lists (any length up to the schema's; padded here).

    body = rest_body(schema, [instance, ...])                       # POST to /v1/models/<name>:predict
    body = raw_rest_body(schema, [raw_instance, ...])               # the same, for `predict_raw`
    body = item_store_rest_body(schema, [instance, ...], store)      # for a `marn export --item-store` model
    request = grpc_request(schema, [instance, ...], "marn")         # PredictionService.Predict
    RestClient("http://host:8501", "marn", schema).predict([...])   # -> [{"probability": ..., ...}, ...]
    GrpcClient("host:8500", "marn", schema).predict([...])

Before sending, the helpers refuse (`RequestError`, naming the feature) what the pipeline never writes and the
served model would refuse: a rate outside [0, 1], behaviour ids with an empty id between them, a `hist_length`
other than the number of behaviour ids, and for `predict_raw` a counter below -1 (`UNKNOWN_COUNT`: unknown),
clicks above their impressions or negative where impressions > 0, behaviour times not oldest first or after
`request_time`. A left-out rate (`user_ctr`, `item_ctr`) is filled with `request_features.NEUTRAL_RATE`, 0.5,
and logged as a warning; a left-out `predict_raw` counter is `UNKNOWN_COUNT`. The responses carry
`item_known` besides `probability` and `modality_weights`: False for a candidate id the model does not know.

REST sends named raw tensors to the `predict` signature (row format: one JSON object per instance);
gRPC sends serialized tf.Examples to `serving_default`, the cheaper path for large batches. `raw_rest_body`
is for front ends that have counters and times instead of the pipeline's buckets (`predict_raw`).
`item_store_rest_body` is for a model exported with `--item-store`: it looks each distinct item of the
request up once in `store` (item ids -> representation, modality weights and mask: the rows `marn embed-items`
wrote, or a regular export's `item_representations`) and sends the vectors in place of the ids.
"""
from __future__ import annotations

import json
import urllib.request
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from marn_tf import schema as S
from marn_tf.export import raw_features as RF
from marn_tf.export.request_features import RequestError, complete, log_left_out_rates, serialize_request

PREDICT_SIGNATURE = "predict"
EXAMPLES_SIGNATURE = "serving_default"
PREDICT_RAW_SIGNATURE = "predict_raw"
UNKNOWN_COUNT = RF.UNKNOWN_COUNT  # what predict_raw reads as "no impressions"


def rest_body(schema: S.Schema, instances: Sequence[Mapping[str, Any]], signature: str = PREDICT_SIGNATURE) -> dict:
    """The JSON body of a REST Predict call (row format) for the `predict` signature."""
    log_left_out_rates(schema, list(instances))
    return {"signature_name": signature, "instances": [complete(schema, i) for i in instances]}


def item_store_rest_body(schema: S.Schema, instances: Sequence[Mapping[str, Any]], store) -> dict:
    """The JSON body of a REST Predict call (row format) for a `marn export --item-store` model.

    Args:
      schema: the model's schema.
      instances: requests as for `rest_body` (with item ids).
      store: item ids string [k] (numpy) -> {"representation" [k, d], "modality_weights", "modality_mask" [k, M]}.
    """
    from marn_tf.export.item_store_serving import item_store_request
    from marn_tf.export.request_features import to_columns

    columns = item_store_request(schema, to_columns(schema, list(instances)), store)
    return {"signature_name": PREDICT_SIGNATURE,
            "instances": [{name: json_value(np.asarray(value[i]).tolist()) for name, value in columns.items()}
                          for i in range(len(instances))]}


def json_value(value):
    """A numpy `tolist()` value as JSON takes it: bytes as text, at any depth."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [json_value(v) for v in value]
    return value


def raw_rest_body(schema: S.Schema, instances: Sequence[Mapping[str, Any]]) -> dict:
    """The JSON body of a REST Predict call (row format) for the `predict_raw` signature.

    An instance holds request features as for `rest_body`, except those `predict_raw` derives
    (`raw_features.DERIVED_FEATURES`), and the raw inputs (`raw_features.raw_input_specs`): `request_time` is
    required, a counter left out is unknown, behaviour sequences keep their most recent entries and are
    padded like `hist_item_id`, so that they stay aligned with it.
    """
    return {"signature_name": PREDICT_RAW_SIGNATURE, "instances": [_complete_raw(schema, i) for i in instances]}


def _complete_raw(schema: S.Schema, instance: Mapping[str, Any]) -> dict:
    specs = RF.raw_input_specs(schema)
    derived = sorted(set(instance) & set(RF.DERIVED_FEATURES))
    if derived:
        raise RequestError(f"{derived} are computed by predict_raw from {sorted(specs)}: leave them out")
    if instance.get(RF.REQUEST_TIME) is None:
        raise RequestError(f"request input {RF.REQUEST_TIME!r} (unix seconds) is required by predict_raw")
    behaviour = schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)[0].name
    for name in RF.PER_BEHAVIOUR:
        if instance.get(name) is not None and len(instance[name]) != len(instance.get(behaviour) or []):
            raise RequestError(f"request input {name!r} must give one value per item of {behaviour!r}")
    features = complete(schema, {name: value for name, value in instance.items() if name not in specs})
    out = {name: value for name, value in features.items() if name not in RF.DERIVED_FEATURES}
    for name, spec in specs.items():
        value = instance.get(name)
        if spec.shape.rank == 1:
            out[name] = UNKNOWN_COUNT if value is None else _raw_int(name, value)
        else:
            length = spec.shape[1]
            values = [_raw_int(name, v) for v in ([] if value is None else list(value))[-length:]]
            out[name] = values + [UNKNOWN_COUNT if name != RF.HIST_TIMESTAMP else 0] * (length - len(values))
    _check_raw(out, out[RF.HIST_LENGTH])
    return out


def _check_raw(raw: Mapping[str, Any], hist_length: int) -> None:
    """The raw values `predict_raw` refuses (`raw_features._check_raw`), refused here naming the input."""
    pairs = [(RF.ITEM_IMPRESSIONS, RF.ITEM_CLICKS), (RF.USER_IMPRESSIONS, RF.USER_CLICKS),
             (RF.ALL_IMPRESSIONS, RF.ALL_CLICKS)]
    counters = [(i, c, raw[i], raw[c]) for i, c in pairs]
    counters += [(RF.HIST_IMPRESSIONS, RF.HIST_CLICKS, raw[RF.HIST_IMPRESSIONS][k], raw[RF.HIST_CLICKS][k])
                 for k in range(hist_length)]
    for impressions, clicks, shown, clicked in counters:
        for name, value in ((impressions, shown), (clicks, clicked)):
            if value < UNKNOWN_COUNT:
                raise RequestError(f"request input {name!r} must be >= 0, or {UNKNOWN_COUNT} for unknown, got {value}")
        if clicked > max(shown, 0) or (shown > 0 and clicked < 0):
            raise RequestError(f"request input {clicks!r} is {clicked}, but {impressions!r} is {shown}: clicks are "
                               f"at least 0 and at most the impressions (unknown: both {UNKNOWN_COUNT})")
    times = raw[RF.HIST_TIMESTAMP][:hist_length]
    if raw[RF.REQUEST_TIME] < 0 or any(t < 0 or t > raw[RF.REQUEST_TIME] for t in times):
        raise RequestError(f"request inputs {RF.HIST_TIMESTAMP!r} and {RF.REQUEST_TIME!r} are unix seconds (>= 0), "
                           f"no behaviour after the request")
    if any(later < earlier for earlier, later in zip(times, times[1:])):
        raise RequestError(f"request input {RF.HIST_TIMESTAMP!r} must be oldest first")


def _raw_int(name: str, value: Any) -> int:
    if isinstance(value, np.integer):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not -2 ** 63 <= value < 2 ** 63:
        raise RequestError(f"request input {name!r} takes int64 values, got {value!r}")
    return value


def grpc_request(schema: S.Schema, instances: Sequence[Mapping[str, Any]], model_name: str,
                 version: Optional[int] = None, signature: str = EXAMPLES_SIGNATURE):
    """A `PredictRequest` carrying the instances as serialized tf.Examples (`serving_default`'s `examples`)."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    spec = model_pb2.ModelSpec(name=model_name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    request = predict_pb2.PredictRequest(model_spec=spec)
    log_left_out_rates(schema, list(instances))
    examples = np.array([serialize_request(schema, i, log_rates=False) for i in instances], dtype=object)
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples))
    return request


def outputs_per_instance(outputs: Mapping[str, np.ndarray]) -> list[dict]:
    """{output: [n, ...]} -> one {output: value} per instance (the REST response's row format)."""
    names = list(outputs)
    return [{name: np.asarray(outputs[name][i]).tolist() for name in names}
            for i in range(len(next(iter(outputs.values()))))]


class RestClient:
    """TF Serving's REST API (port 8501 by default)."""

    def __init__(self, url: str, model_name: str, schema: S.Schema, version: Optional[int] = None,
                 timeout: float = 10.0):
        version_path = f"/versions/{version}" if version is not None else ""
        self.endpoint = f"{url.rstrip('/')}/v1/models/{model_name}{version_path}:predict"
        self.schema = schema
        self.timeout = timeout

    def predict(self, instances: Sequence[Mapping[str, Any]]) -> list[dict]:
        body = json.dumps(rest_body(self.schema, instances)).encode("utf-8")
        request = urllib.request.Request(self.endpoint, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())["predictions"]
        except urllib.error.HTTPError as err:  # TF Serving says what was wrong in {"error": ...}
            raise RuntimeError(f"{self.endpoint}: HTTP {err.code}: {err.read().decode('utf-8', 'replace')}") from err


class GrpcClient:
    """TF Serving's gRPC PredictionService (port 8500 by default)."""

    def __init__(self, target: str, model_name: str, schema: S.Schema, version: Optional[int] = None,
                 timeout: float = 10.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_name, self.schema, self.version, self.timeout = model_name, schema, version, timeout

    def predict(self, instances: Sequence[Mapping[str, Any]]) -> list[dict]:
        import tensorflow as tf

        request = grpc_request(self.schema, instances, self.model_name, self.version)
        response = self.stub.Predict(request, timeout=self.timeout)
        return outputs_per_instance({name: tf.make_ndarray(proto) for name, proto in response.outputs.items()})

    def close(self) -> None:
        self.channel.close()
