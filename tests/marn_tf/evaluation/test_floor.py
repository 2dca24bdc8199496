"""The no-model floor on hand-made rates: which features it sums, the clipped logit sum, and its metrics."""
import numpy as np
import pytest

from marn_tf import schema as S
from marn_tf.evaluation.floor import floor_metrics, floor_scores, rate_features


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def make_schema(features: list[S.FeatureSpec]) -> S.Schema:
    return S.Schema(label="label", sequence_length=1,
                    features=[S.FeatureSpec("label", "int64", [], [S.LABEL]), *features], vocabularies={},
                    item_table=S.ItemTableSpec("items/*.parquet", "item_index", [], 0), splits={})


def test_the_floor_sums_the_features_tagged_rate_and_only_those():
    schema = make_schema([S.FeatureSpec("user_ctr", "float32", [], [S.USER, S.RATE]),
                          S.FeatureSpec("item_stat_ctr", "int64", [], [S.CANDIDATE, S.STATISTIC], cardinality=8),
                          S.FeatureSpec("item_ctr", "float32", [], [S.CANDIDATE, S.STATISTIC, S.RATE])])
    assert rate_features(schema) == ["user_ctr", "item_ctr"]
    assert rate_features(make_schema([S.FeatureSpec("position", "int64", [], [S.CONTEXT])])) == []


def test_the_score_is_a_logit_sum_of_rates_clipped_to_one_in_a_thousand():
    item = np.array([0.1, 0.5, 0.0, 1.0], dtype=np.float32)
    user = np.array([0.2, 0.5, 0.5, 0.9999], dtype=np.float32)
    scores = floor_scores({"item_ctr": item, "user_ctr": user})
    assert scores == pytest.approx([logit(0.1) + logit(0.2), 0.0, logit(1e-3), 2 * logit(1 - 1e-3)], abs=1e-5)
    assert scores[2] == pytest.approx(-6.9068, abs=1e-4) and scores[3] == pytest.approx(2 * 6.9068, abs=1e-3)
    with pytest.raises(ValueError, match="at least one rate"):
        floor_scores({})


def test_floor_metrics_rank_by_the_score_and_group_by_user():
    labels = np.array([1, 0, 0, 1, 0, 1])
    scores = np.array([2.0, -1.0, 0.5, -0.5, 0.0, 1.0])
    users = np.array([b"a", b"a", b"a", b"b", b"b", b"c"])  # c has clicks only: not counted in GAUC
    result = floor_metrics(labels, scores, users)
    # pairs (positive beats negative): 2.0 beats all 3; -0.5 beats -1.0 only; 1.0 beats all 3 -> 7 of 9
    assert result["auc"] == pytest.approx(7 / 9)
    assert result["gauc"] == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)
    p = 1 / (1 + np.exp(-scores))
    assert result["logloss"] == pytest.approx(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    assert result["examples"] == 6
