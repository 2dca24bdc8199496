"""`predict_raw`: the in-graph bucketisation equals the pipeline's Python functions, the exported signature scores
raw requests as `predict` scores the pipeline's buckets of them, and a raw request counted from the log by the data
contract (docs/pipeline.md) scores as the example the pipeline wrote for it."""
import collections
import glob
import gzip
import json

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.export import raw_features as RF
from marn_tf.export.request_features import serving_parse_spec
from marn_tf.data.input import split_files
from marn_tf.export.warmup import read_examples
from marn_tf.pipelines import example_schema as ES
from marn_tf.pipelines import item_statistics as IS

INT64_MAX = 2 ** 63 - 1
TF_DTYPES = {"int64": tf.int64, "float32": tf.float32}
EDGE_COUNTS = [-INT64_MAX - 1, -5, -1, 0, 1, 2, 3, 6, 7, 8, 1023, 1024, 2 ** 31, 2 ** 53 + 1, 2 ** 62,
               INT64_MAX - 1, INT64_MAX]


def _random_counts(rng: np.random.Generator, size: int) -> np.ndarray:
    """Counts on a log scale from 0 to 2^62, and around every power of two."""
    log_scale = np.floor(2.0 ** rng.uniform(0, 62, size)).astype(np.int64)
    powers = 2 ** rng.integers(0, 62, size) + rng.integers(-2, 2, size)
    return np.concatenate([log_scale, powers, rng.integers(0, 100, size)])


@pytest.mark.parametrize("num_buckets", [2, 3, 16, 20, 32, 64, 65])
def test_log2_bucket_equals_the_pipelines(num_buckets):
    counts = np.concatenate([EDGE_COUNTS, _random_counts(np.random.default_rng(num_buckets), 3000)])
    got = RF.log2_bucket(tf.constant(counts, tf.int64), num_buckets).numpy()
    want = [IS.log2_bucket(int(c), num_buckets) for c in counts]
    assert got.tolist() == want


@pytest.mark.parametrize("num_buckets", [2, 3, 16, 20, 32])
def test_statistic_and_ctr_buckets_equal_the_pipelines(num_buckets):
    rng = np.random.default_rng(num_buckets)
    impressions = np.concatenate([np.repeat(EDGE_COUNTS, len(EDGE_COUNTS)), _random_counts(rng, 3000)])
    clicks = np.concatenate([np.tile([0, 0, 1, 2, 7, 1024, 2 ** 40, 2 ** 53, 2 ** 62, INT64_MAX, 3, 5, 9, 10, 11,
                                      2 ** 20, 6], len(EDGE_COUNTS)),
                             np.floor(np.maximum(_random_counts(rng, 3000), 0) * rng.uniform(0, 1.2, 9000))
                             .astype(np.int64) % (2 ** 62)])
    assert impressions.shape == clicks.shape
    got = np.stack([b.numpy() for b in RF.statistic_buckets(tf.constant(impressions), tf.constant(clicks),
                                                            num_buckets)], axis=1)
    for i, c, row in zip(impressions.tolist(), clicks.tolist(), got.tolist()):
        counts = IS.CumulativeCounts.from_daily([(0, i, c)]) if i > 0 else None  # a negative count: never seen
        assert tuple(row) == IS.statistic_buckets(counts, 1, num_buckets), (i, c)
        if i > 0:
            assert row[2] == IS.ctr_bucket(i, c, num_buckets)


def test_time_gap_bucket_equals_the_pipelines_from_0_seconds_to_decades():
    rng = np.random.default_rng(7)
    request_time = np.concatenate([[0, 1, 1_700_000_000, 2 ** 40, INT64_MAX], rng.integers(1_500_000_000,
                                                                                          1_800_000_000, 500)])
    gaps = np.concatenate([[0, 1, 2, 3, 60, 86_400, 30 * 365 * 86_400, 2 ** 30, 2 ** 31 - 2, 2 ** 31 - 1, 2 ** 31],
                           np.floor(10.0 ** rng.uniform(0, 9.5, 494)).astype(np.int64)])
    gaps = np.minimum(gaps, request_time)  # behaviours at unix time >= 0, none after the request
    behaviour_time = (request_time - gaps)[:, None]
    got = RF.time_gap_bucket(tf.constant(behaviour_time), tf.constant(request_time), ES.TIME_GAP_BUCKETS).numpy()
    want = [min((1 + t - h).bit_length(), ES.TIME_GAP_BUCKETS - 1) for t, h in zip(request_time.tolist(),
                                                                                   behaviour_time[:, 0].tolist())]
    assert got[:, 0].tolist() == want
    assert got[:, 0].max() == ES.TIME_GAP_BUCKETS - 1 and got[0, 0] == 1  # decades hit the cap; 0 s is bucket 1


