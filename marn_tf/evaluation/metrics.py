"""CTR metrics on numpy arrays: AUC (ties averaged), GAUC, log loss."""
from __future__ import annotations

import numpy as np


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula; tied scores share their mean rank.
    NaN when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(order), dtype=np.float64)
    # mean rank of each run of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(order)]])
    run_ranks = (starts + ends + 1) / 2.0  # ranks are 1-based
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def gauc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> tuple[float, int]:
    """Impression-weighted mean of per-user AUC over users with both clicks and non-clicks (DIN's user-weighted
    AUC); also returns how many users counted."""
    labels, scores, groups = np.asarray(labels), np.asarray(scores), np.asarray(groups)
    order = np.argsort(groups, kind="mergesort")
    groups, labels, scores = groups[order], labels[order], scores[order]
    starts = np.concatenate([[0], np.flatnonzero(groups[1:] != groups[:-1]) + 1, [len(groups)]])
    total, weight, users = 0.0, 0, 0
    for begin, end in zip(starts[:-1], starts[1:]):
        value = auc(labels[begin:end], scores[begin:end])
        if np.isnan(value):
            continue
        total += value * (end - begin)
        weight += end - begin
        users += 1
    return (float(total / weight) if weight else float("nan")), users


def logloss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
