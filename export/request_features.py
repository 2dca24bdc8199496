"""What a serving request carries, derived from the schema: the parse spec, and raw features -> tf.Example bytes.

A request carries the schema's request features (`marn_tf.models.network.request_features`: no label, no
metadata), as the pipeline writes them: string ids, bucketed statistics, behaviour sequences of the
schema's length, oldest first and padded at the end. Only the candidate item id is required; any other
feature a request leaves out gets the schema's default (an empty behaviour sequence has length 0, so the
model masks it out), but a rate (tag `rate`: `user_ctr`, `item_ctr`), whose default 0 is not neutral: a left-out
rate is `NEUTRAL_RATE`, 0.5, the rate the pipeline writes when it has seen no impressions at all (its prior
before any impression), in client helpers and in `serving_default` alike; the helpers log which rates they
filled. Client helpers pad or truncate sequences the way the pipeline does (the most recent
`sequence_length` behaviours are kept) and fill in the sequence length when it is left out.

The helpers refuse, naming the feature, what the pipeline never writes and the served model refuses too: a
rate outside [0, 1], behaviour ids with an empty id between them, a sequence length other than the number
of behaviour ids given.
"""
from __future__ import annotations

import logging
import math
import reprlib
from typing import Any, Mapping

import numpy as np

from marn_tf import schema as S
from marn_tf.example_codec import ExampleEncoder
from marn_tf.models.network import request_features
from marn_tf.pipelines import item_statistics as IS

log = logging.getLogger(__name__)
# The pipeline's rate of a user or item without impressions, before any impression at all: its prior, 0.5.
NEUTRAL_RATE = IS.global_prior(IS.CumulativeCounts.from_daily([]), 0)
_NUMPY_DTYPES = {"int64": np.int64, "float32": np.float32, "string": object}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class RequestError(ValueError):
    """A request feature that is missing, unknown, or of the wrong type or shape; the message names it."""


def required_features(schema: S.Schema) -> list[str]:
    """Features a request must carry: the candidate item id (anything else has a default)."""
    return [f.name for f in schema.features_with_tags(S.CANDIDATE, S.ITEM_KEY)]


def serving_parse_spec(schema: S.Schema) -> dict:
    """`tf.io.parse_example` spec of a serving request: request features, required ones without a default."""
    import tensorflow as tf

    spec = schema.parse_spec(with_label=False)
    names = {f.name for f in request_features(schema)}
    spec = {name: s for name, s in spec.items() if name in names}
    for name in required_features(schema):
        spec[name] = tf.io.FixedLenFeature(spec[name].shape, spec[name].dtype)
    for f in schema.features_with_tags(S.RATE):
        if f.name in spec:
            spec[f.name] = tf.io.FixedLenFeature(spec[f.name].shape, spec[f.name].dtype, default_value=NEUTRAL_RATE)
    return spec


def left_out_rates(schema: S.Schema, features: Mapping[str, Any]) -> list[str]:
    """The request's rate features that it leaves out (and that `complete` fills with `NEUTRAL_RATE`)."""
    names = {f.name for f in request_features(schema)}
    return [f.name for f in schema.features_with_tags(S.RATE) if f.name in names and features.get(f.name) is None]


def log_left_out_rates(schema: S.Schema, instances: list[Mapping[str, Any]]) -> None:
    """One log line saying which rates the instances left out and what they were given instead."""
    counts: dict[str, int] = {}
    for instance in instances:
        for name in left_out_rates(schema, instance):
            counts[name] = counts.get(name, 0) + 1
    if counts:
        log.warning("request instances left out rates %s (of %d instance(s)); filled with the neutral rate %g, "
                    "the pipeline's rate without impressions: send the real rates where they are known",
                    ", ".join(f"{name} in {n}" for name, n in counts.items()), len(instances), NEUTRAL_RATE)


def _default(f: S.FeatureSpec):
    if S.RATE in f.tags:
        return NEUTRAL_RATE
    if f.default is not None:
        return f.default
    return "" if f.dtype == "string" else 0


