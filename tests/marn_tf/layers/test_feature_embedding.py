"""Per-example feature embeddings: categorical and numeric features, concatenated."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.feature_embedding import FeatureEmbeddings
from tests.marn_tf.layers.layer_checks import assert_config_round_trip

FEATURES = {"hist_event_type": {"kind": "categorical", "rows": 4}, "hist_count": {"kind": "numeric"}}
INPUTS = {"hist_event_type": tf.constant([[1, 2, 0], [3, 0, 0]]), "hist_count": tf.constant([[0, 3, -1], [7, 0, 0]]),
          "unused": tf.constant([1, 2])}


def test_concatenated_widths_and_numeric_transform():
    out = FeatureEmbeddings(FEATURES, dim=5)(INPUTS)
    assert out.shape == (2, 3, 6)
    np.testing.assert_allclose(out[..., -1].numpy(), np.log1p(np.maximum(INPUTS["hist_count"].numpy(), 0)), rtol=1e-6)


def test_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        FeatureEmbeddings({"x": {"kind": "string"}})


def test_config_round_trip():
    assert_config_round_trip(FeatureEmbeddings(FEATURES, dim=5), INPUTS)