def test_derived_features_equal_the_pipelines_code_path(make_config):
    """Every feature `predict_raw` derives equals what the pipeline's own functions (user_history included) compute
    from the same values, with unknown counters, padding holding garbage, gaps of 0 s and huge counts."""
    schema = ES.build_schema(make_config(sequence={"max_length": 8}), {}, 0, {})  # the cardinalities the job writes
    length = schema.sequence_length
    hist_length = np.array([0, 1, 2, length, length - 1, 3] * 40, np.int64)
    raw = RF.random_raw_values(hist_length, length, seed=3)
    raw[RF.HIST_TIMESTAMP][1, 0] = raw[RF.REQUEST_TIME][1]  # a behaviour in the request's second
    raw[RF.ITEM_IMPRESSIONS][:3] = [INT64_MAX, 0, -1]
    raw[RF.ITEM_CLICKS][:3] = [2 ** 62, 0, -1]  # no impressions, and unknown counters
    raw[RF.USER_IMPRESSIONS][:2], raw[RF.USER_CLICKS][:2] = [0, -1], [0, 0]
    raw[RF.ALL_IMPRESSIONS][:2], raw[RF.ALL_CLICKS][:2] = [0, -1], [0, -1]
    derive = tf.function(lambda raw, hist_length: RF.derived_features(schema, raw, hist_length))  # graph mode
    got = derive({k: tf.constant(v) for k, v in raw.items()}, tf.constant(hist_length))
    want = RF.pipeline_features(schema, raw, hist_length)
    assert set(got) == set(want) == set(RF.DERIVED_FEATURES)
    for name in RF.DERIVED_FEATURES:
        feature = schema.feature(name)
        assert got[name].dtype == TF_DTYPES[feature.dtype] and got[name].shape[1:] == feature.shape, name
        np.testing.assert_array_equal(got[name].numpy(), want[name], err_msg=name)
    assert (want[ES.HIST_TIME_GAP][0] == 0).all() and want[ES.HIST_TIME_GAP][1, 0] == 1


@pytest.mark.integration
def test_predict_raw_scores_as_predict_scores_the_pipelines_buckets(loaded, prepared):
    _, data, schema = prepared
    parsed = tf.io.parse_example(read_examples(data, schema, "validation", 64), serving_parse_spec(schema))
    raw, bucketed = RF.raw_requests(schema, {name: value.numpy() for name, value in parsed.items()}, seed=11)
    got = loaded.signatures["predict_raw"](**{k: tf.constant(v) for k, v in raw.items()})
    want = loaded.signatures["predict"](**{k: tf.constant(v) for k, v in bucketed.items()})
    assert got["probability"].shape == [64]
    np.testing.assert_allclose(got["probability"].numpy(), want["probability"].numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["modality_weights"].numpy(), want["modality_weights"].numpy(), atol=1e-5, rtol=0)


def logged_events(config) -> list[dict]:
    """The events of the generated log (gzip JSON lines), less those equal to an earlier one in (user, item, time,
    type, request, position): the data contract's duplicates."""
    f = config.events
    columns = (f.user_id, f.item_id, f.timestamp, f.event_type, f.request_id, f.position)
    seen, events = set(), []
    for path in sorted(glob.glob(config.inputs.events.path)):
        with gzip.open(path, "rt") as lines:
            for event in map(json.loads, lines):
                key = tuple(event.get(c) for c in columns)
                if key not in seen:
                    seen.add(key)
                    events.append(event)
    return events


