"""The tf.train.Example codec against messages built with TensorFlow's protobuf API and tf.io.parse_example."""
import random

import pytest

from marn_tf.example_codec import ExampleEncoder, ExampleError, decode
from marn_tf.schema import FeatureSpec

FEATURES = [
    FeatureSpec("label", "int64", [], ["label"], 0),
    FeatureSpec("big", "int64", [4], [], 0),
    FeatureSpec("score", "float32", [3], [], 0.0),
    FeatureSpec("user", "string", [], [], ""),
    FeatureSpec("items", "string", [5], [], ""),
]


def reference(values):
    """The same Example built with the protobuf API."""
    from tensorflow.core.example import example_pb2

    ex = example_pb2.Example()
    for f in FEATURES:
        v = values[f.name] if f.shape else [values[f.name]]
        target = ex.features.feature[f.name]
        if f.dtype == "int64":
            target.int64_list.value.extend(v)
        elif f.dtype == "float32":
            target.float_list.value.extend(v)
        else:
            target.bytes_list.value.extend(s.encode() for s in v)
    return ex


def random_values(rng):
    return {"label": rng.choice([0, 1]),
            "big": [rng.choice([0, 5, 127, 128, 300, 2**40, -1, -2**63, 2**63 - 1]) for _ in range(4)],
            "score": [rng.uniform(-1e6, 1e6) for _ in range(3)],
            "user": rng.choice(["", "u1", "ünï ✓", "x" * 300]),
            "items": [rng.choice(["", "i0000001", "é" * 70]) for _ in range(5)]}


def test_matches_protobuf_message():
    from tensorflow.core.example import example_pb2

    encoder, rng = ExampleEncoder(FEATURES), random.Random(0)
    for _ in range(200):
        values = random_values(rng)
        assert example_pb2.Example.FromString(encoder.encode(values)) == reference(values)


def test_concatenated_parts_parse_as_one_example():
    """The pipeline writes shared + own bytes: protobuf and both TF parsers must read the merge."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.example import example_pb2

    values = {"label": 1, "big": [1, 2**35, -7, 0], "score": [0.5, -1.0, 3.25], "user": "ü", "items": list("abcde")}
    shared, own = ExampleEncoder(FEATURES[3:]), ExampleEncoder(FEATURES[:3])
    blob = shared.encode(values) + own.encode(values)
    assert example_pb2.Example.FromString(blob) == reference(values)
    spec = {f.name: tf.io.FixedLenFeature(f.shape, {"int64": tf.int64, "float32": tf.float32,
                                                   "string": tf.string}[f.dtype]) for f in FEATURES}
    single = tf.io.parse_single_example(blob, spec)
    batch = tf.io.parse_example([blob, blob], spec)
    for parsed in (single, {k: v[1] for k, v in batch.items()}):
        assert parsed["label"].numpy() == 1 and parsed["user"].numpy() == "ü".encode()
        np.testing.assert_array_equal(parsed["big"].numpy(), [1, 2**35, -7, 0])
        np.testing.assert_array_equal(parsed["score"].numpy(), [0.5, -1.0, 3.25])
        assert list(parsed["items"].numpy()) == [c.encode() for c in "abcde"]


def test_a_missing_feature_is_an_error():
    with pytest.raises(KeyError, match="no value for feature 'user'"):
        ExampleEncoder(FEATURES).encode({"label": 1, "big": [0] * 4, "score": [0.0] * 3})


def test_wrong_length_names_the_feature():
    with pytest.raises(ValueError, match="'items' has 2 values, the schema says 5"):
        ExampleEncoder(FEATURES).encode({"label": 0, "big": [0] * 4, "score": [0.0] * 3, "user": "",
                                         "items": ["a", "b"]})


def test_decode_reads_back_what_the_encoder_wrote_and_what_tensorflow_wrote():
    values = {"label": 1, "big": [1, 2**35, -7, 0], "score": [0.5, -1.0, 3.25], "user": "ü", "items": list("abcde")}
    for blob in (ExampleEncoder(FEATURES).encode(values), reference(values).SerializeToString()):
        decoded = decode(blob, FEATURES, required=["user"])
        want = {f.name: values[f.name] if f.shape else [values[f.name]] for f in FEATURES}
        assert decoded == {k: [x.encode() for x in v] if isinstance(v[0], str) else v for k, v in want.items()}


@pytest.mark.parametrize("change, message", [
    (lambda ex: ex.features.feature["items"].int64_list.value.extend([1] * 5),
     "'items' holds int64_list, the schema says string"),
    (lambda ex: ex.features.feature["big"].int64_list.value.extend([1, 2]), "'big' has 2 values, the schema says 4"),
    (lambda ex: ex.features.feature.pop("user"), "request feature 'user' is required"),
])
def test_decode_names_the_feature_at_fault(change, message):
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    example.features.feature["label"].int64_list.value.append(1)
    example.features.feature["user"].bytes_list.value.append(b"u1")
    assert decode(example.SerializeToString(), FEATURES, required=["user"]) == {"label": [1], "user": [b"u1"]}
    change(example)
    with pytest.raises(ExampleError, match=message):
        decode(example.SerializeToString(), FEATURES, required=["user"])


@pytest.mark.parametrize("blob", [b"\xff\xff\xff", b"\x0a\x05abc", "not bytes"])
def test_decode_refuses_what_is_not_an_example(blob):
    with pytest.raises(ExampleError, match="not a serialized tf.train.Example"):
        decode(blob, FEATURES)


def test_decode_leaves_out_features_it_was_not_asked_for_and_absent_ones():
    blob = ExampleEncoder(FEATURES[:2]).encode({"label": 0, "big": [1, 2, 3, 4]})
    assert decode(blob, FEATURES[1:]) == {"big": [1, 2, 3, 4]}
