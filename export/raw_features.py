"""Raw request values -> the pipeline's bucket and rate features, inside the SavedModel (`predict_raw`).

A front end knows counters and times, not the pipeline's buckets. `predict_raw` takes them and computes
what the pipeline would have written, with the same formulas (`pipelines/item_statistics.py`,
`pipelines/user_history.py`):

* the candidate's `item_stat_{impressions,clicks,ctr}` from `item_impressions`, `item_clicks` (int64 [n]:
  the candidate's totals over the days strictly before the request's day);
* `hist_stat_{impressions,clicks,ctr}` from `hist_impressions`, `hist_clicks` (int64 [n, L]: each
  behaviour item's totals over the days strictly before the day of that behaviour);
* `hist_time_gap` from `hist_timestamp` (int64 [n, L], unix seconds of each behaviour, oldest first) and
  `request_time` (int64 [n], unix seconds);
* `item_ctr` and `user_ctr` (smoothed click rates) from the candidate's counters, `user_impressions`,
  `user_clicks` (int64 [n]: the user's impressions and clicks strictly before the request) and
  `all_impressions`, `all_clicks` (int64 [n]: all items' totals over the days strictly before the request's
  day, whose click rate is the rates' prior).

A counter of -1 (`UNKNOWN_COUNT`) means "unknown" and reads as no impressions (bucket 0, the prior rate), as
for an item the pipeline never saw; a counter below -1 is refused. Clicks never exceed their impressions
(with impressions 0 or unknown, clicks are 0 or unknown) and are >= 0 where impressions > 0. Behaviour
times are oldest first and not after `request_time`. Positions of a behaviour sequence at or beyond
`hist_length` are padding: whatever they hold, their buckets are 0.
The numbers of buckets are the features' `cardinality` in the schema.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf

from marn_tf import schema as S
from marn_tf.models.network import request_features
from marn_tf.pipelines import example_schema as ES
from marn_tf.pipelines import item_statistics as IS
from marn_tf.pipelines import user_history

ITEM_IMPRESSIONS, ITEM_CLICKS = "item_impressions", "item_clicks"
HIST_IMPRESSIONS, HIST_CLICKS = "hist_impressions", "hist_clicks"
HIST_TIMESTAMP, REQUEST_TIME = "hist_timestamp", "request_time"
USER_IMPRESSIONS, USER_CLICKS = "user_impressions", "user_clicks"
ALL_IMPRESSIONS, ALL_CLICKS = "all_impressions", "all_clicks"
UNKNOWN_COUNT = -1  # a counter whose value the front end does not know
HIST_LENGTH = ES.HIST_LENGTH  # a request feature of both signatures; here it also marks the raw sequences' padding
PER_REQUEST = (ITEM_IMPRESSIONS, ITEM_CLICKS, REQUEST_TIME, USER_IMPRESSIONS, USER_CLICKS, ALL_IMPRESSIONS,
               ALL_CLICKS)  # int64 [n]
PER_BEHAVIOUR = (HIST_IMPRESSIONS, HIST_CLICKS, HIST_TIMESTAMP)  # int64 [n, L]
ITEM_STAT_FEATURES = tuple(ES.item_stat_feature(s) for s in IS.STATISTIC_NAMES)
HIST_STAT_FEATURES = tuple(ES.hist_stat_feature(s) for s in IS.STATISTIC_NAMES)
DERIVED_FEATURES = ITEM_STAT_FEATURES + HIST_STAT_FEATURES + (ES.HIST_TIME_GAP, ES.ITEM_CTR, ES.USER_CTR)


# -- the pipeline's formulas as TF ops (exact: integer comparisons, float64 where Python computes floats) --

def log2_bucket(count: tf.Tensor, num_buckets: int) -> tf.Tensor:
    """TF twin of `item_statistics.log2_bucket`: 0 for count < 0, else min(bit_length(1 + count), num_buckets - 1).

    Args:
        count: int64, any shape.
        num_buckets: the feature's cardinality, in [2, 65].
    Returns:
        int64, the shape of `count`.
    """
    if not 2 <= num_buckets <= 65:
        raise ValueError(f"log2_bucket needs 2 <= num_buckets <= 65 (int64 counts), got {num_buckets}")
    count = tf.convert_to_tensor(count, tf.int64)
    # bit_length(1 + c) = #{k >= 0: 1 + c >= 2^k}; compared as c >= 2^k - 1 so that no count overflows int64.
    thresholds = tf.constant([2 ** k - 1 for k in range(1, num_buckets - 1)], tf.int64)
    reached = tf.reduce_sum(tf.cast(count[..., tf.newaxis] >= thresholds, tf.int64), axis=-1)
    return tf.where(count < 0, tf.zeros_like(count), 1 + reached)


def ctr_bucket(impressions: tf.Tensor, clicks: tf.Tensor, num_buckets: int) -> tf.Tensor:
    """TF twin of `item_statistics.ctr_bucket`: 0 without impressions, else 1 + floor(sqrt((clicks + 0.5) /
    (impressions + CTR_PRIOR_IMPRESSIONS)) * (num_buckets - 1)) capped at num_buckets - 1.

    Args:
        impressions, clicks: int64 of one shape; clicks >= 0 where impressions > 0.
        num_buckets: the feature's cardinality (>= 2).
    Returns:
        int64 of that shape.
    """
    impressions = tf.convert_to_tensor(impressions, tf.int64)
    seen = impressions > 0
    clicks = tf.where(seen, tf.convert_to_tensor(clicks, tf.int64), tf.zeros_like(impressions))  # no NaN from sqrt
    # float64 in the order Python evaluates it, so that rounding and the bucket agree to the last bit
    smoothed = (tf.cast(clicks, tf.float64) + 0.5) / (tf.cast(impressions, tf.float64) + IS.CTR_PRIOR_IMPRESSIONS)
    index = tf.minimum(tf.floor(tf.sqrt(smoothed) * float(num_buckets - 1)), float(num_buckets - 2))
    return tf.where(seen, 1 + tf.cast(index, tf.int64), tf.zeros_like(impressions))


def statistic_buckets(impressions: tf.Tensor, clicks: tf.Tensor, num_buckets: int) -> tuple[tf.Tensor, ...]:
    """TF twin of `item_statistics.statistic_buckets`: the (impressions, clicks, ctr) buckets of an item's
    counters; all 0 when it has no impressions (a negative count: unknown).

    Args:
        impressions, clicks: int64 of one shape.
        num_buckets: the features' cardinality.
    Returns:
        Three int64 tensors of that shape, in `STATISTIC_NAMES` order.
    """
    impressions = tf.convert_to_tensor(impressions, tf.int64)
    seen = impressions > 0
    zero = tf.zeros_like(impressions)
    return (tf.where(seen, log2_bucket(impressions, num_buckets), zero),
            tf.where(seen, log2_bucket(clicks, num_buckets), zero),
            ctr_bucket(impressions, clicks, num_buckets))


def time_gap_bucket(behaviour_time: tf.Tensor, request_time: tf.Tensor, num_buckets: int) -> tf.Tensor:
    """TF twin of `hist_time_gap` in `user_history._sequence_features`: min(bit_length(1 + t - h), num_buckets - 1).

    Args:
        behaviour_time: int64 [n, L], h, unix seconds; h <= t.
        request_time: int64 [n], t, unix seconds.
        num_buckets: the cardinality of `hist_time_gap`.
    Returns:
        int64 [n, L] (padding is masked by the caller).
    """
    return log2_bucket(request_time[:, tf.newaxis] - behaviour_time, num_buckets)


def global_prior(impressions: tf.Tensor, clicks: tf.Tensor) -> tf.Tensor:
    """TF twin of `item_statistics.global_prior`: (clicks + 1) / (impressions + 2) as float64; counters
    of unknown totals (impressions < 0) read as 0."""
    seen = impressions > 0
    impressions = tf.where(seen, impressions, tf.zeros_like(impressions))
    clicks = tf.where(seen, clicks, tf.zeros_like(clicks))
    return tf.cast(clicks + 1, tf.float64) / tf.cast(impressions + 2, tf.float64)


def smoothed_rate(impressions: tf.Tensor, clicks: tf.Tensor, prior: tf.Tensor) -> tf.Tensor:
    """TF twin of `item_statistics.smoothed_rate`, computed in float64 and returned as float32 (what the
    pipeline writes); without impressions (or with a negative count) it is the prior.

    Args:
        impressions, clicks: int64 [n].
        prior: float64 [n].
    Returns:
        float32 [n].
    """
    seen = impressions > 0
    impressions = tf.where(seen, impressions, tf.zeros_like(impressions))
    clicks = tf.where(seen, clicks, tf.zeros_like(clicks))
    rate = ((tf.cast(clicks, tf.float64) + IS.RATE_PRIOR_STRENGTH * prior)
            / (tf.cast(impressions, tf.float64) + IS.RATE_PRIOR_STRENGTH))
    return tf.cast(rate, tf.float32)


# -- the signature's inputs and the features it derives --------------------------------------------------

def raw_input_specs(schema: S.Schema) -> dict[str, tf.TensorSpec]:
    """The raw inputs `predict_raw` takes instead of `DERIVED_FEATURES`."""
    missing = [name for name in DERIVED_FEATURES + (HIST_LENGTH,) if name not in {f.name for f in schema.features}]
    if missing:
        raise S.SchemaError(f"predict_raw needs the pipeline's features {missing}, which the schema lacks")
    length = schema.feature(ES.HIST_TIME_GAP).shape[0]
    specs = {name: tf.TensorSpec([None], tf.int64, name=name) for name in PER_REQUEST}
    specs.update({name: tf.TensorSpec([None, length], tf.int64, name=name) for name in PER_BEHAVIOUR})
    return specs


def raw_request_specs(schema: S.Schema) -> dict[str, tf.TensorSpec]:
    """`predict_raw`'s input signature: the request features but `DERIVED_FEATURES`, plus the raw inputs."""
    specs = {f.name: tf.TensorSpec([None, *f.shape], S.tf_dtype(f.dtype), name=f.name)
             for f in request_features(schema) if f.name not in DERIVED_FEATURES}
    specs.update(raw_input_specs(schema))
    return specs


