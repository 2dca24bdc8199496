"""The exported SavedModel refuses, naming the feature, request values the pipeline never writes; it says which
candidate ids it did not know; it refuses a request above its maximum batch."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.export import raw_features as RF
from marn_tf.export.request_features import NEUTRAL_RATE, serialize_request, serving_parse_spec, to_columns
from marn_tf.export.serving_module import DEFAULT_MAX_BATCH
from marn_tf.export.warmup import read_examples

pytestmark = pytest.mark.integration


def _example(schema, **changes) -> bytes:
    """A valid request (two behaviours) with some features' values replaced as they are, unchecked."""
    example = tf.train.Example.FromString(serialize_request(schema, {"item_id": "x", "hist_item_id": ["a", "b"]}))
    for name, values in changes.items():
        kind = example.features.feature[name].WhichOneof("kind")
        del getattr(example.features.feature[name], kind).value[:]
        getattr(example.features.feature[name], kind).value.extend(values)
    return example.SerializeToString()


def _predict(loaded, columns: dict) -> dict:
    return loaded.signatures["predict"](**{k: tf.constant(v) for k, v in columns.items()})


@pytest.mark.parametrize("name, value", [("user_ctr", 1.5), ("item_ctr", -0.25)])
def test_a_rate_outside_0_1_is_refused_naming_it(loaded, prepared, name, value):
    """Both scoring signatures refuse a rate the pipeline cannot write, naming the feature."""
    _, _, schema = prepared
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{name} must be in \[0, 1\]"):
        loaded.signatures["serving_default"](examples=tf.constant([_example(schema, **{name: [value]})]))
    columns = to_columns(schema, [{"item_id": "x"}, {"item_id": "y"}])
    columns[name] = np.array([0.5, value], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"{name} must be in \[0, 1\]"):
        _predict(loaded, columns)


def test_behaviour_ids_after_an_empty_one_are_refused(loaded, prepared):
    """Behaviour ids that are not one block from position 0 (the pipeline pads at the end) are refused."""
    _, _, schema = prepared
    padding = [b""] * (schema.sequence_length - 3)
    for ids in ([b"a", b"", b"b"] + padding, [b"", b"a", b"b"] + padding):
        with pytest.raises(tf.errors.InvalidArgumentError, match="hist_item_id must hold its behaviour ids first"):
            loaded.signatures["serving_default"](examples=tf.constant([_example(schema, hist_item_id=ids)]))


