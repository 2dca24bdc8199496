"""The no-model floor: what the example's own point-in-time click rates score, with nothing trained.

score = sum over the schema's features tagged `rate` of logit(clip(rate, 1e-3, 1 - 1e-3)), i.e. the candidate's
smoothed click rate plus the user's running click rate as a logit sum. A model earns its keep by the AUC it adds
over this, on the same examples.
"""
from __future__ import annotations

import numpy as np

from marn_tf import schema as S
from marn_tf.evaluation import metrics as M

CLIP = 1e-3  # a rate of 0 or 1 (no clicks yet, one click in one view) would be an infinite logit


def rate_features(schema: S.Schema) -> list[str]:
    """The features the floor sums, in schema order."""
    return [f.name for f in schema.features_with_tags(S.RATE)]


def floor_scores(rates: dict[str, np.ndarray]) -> np.ndarray:
    """[n] logit sums over the rate features (each [n] or [n, ...])."""
    if not rates:
        raise ValueError("the no-model floor needs at least one rate feature")
    total = None
    for values in rates.values():
        p = np.clip(np.asarray(values, dtype=np.float64), CLIP, 1 - CLIP)
        logits = (np.log(p) - np.log1p(-p)).reshape(len(p), -1).sum(axis=1)
        total = logits if total is None else total + logits
    return total


def floor_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> dict:
    """AUC, GAUC (grouped like the model's), log loss of sigmoid(score) and the example count."""
    gauc, _ = M.gauc(labels, scores, users)
    return {"auc": M.auc(labels, scores), "gauc": gauc, "logloss": M.logloss(labels, 1.0 / (1.0 + np.exp(-scores))),
            "examples": int(len(labels))}