def _check_raw(raw: dict, batch: tf.Tensor, valid: tf.Tensor) -> list:
    """Assertions naming the input: every raw input has the request's batch size, times are unix seconds with
    behaviours oldest first and none after the request, counters are >= -1 (unknown), clicks never exceed their
    impressions (0 or less where impressions are 0 or unknown) and are >= 0 wherever impressions are > 0."""
    checks = [tf.debugging.assert_equal(tf.shape(raw[name])[0], batch,
                                        message=f"request input {name} has another batch size than the candidate")
              for name in PER_REQUEST + PER_BEHAVIOUR]
    checks.append(tf.debugging.assert_non_negative(raw[REQUEST_TIME], message=f"request input {REQUEST_TIME} "
                                                   "must be >= 0 (unix seconds)"))
    with tf.control_dependencies([c for c in checks if c is not None]):  # the comparisons below broadcast
        hist_time = tf.where(valid, raw[HIST_TIMESTAMP], tf.zeros_like(raw[HIST_TIMESTAMP]))
        checks.append(tf.debugging.assert_non_negative(
            hist_time, message=f"request input {HIST_TIMESTAMP} must be >= 0 (unix seconds) within hist_length"))
        checks.append(tf.debugging.assert_less_equal(
            hist_time, raw[REQUEST_TIME][:, tf.newaxis],
            message=f"request input {HIST_TIMESTAMP} must not be after {REQUEST_TIME} within hist_length"))
        checks.append(tf.debugging.assert_equal(
            tf.reduce_any(tf.logical_and(valid[:, 1:], hist_time[:, 1:] < hist_time[:, :-1])), False,
            message=f"request input {HIST_TIMESTAMP} must be oldest first within hist_length"))
        counters = ((ITEM_IMPRESSIONS, ITEM_CLICKS, True), (HIST_IMPRESSIONS, HIST_CLICKS, valid),
                    (USER_IMPRESSIONS, USER_CLICKS, True), (ALL_IMPRESSIONS, ALL_CLICKS, True))
        for impressions, clicks, in_request in counters:
            in_request = tf.broadcast_to(in_request, tf.shape(raw[impressions]))
            for name in (impressions, clicks):
                checks.append(tf.debugging.assert_greater_equal(
                    tf.where(in_request, raw[name], tf.zeros_like(raw[name])), tf.constant(UNKNOWN_COUNT, tf.int64),
                    message=f"request input {name} must be >= 0, or {UNKNOWN_COUNT} for unknown"))
            read = tf.logical_and(in_request, raw[impressions] > 0)
            checks.append(tf.debugging.assert_non_negative(
                tf.where(read, raw[clicks], tf.zeros_like(raw[clicks])),
                message=f"request input {clicks} must be >= 0 where {impressions} > 0"))
            checks.append(tf.debugging.assert_equal(
                tf.reduce_any(tf.logical_and(in_request, raw[clicks] > tf.maximum(raw[impressions], 0))), False,
                message=f"request input {clicks} must not exceed {impressions}"))
    return checks