def counted_from_the_log(config, events: list[dict], users, items, times, length: int) -> tuple[dict, dict, np.ndarray]:
    """What a front end counts for each request (user id, candidate item id, unix time), by the data contract
    (docs/pipeline.md), from the log alone:

    * the behaviours: the user's events of a behaviour type strictly before the request, ordered by time, type
      (config order) and item, the most recent `length`;
    * an item's counters (the candidate's as of the request's day, a behaviour item's as of its behaviour's day): its
      impressions and clicked impressions over the days before that day; all items' the same as of the request's day;
    * the user's: impressions shown strictly before the request, and clicks *logged* strictly before it (in the
      generated log every click event follows one clicked impression of its user).

    Args:
        users, items: bytes [n]; times: int64 [n].
        length: the schema's sequence length.
    Returns:
        (`predict_raw`'s raw inputs, the sequence features `hist_item_id`, `hist_event_type`, `hist_length`,
         the number of clicked impressions strictly before each request [n], logged or not).
    """
    f = config.events
    rank = {kind: k for k, kind in enumerate(f.behaviour_types)}
    shown, clicked = collections.Counter(), collections.Counter()  # (item, day) -> impressions, clicks; None: all
    by_user = collections.defaultdict(list)
    for e in events:
        by_user[e[f.user_id]].append(e)
        if e[f.event_type] == f.impression_type:
            day = e[f.timestamp] // IS.SECONDS_PER_DAY
            for key in ((e[f.item_id], day), (None, day)):
                shown[key] += 1
                clicked[key] += int(e[f.clicked])
    days = sorted({day for _, day in shown})

    def counters(item, time: int) -> tuple[int, int]:
        before = [day for day in days if day < time // IS.SECONDS_PER_DAY]
        return sum(shown[item, day] for day in before), sum(clicked[item, day] for day in before)

    raw, sequence = collections.defaultdict(list), collections.defaultdict(list)
    labels_before = []
    for user, item, t in zip(users, items, times.tolist()):
        earlier = [e for e in by_user[user.decode()] if e[f.timestamp] < t]
        behaviours = sorted((e for e in earlier if e[f.event_type] in rank),
                            key=lambda e: (e[f.timestamp], rank[e[f.event_type]], e[f.item_id]))[-length:]
        pad = [0] * (length - len(behaviours))
        stats = [counters(e[f.item_id], e[f.timestamp]) for e in behaviours]
        sequence[ES.HIST_ITEM_ID].append([e[f.item_id].encode() for e in behaviours] + [b""] * len(pad))
        sequence[ES.HIST_EVENT_TYPE].append([1 + rank[e[f.event_type]] for e in behaviours] + pad)
        sequence[ES.HIST_LENGTH].append(len(behaviours))
        raw[RF.HIST_TIMESTAMP].append([e[f.timestamp] for e in behaviours] + pad)
        raw[RF.HIST_IMPRESSIONS].append([s[0] for s in stats] + pad)
        raw[RF.HIST_CLICKS].append([s[1] for s in stats] + pad)
        raw[RF.REQUEST_TIME].append(t)
        for names, owner in (((RF.ITEM_IMPRESSIONS, RF.ITEM_CLICKS), item.decode()),
                             ((RF.ALL_IMPRESSIONS, RF.ALL_CLICKS), None)):
            for name, count in zip(names, counters(owner, t)):
                raw[name].append(count)
        impressions = [e for e in earlier if e[f.event_type] == f.impression_type]
        raw[RF.USER_IMPRESSIONS].append(len(impressions))
        raw[RF.USER_CLICKS].append(sum(e[f.event_type] == f.click_type for e in earlier))
        labels_before.append(sum(int(e[f.clicked]) for e in impressions))
    as_arrays = lambda values: {name: np.array(v, dtype=object if name == ES.HIST_ITEM_ID else np.int64)  # noqa: E731
                                for name, v in values.items()}
    return as_arrays(raw), as_arrays(sequence), np.array(labels_before)


@pytest.mark.integration
def test_a_raw_request_counted_from_the_log_scores_as_its_example(loaded, prepared):
    """Every example the pipeline wrote, against the raw request a front end would send for it, counted from the raw
    log by the data contract (`counted_from_the_log`): the log's events give the example's behaviour sequence,
    `predict_raw`'s derivation gives the example's bucket and rate features exactly (`user_ctr` included, for
    requests that follow a clicked impression whose click was not logged yet), and `predict_raw` scores the request
    as `predict` scores the example."""
    config, data, schema = prepared
    serialized = [record.numpy() for split in ("train", "validation", "test")
                  for record in tf.data.TFRecordDataset(split_files(data, schema, split), compression_type="GZIP")]
    example = {k: v.numpy() for k, v in tf.io.parse_example(serialized, schema.parse_spec()).items()}
    raw, sequence, labels_before = counted_from_the_log(config, logged_events(config), example[ES.USER_ID],
                                                        example[ES.ITEM_ID], example[ES.TIMESTAMP],
                                                        schema.sequence_length)
    for name, values in sequence.items():  # the right events: the sequence the pipeline wrote
        np.testing.assert_array_equal(values.astype(example[name].dtype), example[name], err_msg=name)
    # the case a label-counting front end (or pipeline) gets wrong is among them
    assert (labels_before > raw[RF.USER_CLICKS]).sum() > 0

    derived = tf.function(lambda raw, length: RF.derived_features(schema, raw, length))(
        {k: tf.constant(v) for k, v in raw.items()}, tf.constant(sequence[ES.HIST_LENGTH]))
    for name in RF.DERIVED_FEATURES:
        np.testing.assert_array_equal(derived[name].numpy(), example[name], err_msg=name)

    request = {k: v.numpy() for k, v in tf.io.parse_example(serialized, serving_parse_spec(schema)).items()}
    raw_request = {**{k: v for k, v in request.items() if k not in RF.DERIVED_FEATURES}, **raw}
    got = loaded.signatures["predict_raw"](**{k: tf.constant(v) for k, v in raw_request.items()})
    want = loaded.signatures["predict"](**{k: tf.constant(v) for k, v in request.items()})
    assert got["probability"].shape == [len(serialized)]
    for key in ("probability", "modality_weights"):
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-5, rtol=0, err_msg=key)


