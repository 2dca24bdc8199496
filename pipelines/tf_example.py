"""Feature values -> serialized tf.train.Example, driven by the schema's feature list."""
from __future__ import annotations

from marn_tf.schema import FeatureSpec


def encode_example(values: dict, features: list[FeatureSpec]) -> bytes:
    """Serializes `values` (name -> scalar or list) with every feature of `features`, in order.

    A value missing from `values` takes the feature's default; a list must have the declared length.
    """
    from tensorflow.core.example import example_pb2  # per worker once; imports TensorFlow

    example = example_pb2.Example()
    feature_map = example.features.feature
    for spec in features:
        value = values.get(spec.name, spec.default)
        if not spec.shape:
            value = [value]
        elif len(value) != spec.shape[0]:
            raise ValueError(f"feature {spec.name!r} has {len(value)} values, the schema says {spec.shape[0]}")
        if spec.dtype == "int64":
            feature_map[spec.name].int64_list.value.extend(value)
        elif spec.dtype == "float32":
            feature_map[spec.name].float_list.value.extend(value)
        else:
            feature_map[spec.name].bytes_list.value.extend(v.encode("utf-8") for v in value)
    return example.SerializeToString()
