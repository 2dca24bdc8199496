"""Client helpers: what they build runs through the loaded signatures, as TF Serving would run it.

TF Serving cannot run here, so the wire tests put the loaded SavedModel behind a small HTTP server and a
gRPC PredictionService that decode requests the way tensorflow_model_server does (REST row format: each
named input stacked over instances; gRPC: TensorProto inputs by name, signature from the model spec).
"""
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from marn_tf.export.clients import GrpcClient, RestClient, grpc_request, outputs_per_instance, rest_body
from marn_tf.export.request_features import serialize_request

pytestmark = pytest.mark.integration


INSTANCES = [{"item_id": "i0000001", "user_id": "u0000001", "hist_item_id": ["i0000002", "i0000003"],
              "hist_event_type": [1, 2], "position": 2},
             {"item_id": "i0000004", "context_query": "shoes"},
             {"item_id": "unknown-item", "user_gender": "f"}]


def run_rest_body(loaded, body: dict) -> list[dict]:
    """TF Serving's REST row format: inputs named by the instance keys, stacked over instances."""
    function = loaded.signatures[body["signature_name"]]
    specs = function.structured_input_signature[1]
    inputs = {name: tf.constant(np.array([i[name] for i in body["instances"]]).astype(
        spec.dtype.as_numpy_dtype if spec.dtype != tf.string else object), spec.dtype) for name, spec in specs.items()}
    return outputs_per_instance({k: v.numpy() for k, v in function(**inputs).items()})


def run_grpc_request(loaded, request: predict_pb2.PredictRequest) -> dict:
    function = loaded.signatures[request.model_spec.signature_name or "serving_default"]
    return {k: v.numpy() for k, v in function(**{name: tf.constant(tf.make_ndarray(proto))
                                                 for name, proto in request.inputs.items()}).items()}


def reference(loaded, schema, batch):
    examples = tf.constant([serialize_request(schema, i) for i in batch])
    return loaded.signatures["serving_default"](examples=examples)["probability"].numpy()


def test_rest_body_runs_through_the_predict_signature(loaded, prepared):
    _, _, schema = prepared
    body = json.loads(json.dumps(rest_body(schema, INSTANCES)))  # what goes over the wire
    assert body["signature_name"] == "predict" and len(body["instances"]) == 3
    got = [row["probability"] for row in run_rest_body(loaded, body)]
    np.testing.assert_allclose(got, reference(loaded, schema, INSTANCES), rtol=1e-6, atol=1e-7)


def test_grpc_request_runs_through_serving_default(loaded, prepared):
    _, _, schema = prepared
    request = predict_pb2.PredictRequest.FromString(grpc_request(schema, INSTANCES, "marn", version=1)
                                                    .SerializeToString())
    assert request.model_spec.name == "marn" and request.model_spec.version.value == 1
    got = run_grpc_request(loaded, request)
    np.testing.assert_allclose(got["probability"], reference(loaded, schema, INSTANCES), rtol=1e-6)
    assert got["modality_weights"].shape == (3, 4)


@pytest.fixture
def rest_server(loaded):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.path == "/v1/models/marn:predict"
            payload = json.dumps({"predictions": run_rest_body(loaded, body)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def grpc_server(loaded):
    class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            response = predict_pb2.PredictResponse(model_spec=request.model_spec)
            for name, value in run_grpc_request(loaded, request).items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_rest_and_grpc_clients_over_the_wire(rest_server, grpc_server, loaded, prepared):
    _, _, schema = prepared
    want = reference(loaded, schema, INSTANCES)
    rest = RestClient(rest_server, "marn", schema).predict(INSTANCES)
    client = GrpcClient(grpc_server, "marn", schema)
    over_grpc = client.predict(INSTANCES)
    client.close()
    np.testing.assert_allclose([r["probability"] for r in rest], want, rtol=1e-6)
    np.testing.assert_allclose([r["probability"] for r in over_grpc], want, rtol=1e-6)
    assert len(over_grpc[0]["modality_weights"]) == 4