@pytest.mark.integration
def test_raw_rest_body_runs_through_predict_raw(loaded, prepared):
    from marn_tf.export.clients import raw_rest_body, rest_body
    from tests.export.test_clients import run_rest_body

    _, _, schema = prepared
    instances = [{"item_id": "i0000001", "user_id": "u0000001", "hist_item_id": ["i0000002", "i0000003"],
                  "hist_event_type": [1, 2], "hist_timestamp": [1_699_000_000, 1_699_999_000],
                  "hist_impressions": [120, -1], "hist_clicks": [7, 0], "request_time": 1_700_000_000,
                  "item_impressions": 5000, "item_clicks": 41, "user_impressions": 30, "user_clicks": 2,
                  "all_impressions": 10 ** 9, "all_clicks": 3 * 10 ** 7},
                 {"item_id": "i0000004", "request_time": 1_700_000_000}]  # every counter unknown
    body = json.loads(json.dumps(raw_rest_body(schema, instances)))  # what goes over the wire
    assert body["signature_name"] == "predict_raw"
    got = [row["probability"] for row in run_rest_body(loaded, body)]
    rows = body["instances"]
    raw = {name: np.array([r[name] for r in rows], np.int64) for name in RF.raw_input_specs(schema)}
    derived = RF.pipeline_features(schema, raw, np.array([r[RF.HIST_LENGTH] for r in rows], np.int64))
    bucketed = [{**{k: v for k, v in r.items() if k not in raw}, **{k: v[i].tolist() for k, v in derived.items()}}
                for i, r in enumerate(rows)]
    want = [row["probability"] for row in run_rest_body(loaded, rest_body(schema, bucketed))]
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="request_time"):
        raw_rest_body(schema, [{"item_id": "i0000004"}])
    with pytest.raises(ValueError, match="one value per item"):
        raw_rest_body(schema, [{"item_id": "x", "request_time": 1, "hist_item_id": ["a"], "hist_timestamp": [0, 1]}])


@pytest.mark.integration
def test_predict_raw_refuses_a_behaviour_after_the_request_and_negative_clicks(loaded, prepared):
    _, data, schema = prepared
    parsed = tf.io.parse_example(read_examples(data, schema, "validation", 64), serving_parse_spec(schema))
    raw, _ = RF.raw_requests(schema, {name: value.numpy() for name, value in parsed.items()})
    row = int(np.argmax(raw[RF.HIST_LENGTH]))  # a request with behaviours
    assert raw[RF.HIST_LENGTH][row] > 0
    predict_raw = loaded.signatures["predict_raw"]
    for name, position, value, message in (
            (RF.HIST_TIMESTAMP, (row, 0), raw[RF.REQUEST_TIME][row] + 1, "hist_timestamp must not be after"),
            (RF.ITEM_CLICKS, row, -1, "item_clicks must be >= 0 where item_impressions > 0")):
        bad = {k: v.copy() for k, v in raw.items()}
        bad[RF.ITEM_IMPRESSIONS][row] = 10
        bad[name][position] = value
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            predict_raw(**{k: tf.constant(v) for k, v in bad.items()})
    empty = predict_raw(**{k: tf.constant(v[:0]) for k, v in raw.items()})
    assert empty["probability"].shape == [0]