def derived_features(schema: S.Schema, raw: Mapping[str, tf.Tensor], hist_length: tf.Tensor) -> dict[str, tf.Tensor]:
    """`DERIVED_FEATURES` computed from the raw inputs as the pipeline computes them, after checking the inputs.

    Args:
        schema: gives the buckets' cardinalities.
        raw: `raw_input_specs(schema)`'s tensors.
        hist_length: int64 [n], the request's `hist_length`; positions at or beyond it are padding (0s).
    Returns:
        {feature: tensor} with the schema's dtype and shape per feature, batch n.
    """
    raw = {name: tf.ensure_shape(raw[name], spec.shape) for name, spec in raw_input_specs(schema).items()}
    length = raw[HIST_TIMESTAMP].shape[-1]
    valid = tf.range(length, dtype=tf.int64)[tf.newaxis, :] < hist_length[:, tf.newaxis]
    checks = _check_raw(raw, tf.shape(hist_length)[0], valid)
    with tf.control_dependencies([c for c in checks if c is not None]):  # eager asserts return None
        raw = {name: tf.identity(value) for name, value in raw.items()}

    def padded(buckets: tf.Tensor) -> tf.Tensor:
        return tf.where(valid, buckets, tf.zeros_like(buckets))

    features = {}
    item = statistic_buckets(raw[ITEM_IMPRESSIONS], raw[ITEM_CLICKS], schema.feature(ITEM_STAT_FEATURES[0]).cardinality)
    features.update(zip(ITEM_STAT_FEATURES, item))
    hist = statistic_buckets(raw[HIST_IMPRESSIONS], raw[HIST_CLICKS], schema.feature(HIST_STAT_FEATURES[0]).cardinality)
    features.update((name, padded(buckets)) for name, buckets in zip(HIST_STAT_FEATURES, hist))
    features[ES.HIST_TIME_GAP] = padded(time_gap_bucket(raw[HIST_TIMESTAMP], raw[REQUEST_TIME],
                                                        schema.feature(ES.HIST_TIME_GAP).cardinality))
    prior = global_prior(raw[ALL_IMPRESSIONS], raw[ALL_CLICKS])
    features[ES.ITEM_CTR] = smoothed_rate(raw[ITEM_IMPRESSIONS], raw[ITEM_CLICKS], prior)
    features[ES.USER_CTR] = smoothed_rate(raw[USER_IMPRESSIONS], raw[USER_CLICKS], prior)
    return features


