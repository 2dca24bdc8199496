"""The one tf.train.Example codec of the schema's features: the pipeline's examples, serving requests and
batch-scoring input are written and checked here, without importing TensorFlow.

`ExampleEncoder` serializes feature values as a tf.train.Example; `decode` reads one back and checks it
against the features (kind and length of each, the required ones present), naming the feature at fault.

Serialized protobuf messages concatenate into their merge (protobuf's wire-format rule; protobuf,
`tf.io.parse_example` and `tf.io.parse_single_example` all read it so, as the tests check). The
pipeline uses that to serialize the features shared by the impressions of one request (user and
behaviour sequence) once, and only each impression's own features per example.

Two more measured choices (`python benchmarks/pipeline.py --encoder-only`):
* The message classes are built here from the descriptor of tensorflow/core/example/example.proto
  (same wire format, a private descriptor pool) instead of importing them from TensorFlow, whose
  import cost every Beam worker 3.3 s of CPU and 540 MB of memory.
* Repeated fields are filled by slice assignment from a list (`value[:] = [...]`): ~30 us for our
  20-feature example with sequences of 50 (28-47 us over repeated runs here), against ~200 us with
  `extend(generator)`.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from marn_tf.schema import FeatureSpec

_F = descriptor_pb2.FieldDescriptorProto
KINDS = {"string": "bytes_list", "int64": "int64_list", "float32": "float_list"}  # schema dtype -> Feature field


class ExampleError(ValueError):
    """Bytes that are not a tf.train.Example of the schema's features; the message names the feature."""


@functools.lru_cache(maxsize=None)
def example_class():
    """The tf.train.Example message class, without importing TensorFlow."""
    proto = descriptor_pb2.FileDescriptorProto(name="marn_tf/example_codec.proto", package="tensorflow",
                                               syntax="proto3")

    def message(name, *fields):
        m = proto.message_type.add(name=name)
        for number, field_name, kind, label, type_name, oneof in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
            if oneof is not None:
                f.oneof_index = oneof
        return m

    repeated, optional = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", (1, "value", _F.TYPE_BYTES, repeated, None, None))
    message("FloatList", (1, "value", _F.TYPE_FLOAT, repeated, None, None))
    message("Int64List", (1, "value", _F.TYPE_INT64, repeated, None, None))
    feature = message("Feature", (1, "bytes_list", _F.TYPE_MESSAGE, optional, ".tensorflow.BytesList", 0),
                      (2, "float_list", _F.TYPE_MESSAGE, optional, ".tensorflow.FloatList", 0),
                      (3, "int64_list", _F.TYPE_MESSAGE, optional, ".tensorflow.Int64List", 0))
    feature.oneof_decl.add(name="kind")
    features = message("Features", (1, "feature", _F.TYPE_MESSAGE, repeated, ".tensorflow.Features.FeatureEntry",
                                    None))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=optional)
    entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE, label=optional, type_name=".tensorflow.Feature")
    message("Example", (1, "features", _F.TYPE_MESSAGE, optional, ".tensorflow.Features", None))
    pool = descriptor_pool.DescriptorPool()  # private: no clash with TensorFlow's own in one process
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def num_values(feature: FeatureSpec) -> int:
    """How many values the feature holds in an Example: the product of its shape (a [50, 64] feature is 3,200
    values, row after row, as `tf.io.parse_example` reads them)."""
    return math.prod(feature.shape)


class ExampleEncoder:
    """Serializes `values` as a tf.train.Example with exactly the features of `features`.

    Every feature must have a value (a KeyError names a missing one); a list must have the declared
    number of values (`num_values`: a feature of several dimensions is given flat). Extra keys in `values` are
    ignored.
    """

    def __init__(self, features: list[FeatureSpec]):
        self.features = features
        self._plan = [(f.name, f.dtype, num_values(f) if f.shape else None) for f in features]

    def encode(self, values: dict) -> bytes:
        example = example_class()()
        feature_map = example.features.feature
        for name, dtype, length in self._plan:
            try:
                value = values[name]
            except KeyError:
                raise KeyError(f"no value for feature {name!r}") from None
            if length is None:
                value = [value]
            elif len(value) != length:
                raise ValueError(f"feature {name!r} has {len(value)} values, the schema says {length}")
            if dtype == "int64":
                feature_map[name].int64_list.value[:] = value
            elif dtype == "float32":
                feature_map[name].float_list.value[:] = value
            else:
                feature_map[name].bytes_list.value[:] = [v.encode("utf-8") for v in value]
        return example.SerializeToString()


def decode(serialized: bytes, features: Sequence[FeatureSpec], required: Sequence[str] = ()) -> dict[str, list]:
    """The values of `features` present in a serialized tf.train.Example (strings as bytes, as TensorFlow reads
    them), checked: each of the declared kind and length, every `required` name present. Features not in
    `features` are ignored."""
    try:
        example = example_class().FromString(serialized)
    except (DecodeError, TypeError) as err:
        raise ExampleError(f"not a serialized tf.train.Example: {err}") from err
    feature_map = example.features.feature
    for name in required:
        if name not in feature_map:
            raise ExampleError(f"request feature {name!r} is required")
    values = {}
    for f in features:
        if f.name not in feature_map:
            continue
        kind = feature_map[f.name].WhichOneof("kind")
        if kind != KINDS[f.dtype]:
            raise ExampleError(f"feature {f.name!r} holds {kind}, the schema says {f.dtype}")
        value = list(getattr(feature_map[f.name], kind).value)
        want = num_values(f)
        if len(value) != want:
            raise ExampleError(f"feature {f.name!r} has {len(value)} values, the schema says {want}")
        values[f.name] = value
    return values
