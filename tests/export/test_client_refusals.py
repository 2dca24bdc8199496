"""Client helpers refuse, naming the feature, what the pipeline never writes (and the served model refuses), and
say which left-out rates they filled with the neutral rate."""
import logging

import pytest

from marn_tf.export.clients import grpc_request, raw_rest_body, rest_body
from marn_tf.export.request_features import NEUTRAL_RATE, RequestError, complete, to_columns
from marn_tf.pipelines import example_schema as ES


@pytest.fixture
def schema(make_config):
    """The schema `marn preprocess` writes for a config with sequences of 8, built from the config alone."""
    return ES.build_schema(make_config(sequence={"max_length": 8}), {}, 0, {})


@pytest.mark.parametrize("features, message", [
    ({"item_id": "x", "user_ctr": 1.5}, r"'user_ctr' is a rate in \[0, 1\], got 1.5"),
    ({"item_id": "x", "item_ctr": -0.01}, r"'item_ctr' is a rate in \[0, 1\]"),
    ({"item_id": "x", "hist_item_id": ["a", "", "b"]}, "'hist_item_id' has an empty id between behaviour ids"),
    ({"item_id": "x", "hist_item_id": ["", "a"]}, "'hist_item_id' has an empty id between behaviour ids"),
    ({"item_id": "x", "hist_item_id": ["a", "b"], "hist_length": 1}, "'hist_length' is 1, but the request gives 2"),
])
def test_values_the_pipeline_never_writes_are_refused_naming_the_feature(schema, features, message):
    """complete (under every request helper) refuses them before anything is sent."""
    with pytest.raises(RequestError, match=message):
        complete(schema, features)
    with pytest.raises(RequestError, match=message):
        rest_body(schema, [features])


def test_left_out_rates_get_the_neutral_rate_and_a_log_line(schema, caplog):
    """A left-out rate is the pipeline's rate without impressions (0.5), not the schema default 0, and the
    helpers log once per batch which rates they filled; a rate given is kept and not logged."""
    assert NEUTRAL_RATE == 0.5
    values = complete(schema, {"item_id": "x", "item_ctr": 0.02})
    assert values["user_ctr"] == NEUTRAL_RATE and values["item_ctr"] == pytest.approx(0.02)
    with caplog.at_level(logging.WARNING, logger="marn_tf.export.request_features"):
        to_columns(schema, [{"item_id": "x", "item_ctr": 0.02}, {"item_id": "y", "item_ctr": 0.1}])
    assert len(caplog.records) == 1
    assert "user_ctr in 2" in caplog.text and "item_ctr" not in caplog.text and "0.5" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="marn_tf.export.request_features"):
        rest_body(schema, [{"item_id": "x", "user_ctr": 0.1, "item_ctr": 0.2}])
    assert not caplog.records


def test_grpc_request_logs_left_out_rates_once_per_batch(schema, caplog):
    """The gRPC helper fills and logs rates as the REST helper does: one line for the batch."""
    pytest.importorskip("tensorflow_serving")
    with caplog.at_level(logging.WARNING, logger="marn_tf.export.request_features"):
        grpc_request(schema, [{"item_id": "x"}, {"item_id": "y"}, {"item_id": "z"}], "marn")
    assert len(caplog.records) == 1 and "user_ctr in 3, item_ctr in 3" in caplog.text


RAW = {"item_id": "x", "request_time": 1_700_000_000, "hist_item_id": ["a", "b"],
       "hist_timestamp": [1_699_000_000, 1_699_500_000], "hist_impressions": [100, -1], "hist_clicks": [3, -1],
       "item_impressions": 50, "item_clicks": 2}


@pytest.mark.parametrize("changes, message", [
    ({"item_impressions": -2}, "'item_impressions' must be >= 0, or -1 for unknown, got -2"),
    ({"user_clicks": -5}, "'user_clicks' must be >= 0, or -1 for unknown"),
    ({"item_clicks": 51}, "'item_clicks' is 51, but 'item_impressions' is 50"),
    ({"item_clicks": -1}, "'item_clicks' is -1, but 'item_impressions' is 50"),
    ({"hist_clicks": [101, -1]}, "'hist_clicks' is 101, but 'hist_impressions' is 100"),
    ({"hist_clicks": [3, 4]}, "'hist_clicks' is 4, but 'hist_impressions' is -1"),
    ({"all_impressions": 0, "all_clicks": 1}, "'all_clicks' is 1, but 'all_impressions' is 0"),
    ({"hist_timestamp": [1_699_500_000, 1_699_000_000]}, "'hist_timestamp' must be oldest first"),
    ({"hist_timestamp": [1_699_000_000, 1_800_000_000]}, "no behaviour after the request"),
])
def test_raw_values_the_pipeline_never_has_are_refused_naming_the_input(schema, changes, message):
    """raw_rest_body refuses counters below -1, clicks above impressions, behaviours out of time order."""
    raw_rest_body(schema, [RAW])  # the unchanged request is taken
    with pytest.raises(RequestError, match=message):
        raw_rest_body(schema, [{**RAW, **changes}])
