"""Request features from the schema: defaults, padding, the required candidate id, errors that name the feature."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.export.request_features import (RequestError, complete, serialize_request, serving_parse_spec,
                                             to_columns)
from marn_tf.pipelines import example_schema as ES


@pytest.fixture
def schema(make_config):
    """The schema `marn preprocess` writes for a config with sequences of 8 and the default behaviour types, built
    from the config alone (no job runs)."""
    return ES.build_schema(make_config(sequence={"max_length": 8}), {}, 0, {})


def test_defaults_padding_and_sequence_length(schema):
    values = complete(schema, {"item_id": "i1", "hist_item_id": ["a", "b"], "hist_event_type": [1, 2]})
    length = schema.sequence_length
    assert values["hist_item_id"] == ["a", "b"] + [""] * (length - 2)
    assert values["hist_event_type"] == [1, 2] + [0] * (length - 2)
    assert values["hist_length"] == 2  # left out: the number of behaviours given
    # counted as the served model counts them (non-empty ids), so the request it builds is one the model takes
    assert complete(schema, {"item_id": "i1", "hist_item_id": ["a", "b", ""]})["hist_length"] == 2
    assert values["user_id"] == "" and values["position"] == 0
    assert "label" not in values and "request_id" not in values


def test_long_sequences_keep_the_most_recent(schema):
    items = [f"i{k}" for k in range(schema.sequence_length + 3)]
    values = complete(schema, {"item_id": "x", "hist_item_id": items})
    assert values["hist_item_id"] == items[3:] and values["hist_length"] == schema.sequence_length


@pytest.mark.parametrize("features, message", [
    ({}, "'item_id' is required"),
    ({"item_id": "x", "colour": "red"}, r"unknown request feature\(s\) \['colour'\]"),
    ({"item_id": "x", "position": "3"}, "'position' takes int64 values, got '3'"),
    ({"item_id": 7}, "'item_id' takes string values"),
    ({"item_id": "x", "hist_item_id": "abc"}, "'hist_item_id' is a sequence"),
    ({"item_id": "x", "hist_event_type": [1, 2.5]}, "'hist_event_type' takes int64 values"),
    ({"item_id": "x", "hist_item_id": ["a", "b"], "hist_length": 3}, "'hist_length' is 3, but the request gives 2"),
    ({"item_id": "x", "hist_length": -1}, "'hist_length' is -1"),
    ({"item_id": "x", "hist_event_type": [1, 9]}, r"'hist_event_type' takes values in \[0, 4\), got 9"),
    ({"item_id": "x", "position": 10 ** 30}, "'position' takes values in"),
    ({"item_id": "x", "user_ctr": 1e39}, "'user_ctr' must be finite in float32"),
    ({"item_id": "x", "user_ctr": float("nan")}, "'user_ctr' must be finite in float32"),
])
def test_bad_requests_name_the_feature(schema, features, message):
    with pytest.raises(RequestError, match=message):
        complete(schema, features)


def test_example_parses_back_with_the_serving_spec(schema):
    example = serialize_request(schema, {"item_id": "i1", "user_id": "u1", "hist_item_id": ["a"], "position": 3})
    parsed = tf.io.parse_example([example], serving_parse_spec(schema))
    assert parsed["item_id"].numpy().tolist() == [b"i1"] and parsed["position"].numpy().tolist() == [3]
    assert parsed["hist_length"].numpy().tolist() == [1]
    columns = to_columns(schema, [{"item_id": "i1"}, {"item_id": "i2", "position": 4}])
    assert columns["position"].dtype == np.int64 and columns["position"].tolist() == [0, 4]
    assert columns["hist_item_id"].shape == (2, schema.sequence_length)
    assert to_columns(schema, [])["hist_item_id"].shape == (0, schema.sequence_length)