# -- the pipeline's own Python code on the same raw values (the reference of the checks and tests) -----------

def pipeline_features(schema: S.Schema, raw: Mapping[str, np.ndarray],
                      hist_length: np.ndarray) -> dict[str, np.ndarray]:
    """`DERIVED_FEATURES` of raw values as the pipeline's Python functions compute them (numpy, one request at a
    time): what `derived_features` must reproduce, and what the model was trained on.

    Args:
        schema: gives the buckets' cardinalities.
        raw: numpy arrays of `raw_input_specs(schema)`'s shapes.
        hist_length: int64 [n].
    """
    item_buckets = schema.feature(ITEM_STAT_FEATURES[0]).cardinality
    hist_buckets = schema.feature(HIST_STAT_FEATURES[0]).cardinality
    max_length = schema.feature(ES.HIST_TIME_GAP).shape[0]
    rows: dict[str, list] = {name: [] for name in DERIVED_FEATURES}

    def counts(impressions: int, clicks: int) -> IS.CumulativeCounts | None:
        """An item whose totals before day 1 are these (None: never seen)."""
        return IS.CumulativeCounts.from_daily([(0, impressions, clicks)]) if impressions > 0 else None

    def at_least_zero(impressions: int, clicks: int) -> tuple[int, int]:
        return (impressions, clicks) if impressions > 0 else (0, 0)

    for i in range(len(hist_length)):
        totals = at_least_zero(int(raw[ALL_IMPRESSIONS][i]), int(raw[ALL_CLICKS][i]))
        prior = IS.global_prior(IS.CumulativeCounts.from_daily([(0, *totals)]), 1)
        item = counts(int(raw[ITEM_IMPRESSIONS][i]), int(raw[ITEM_CLICKS][i]))
        for name, bucket in zip(ITEM_STAT_FEATURES, IS.statistic_buckets(item, 1, item_buckets)):
            rows[name].append(bucket)
        rows[ES.ITEM_CTR].append(IS.item_rate(item, 1, prior))
        n = int(hist_length[i])
        # (time, item, type, buckets) as user_history keeps behaviours; item and type do not enter these features
        history = [(int(raw[HIST_TIMESTAMP][i, j]), "", 1,
                    IS.statistic_buckets(counts(int(raw[HIST_IMPRESSIONS][i, j]), int(raw[HIST_CLICKS][i, j])), 1,
                                         hist_buckets))
                   for j in range(n)]
        user_rate = IS.smoothed_rate(*at_least_zero(int(raw[USER_IMPRESSIONS][i]), int(raw[USER_CLICKS][i])), prior)
        # the pipeline's own sequence code (private there): time gaps and padding exactly as training saw them
        sequence = user_history._sequence_features({}, history, int(raw[REQUEST_TIME][i]), max_length, user_rate)
        for name in HIST_STAT_FEATURES + (ES.HIST_TIME_GAP, ES.USER_CTR):
            rows[name].append(sequence[name])
    return {name: np.array(values, dtype=np.float32 if name in (ES.ITEM_CTR, ES.USER_CTR) else np.int64)
            for name, values in rows.items()}


