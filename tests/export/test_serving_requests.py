"""Serving: a request value the model was not trained on fails naming the feature, in both
signatures; an empty batch gives empty outputs."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.export.request_features import serialize_request, to_columns

pytestmark = pytest.mark.integration


def _example(schema, **changes) -> bytes:
    """A valid request (two behaviours) with some features' values replaced as they are, unchecked."""
    example = tf.train.Example.FromString(serialize_request(schema, {"item_id": "x", "hist_item_id": ["a", "b"]}))
    for name, values in changes.items():
        kind = example.features.feature[name].WhichOneof("kind")
        del getattr(example.features.feature[name], kind).value[:]
        getattr(example.features.feature[name], kind).value.extend(values)
    return example.SerializeToString()


def test_a_sequence_length_beyond_the_behaviours_given_is_refused_naming_it(loaded, prepared):
    _, _, schema = prepared
    serving = loaded.signatures["serving_default"]
    same = serving(examples=tf.constant([_example(schema), _example(schema, hist_length=[2])]))["probability"].numpy()
    assert same[0] == pytest.approx(float(same[1]), abs=1e-7)  # the length left out is the number given
    with pytest.raises(tf.errors.InvalidArgumentError, match="hist_length must not exceed the number of behaviour"):
        serving(examples=tf.constant([_example(schema, hist_length=[6])]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="hist_length must be >= 0"):
        serving(examples=tf.constant([_example(schema, hist_length=[-1])]))
    columns = to_columns(schema, [{"item_id": "x", "hist_item_id": ["a", "b"]}])
    columns["hist_length"] = np.array([5])
    with pytest.raises(tf.errors.InvalidArgumentError, match="hist_length must not exceed"):
        loaded.signatures["predict"](**{k: tf.constant(v) for k, v in columns.items()})


def test_an_empty_batch_returns_empty_outputs(loaded, prepared):
    _, _, schema = prepared
    modalities = loaded.signatures["serving_default"].structured_outputs["modality_weights"].shape[-1]
    for out in (loaded.signatures["serving_default"](examples=tf.constant([], tf.string)),
                loaded.signatures["predict"](**{k: tf.constant(v) for k, v in to_columns(schema, []).items()})):
        assert out["probability"].shape == (0,) and out["modality_weights"].shape == (0, modalities)


@pytest.mark.parametrize("case, message", [
    ("short_sequence", "hist_item_id"),
    ("other_rank", "position"),
    ("other_batch_size", "user_id has another batch size than item_id"),
    ("bucket_out_of_range", r"hist_event_type must be in \[0, 4\)"),
    ("negative_bucket", r"item_stat_ctr must be in \[0, 20\)"),
    ("not_finite", "user_ctr must be finite"),
])
def test_predict_errors_name_the_feature(loaded, prepared, case, message):
    _, _, schema = prepared
    columns = to_columns(schema, [{"item_id": "x", "hist_item_id": ["a"]}, {"item_id": "y"}])
    if case == "short_sequence":
        columns["hist_item_id"] = columns["hist_item_id"][:, :3]
    elif case == "other_rank":
        columns["position"] = columns["position"][:, None]
    elif case == "other_batch_size":
        columns["user_id"] = columns["user_id"][:1]
    elif case == "bucket_out_of_range":
        columns["hist_event_type"] = columns["hist_event_type"] + 4
    elif case == "negative_bucket":
        columns["item_stat_ctr"] = columns["item_stat_ctr"] - 1
    else:
        columns["user_ctr"] = np.array([np.nan, 0.5], np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["predict"](**{k: tf.constant(v) for k, v in columns.items()})


def test_serving_default_checks_values_the_parser_cannot(loaded, prepared):
    _, _, schema = prepared
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"hist_time_gap must be in \[0, 32\)"):
        loaded.signatures["serving_default"](examples=tf.constant([_example(schema, hist_time_gap=[99] * 8)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="item_ctr must be finite"):
        loaded.signatures["serving_default"](examples=tf.constant([_example(schema, item_ctr=[float("inf")])]))