def test_a_hist_length_below_the_behaviours_given_is_refused(loaded, prepared):
    """A sequence length shorter than the behaviour ids given would drop behaviours unnoticed: refused."""
    _, _, schema = prepared
    with pytest.raises(tf.errors.InvalidArgumentError, match="hist_length must not be less than the number"):
        loaded.signatures["serving_default"](examples=tf.constant([_example(schema, hist_length=[1])]))
    columns = to_columns(schema, [{"item_id": "x", "hist_item_id": ["a", "b"]}])
    columns["hist_length"] = np.array([0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="hist_length must not be less than the number"):
        _predict(loaded, columns)


def test_a_left_out_rate_reads_as_the_neutral_rate(loaded, prepared):
    """`serving_default` reads a rate an example leaves out as NEUTRAL_RATE, not as 0."""
    _, _, schema = prepared
    bare = tf.train.Example()
    bare.features.feature["item_id"].bytes_list.value.append(b"x")
    neutral = _example(schema, user_ctr=[NEUTRAL_RATE], item_ctr=[NEUTRAL_RATE], hist_item_id=[b""] * schema.sequence_length,
                       hist_length=[0])
    got = loaded.signatures["serving_default"](examples=tf.constant([bare.SerializeToString(), neutral]))
    assert got["probability"].numpy()[0] == pytest.approx(float(got["probability"].numpy()[1]), abs=1e-7)


def _raw(prepared):
    _, data, schema = prepared
    parsed = tf.io.parse_example(read_examples(data, schema, "validation", 64), serving_parse_spec(schema))
    raw, _ = RF.raw_requests(schema, {name: value.numpy() for name, value in parsed.items()})
    row = int(np.argmax(raw[RF.HIST_LENGTH]))
    assert raw[RF.HIST_LENGTH][row] >= 2
    return raw, row


@pytest.mark.parametrize("name, position, value, message", [
    (RF.ITEM_IMPRESSIONS, "row", -2, "item_impressions must be >= 0, or -1 for unknown"),
    (RF.USER_CLICKS, "row", -7, "user_clicks must be >= 0"),
    (RF.ITEM_CLICKS, "row", 11, "item_clicks must not exceed item_impressions"),
    (RF.HIST_CLICKS, "first", 10 ** 9, "hist_clicks must not exceed hist_impressions"),
    (RF.HIST_TIMESTAMP, "first", 0, None),  # before the next one: allowed
    (RF.HIST_TIMESTAMP, "second", 0, "hist_timestamp must be oldest first"),
])
def test_predict_raw_refuses_counts_and_times_the_pipeline_never_has(loaded, prepared, name, position, value,
                                                                      message):
    """Counters below -1 (unknown), clicks above impressions, behaviours out of time order: refused naming them."""
    raw, row = _raw(prepared)
    bad = {k: v.copy() for k, v in raw.items()}
    bad[RF.ITEM_IMPRESSIONS][row], bad[RF.ITEM_CLICKS][row] = 10, 0
    bad[RF.HIST_IMPRESSIONS][row, 0], bad[RF.HIST_CLICKS][row, 0] = 100, 0
    bad[name][{"row": row, "first": (row, 0), "second": (row, 1)}[position]] = value
    predict_raw = loaded.signatures["predict_raw"]
    if message is None:
        assert predict_raw(**{k: tf.constant(v) for k, v in bad.items()})["probability"].shape == [len(bad[name])]
    else:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            predict_raw(**{k: tf.constant(v) for k, v in bad.items()})


def test_the_response_says_which_candidate_ids_were_unknown(loaded, exported, prepared):
    """`item_known` is True for a catalog item and False for an id outside the vocabulary, in every scoring
    signature, next to the unchanged outputs."""
    _, _, schema = prepared
    known = open(f"{exported[0].path}/assets/item_id.txt").readline().strip()
    instances = [{"item_id": known}, {"item_id": "never-seen"}]
    for out in (loaded.signatures["serving_default"](
                    examples=tf.constant([serialize_request(schema, i) for i in instances])),
                _predict(loaded, to_columns(schema, instances))):
        assert out["item_known"].numpy().tolist() == [True, False]
        assert out["probability"].shape == [2] and out["modality_weights"].shape[0] == 2
    raw, _ = _raw(prepared)
    raw = {k: v[:2] for k, v in raw.items()}
    raw["item_id"] = np.array([known, "never-seen"], object)
    out = loaded.signatures["predict_raw"](**{k: tf.constant(v) for k, v in raw.items()})
    assert out["item_known"].numpy().tolist() == [True, False]


def test_a_request_above_the_maximum_batch_is_refused(loaded, prepared):
    """More rows than the export's maximum batch are refused with a message naming it, in every signature."""
    _, _, schema = prepared
    too_many = DEFAULT_MAX_BATCH + 1
    message = f"more rows than the maximum batch {DEFAULT_MAX_BATCH} of this export"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_default"](examples=tf.constant([_example(schema)] * too_many))
    columns = {k: np.repeat(v, too_many, axis=0) for k, v in to_columns(schema, [{"item_id": "x"}]).items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _predict(loaded, columns)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["item_representations"](item_id=tf.constant(["x"] * too_many))
    raw, _ = _raw(prepared)
    raw = {k: np.repeat(v[:1], too_many, axis=0) for k, v in raw.items()}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["predict_raw"](**{k: tf.constant(v) for k, v in raw.items()})
    assert loaded.signatures["serving_default"](
        examples=tf.constant([_example(schema)] * DEFAULT_MAX_BATCH))["probability"].shape == [DEFAULT_MAX_BATCH]