def random_raw_values(hist_length: np.ndarray, max_length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible raw inputs for requests with these sequence lengths, drawn at random (not real data): for
    warmup requests and the parity checks of `predict_raw`. Counters span 0 to ~10^7 with some unknown (-1),
    gaps 0 s to ~30 years, and padded positions hold garbage that must be ignored.

    Args:
        hist_length: int64 [n].
        max_length: L, the schema's sequence length.
        seed: of the numpy generator.
    """
    rng = np.random.default_rng(seed)
    n = len(hist_length)

    def counters(shape: tuple) -> tuple[np.ndarray, np.ndarray]:
        impressions = np.floor(10.0 ** rng.uniform(0, 7, shape)).astype(np.int64) - rng.integers(0, 2, shape)
        impressions[rng.random(shape) < 0.1] = -1  # unknown
        clicks = np.floor(np.maximum(impressions, 0) * rng.uniform(0, 0.3, shape) ** 2).astype(np.int64)
        return impressions, clicks

    request_time = rng.integers(1_500_000_000, 1_800_000_000, n)
    gaps = np.sort(np.floor(10.0 ** rng.uniform(0, 9, (n, max_length))).astype(np.int64) - 1, axis=1)[:, ::-1]
    hist_timestamp = request_time[:, None] - gaps  # oldest first, as the pipeline writes sequences
    padding = np.arange(max_length)[None, :] >= hist_length[:, None]
    hist_timestamp[padding] = rng.integers(-2 ** 40, 2 ** 40, int(padding.sum()))
    (item_impressions, item_clicks), (hist_impressions, hist_clicks) = counters((n,)), counters((n, max_length))
    hist_clicks[padding] = -rng.integers(0, 5, int(padding.sum()))
    user_impressions, user_clicks = counters((n,))
    all_impressions = rng.integers(10 ** 6, 10 ** 12, n)
    all_clicks = (all_impressions * rng.uniform(0.01, 0.2, n)).astype(np.int64)
    return {ITEM_IMPRESSIONS: item_impressions, ITEM_CLICKS: item_clicks, HIST_IMPRESSIONS: hist_impressions,
            HIST_CLICKS: hist_clicks, HIST_TIMESTAMP: hist_timestamp, REQUEST_TIME: request_time,
            USER_IMPRESSIONS: user_impressions, USER_CLICKS: user_clicks, ALL_IMPRESSIONS: all_impressions,
            ALL_CLICKS: all_clicks}


def raw_requests(schema: S.Schema, features: Mapping[str, np.ndarray], seed: int = 0) -> tuple[dict, dict]:
    """Requests in both forms, for warmup requests and the parity checks of `predict_raw`.

    Args:
        schema: the export's schema.
        features: `predict`'s inputs as numpy arrays (parsed requests, e.g. validation examples).
        seed: of `random_raw_values`.
    Returns:
        (`predict_raw`'s inputs: `features` with random raw values in place of `DERIVED_FEATURES`,
         `predict`'s inputs: `features` with the pipeline's `DERIVED_FEATURES` of those raw values).
    """
    hist_length = np.asarray(features[HIST_LENGTH])
    raw = random_raw_values(hist_length, schema.feature(ES.HIST_TIME_GAP).shape[0], seed)
    kept = {name: np.asarray(value) for name, value in features.items() if name not in DERIVED_FEATURES}
    return {**kept, **raw}, {**kept, **pipeline_features(schema, raw, hist_length)}