def complete(schema: S.Schema, features: Mapping[str, Any]) -> dict[str, Any]:
    """One request's raw features with defaults filled in and sequences padded, as plain Python values.

    Raises `RequestError` naming the feature for an unknown or missing required feature, or a value of the
    wrong type.
    """
    specs = {f.name: f for f in request_features(schema)}
    unknown = sorted(set(features) - set(specs) - {f.name for f in schema.features})
    if unknown:
        raise RequestError(f"unknown request feature(s) {unknown}; the model takes {sorted(specs)}")
    for name in required_features(schema):
        if features.get(name) in (None, ""):
            raise RequestError(f"request feature {name!r} is required")
    out = {}
    for name, f in specs.items():
        value = features.get(name)
        if f.shape:
            length = f.shape[0]
            values = [] if value is None else list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
            if values is None:
                raise RequestError(f"request feature {name!r} is a sequence of {length} {f.dtype} values, "
                                   f"got {type(value).__name__}")
            values = values[-length:]  # the most recent behaviours, as the pipeline keeps them
            out[name] = [_check_type(name, f, v) for v in values] + [_default(f)] * (length - len(values))
        else:
            out[name] = _default(f) if value is None else _check_type(name, f, value)
            if S.RATE in f.tags and not 0.0 <= out[name] <= 1.0:
                raise RequestError(f"request feature {name!r} is a rate in [0, 1], got {reprlib.repr(value)}")
    for f in schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY):
        ids = out[f.name]
        if "" in ids and any(ids[ids.index(""):]):
            raise RequestError(f"request feature {f.name!r} has an empty id between behaviour ids: give the "
                               f"behaviours only, oldest first (the request pads them at the end)")
    for f in schema.features_with_tags(S.SEQUENCE_LENGTH):
        if features.get(f.name) is None:  # left out: the number of behaviours given
            behaviour = schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)
            # counted as the model counts them: the non-empty ids of the (most recent, padded) sequence
            out[f.name] = sum(1 for item in out[behaviour[0].name] if item != "") if behaviour else 0
        else:
            _check_length(schema, f, out)
    return out


def _check_length(schema: S.Schema, f: S.FeatureSpec, values: dict) -> None:
    """A sequence length given with the request counts the behaviours it gives (as the model checks)."""
    behaviour = schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)
    given = sum(1 for item in values[behaviour[0].name] if item != "") if behaviour else schema.sequence_length
    if values[f.name] != given:
        raise RequestError(f"request feature {f.name!r} is {values[f.name]}, but the request gives {given} behaviour "
                           f"item(s) in {behaviour[0].name if behaviour else 'its sequences'!r}: leave it out, or "
                           f"give {given}")


def _check_type(name: str, f: S.FeatureSpec, value):
    if isinstance(value, np.generic):
        value = value.item()
    if f.dtype == "string":
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, str):
            return value
    elif f.dtype == "int64":
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = (0, f.cardinality) if f.cardinality else (-2 ** 63, 2 ** 63)
            if not low <= value < high:
                raise RequestError(f"request feature {name!r} takes values in [{low}, {high}), got {reprlib.repr(value)}")
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not abs(number) <= _FLOAT32_MAX:  # NaN too; the model takes float32
            raise RequestError(f"request feature {name!r} must be finite in float32, got {reprlib.repr(value)}")
        return number
    raise RequestError(f"request feature {name!r} takes {f.dtype} values, got {reprlib.repr(value)} "
                       f"({type(value).__name__})")


def serialize_request(schema: S.Schema, features: Mapping[str, Any], log_rates: bool = True) -> bytes:
    """One request's raw features as serialized tf.train.Example bytes (defaults filled in, sequences padded),
    what the `serving_default` signature and TF Serving's classify/regress take. `log_rates`: log the rates
    it fills (off where the caller logs them once for a batch)."""
    if log_rates:
        log_left_out_rates(schema, [features])
    return ExampleEncoder(request_features(schema)).encode(complete(schema, features))


def to_columns(schema: S.Schema, instances: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Completed instances as one numpy array per request feature (what the raw `predict` signature takes)."""
    log_left_out_rates(schema, instances)
    rows = [complete(schema, i) for i in instances]
    # reshaped so that no instances still gives each feature its rank: [0, *shape]
    return {f.name: np.array([r[f.name] for r in rows], dtype=_NUMPY_DTYPES[f.dtype]).reshape(len(rows), *f.shape)
            for f in request_features(schema)}
