"""Build (and send) TF Serving requests from raw features: REST JSON and gRPC `PredictRequest`.

A request instance is a dict of the schema's request features (`export.request_features`): ids as strings,
bucketed statistics as ints, behaviour sequences as lists (any length up to the schema's; padded here).

    body = rest_body(schema, [instance, ...])                       # POST to /v1/models/<name>:predict
    request = grpc_request(schema, [instance, ...], "marn")         # PredictionService.Predict
    RestClient("http://host:8501", "marn", schema).predict([...])   # -> [{"probability": ..., ...}, ...]
    GrpcClient("host:8500", "marn", schema).predict([...])

REST sends named raw tensors to the `predict` signature (row format: one JSON object per instance);
gRPC sends serialized tf.Examples to `serving_default`, the cheaper path for large batches.
"""
from __future__ import annotations

import json
import urllib.request
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from marn_tf import schema as S
from marn_tf.export.request_features import complete, serialize_request

PREDICT_SIGNATURE = "predict"
EXAMPLES_SIGNATURE = "serving_default"


def rest_body(schema: S.Schema, instances: Sequence[Mapping[str, Any]], signature: str = PREDICT_SIGNATURE) -> dict:
    """The JSON body of a REST Predict call (row format) for the `predict` signature."""
    return {"signature_name": signature, "instances": [complete(schema, i) for i in instances]}


def grpc_request(schema: S.Schema, instances: Sequence[Mapping[str, Any]], model_name: str,
                 version: Optional[int] = None, signature: str = EXAMPLES_SIGNATURE):
    """A `PredictRequest` carrying the instances as serialized tf.Examples (`serving_default`'s `examples`)."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    spec = model_pb2.ModelSpec(name=model_name, signature_name=signature)
    if version is not None:
        spec.version.value = version
    request = predict_pb2.PredictRequest(model_spec=spec)
    examples = np.array([serialize_request(schema, i) for i in instances], dtype=object)
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
