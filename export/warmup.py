"""`assets.extra/tf_serving_warmup_requests`: PredictionLog records TF Serving replays when it loads a version.

TF Serving runs each record once before it marks the version AVAILABLE, so the first real request does
not pay for graph initialisation and lookup-table loading. The requests are real validation examples,
cut down to what a request carries (no label, no metadata), at the batch sizes the server will see.
"""
from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from marn_tf import schema as S
from marn_tf.data.input import split_files
from marn_tf.models.network import request_features

WARMUP_FILE = "tf_serving_warmup_requests"  # the name TF Serving looks for under assets.extra/


def read_examples(data_dir: str, schema: S.Schema, split: str, count: int) -> list[bytes]:
    """The first `count` serialized examples of a split, in file order, cut down to request features."""
    files = split_files(data_dir, schema, split)
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    return [to_request(record.numpy(), schema) for record in records]


def to_request(serialized: bytes, schema: S.Schema) -> bytes:
    """A training example without what a serving request does not carry (the label, metadata)."""
    example = tf.train.Example.FromString(serialized)
    keep = {f.name for f in request_features(schema)}
    for name in list(example.features.feature):
        if name not in keep:
            del example.features.feature[name]
    return example.SerializeToString()


def predict_log(model_name: str, signature: str, inputs: dict) -> prediction_log_pb2.PredictionLog:
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup(path: str, logs: list[prediction_log_pb2.PredictionLog]) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def read_warmup(path: str) -> list[prediction_log_pb2.PredictionLog]:
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
