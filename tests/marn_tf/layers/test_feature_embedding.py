"""Per-example feature embeddings: categorical, numeric and rate features, concatenated."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.feature_embedding import FeatureEmbeddings
from tests.testing import assert_config_round_trip, assert_gradients_reach

FEATURES = {"hist_event_type": {"kind": "categorical", "rows": 4}, "hist_count": {"kind": "numeric"},
            "hist_rate": {"kind": "rate"}}
INPUTS = {"hist_event_type": tf.constant([[1, 2, 0], [3, 0, 0]]), "hist_count": tf.constant([[0, 3, -1], [7, 0, 0]]),
          "hist_rate": tf.constant([[0.5, 0.2, 0.0], [1.0, 0.9, 0.001]]), "unused": tf.constant([1, 2])}


def test_concatenated_widths_and_numeric_transform():
    out = FeatureEmbeddings(FEATURES, dim=5)(INPUTS)
    assert out.shape == (2, 3, 7)
    np.testing.assert_allclose(out[..., 5].numpy(), np.log1p(np.maximum(INPUTS["hist_count"].numpy(), 0)), rtol=1e-6)


def test_rate_is_the_clipped_logit():
    out = FeatureEmbeddings({"rate": {"kind": "rate"}})({"rate": tf.constant([0.5, 0.2, 0.0, 1.0, 0.9, 0.001])})
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    expected = [0.0, logit(0.2), logit(1e-3), logit(1 - 1e-3), logit(0.9), logit(1e-3)]  # 0 and 1 clipped: finite
    np.testing.assert_allclose(out[:, 0].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert out.shape == (6, 1)


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        FeatureEmbeddings({"x": {"kind": "string"}})


def test_config_round_trip():
    assert_config_round_trip(FeatureEmbeddings(FEATURES, dim=5), INPUTS)


def test_embedding_l2_penalises_the_looked_up_rows_by_use():
    layer = FeatureEmbeddings(FEATURES, dim=5, embedding_l2=0.5)
    layer(INPUTS)
    table = layer.embeddings["hist_event_type"].embeddings.numpy()
    rows = table[INPUTS["hist_event_type"].numpy()]  # [2, 3, 5]: row 0 used three times, so counted three times
    np.testing.assert_allclose(layer.losses[0].numpy(), 0.5 * np.mean(np.sum(rows ** 2, -1)), rtol=1e-5)
    unregularised = FeatureEmbeddings(FEATURES, dim=5)
    unregularised(INPUTS)
    assert not unregularised.losses


def test_the_embedding_table_trains():
    assert_gradients_reach(FeatureEmbeddings(FEATURES, dim=5), INPUTS)
