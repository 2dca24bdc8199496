"""AUC, GAUC and log loss against brute-force definitions."""
import itertools

import numpy as np
import pytest

from marn_tf.evaluation.metrics import auc, gauc, logloss


def pairwise_auc(labels, scores):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # many ties
    assert auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)
    assert auc([0, 1], [0.1, 0.9]) == 1.0 and auc([1, 0], [0.1, 0.9]) == 0.0
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_gauc_weights_users_by_impressions_and_skips_one_class_users():
    labels = np.array([1, 0, 0, 1, 0, 1, 1])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.4, 0.3, 0.8])
    users = np.array([7, 7, 7, 5, 5, 9, 9])  # user 9 has clicks only
    value, counted = gauc(labels, scores, users)
    assert counted == 2
    assert value == pytest.approx((3 * 1.0 + 2 * 0.0) / 5)


def test_logloss():
    assert logloss([1, 0], [0.8, 0.3]) == pytest.approx(-(np.log(0.8) + np.log(0.7)) / 2)


def test_gauc_groups_by_raw_user_ids_so_two_unknown_users_stay_two():
    labels = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.7])
    users = np.array([b"new-1", b"new-1", b"new-2", b"new-2", b"known", b"known"], dtype=object)
    value, counted = gauc(labels, scores, users)
    assert counted == 3 and value == pytest.approx((2 * 1.0 + 2 * 0.0 + 2 * 1.0) / 6)
    # Both new users under one vocabulary index (OOV) would be one user with a different AUC.
    pooled, pooled_users = gauc(labels, scores, np.array([0, 0, 0, 0, 7, 7]))
    assert pooled_users == 2 and pooled == pytest.approx((4 * auc(labels[:4], scores[:4]) + 2 * 1.0) / 6)
    assert pooled != pytest.approx(value)
