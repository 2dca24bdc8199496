"""`marn export --item-store`: a SavedModel without the item table, fed item representations from a store.

It must score as the regular export does when given the regular export's `item_representations` outputs, hold
nothing whose size grows with the catalog, and refuse a representation of the wrong shape naming the input.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from marn_tf import cli
from marn_tf import schema as S
from marn_tf.export import item_store_serving as ISS
from marn_tf.export.check import check_export
from marn_tf.export.request_features import serving_parse_spec, to_columns
from marn_tf.export.warmup import read_examples, read_warmup

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store_exported(prepared, trained_run, tmp_path_factory) -> str:
    """The version directory of a store-mode export of the same run as `exported`, through the CLI."""
    _, data, _ = prepared
    base = tmp_path_factory.mktemp("item_store_base")
    code = cli.main(["export", "--run", str(trained_run), "--data", data, "--output", str(base),
                     "--warmup-batch-sizes", "1,5", "--item-store"])
    assert code == 0
    return str(base / "marn" / "1")


@pytest.fixture(scope="module")
def store_loaded(store_exported):
    return tf.saved_model.load(store_exported)


def _regular_representations(loaded):
    signature = loaded.signatures["item_representations"]
    return lambda ids: signature(item_id=tf.constant(ids))


def _validation_requests(data: str, schema: S.Schema, count: int) -> dict:
    parsed = tf.io.parse_example(read_examples(data, schema, "validation", count), serving_parse_spec(schema))
    return {name: value.numpy() for name, value in parsed.items()}


def _call(loaded, signature: str, request: dict) -> dict:
    return {key: value.numpy() for key, value in
            loaded.signatures[signature](**{name: tf.constant(v) for name, v in request.items()}).items()}


def test_scores_as_the_regular_export_given_its_item_representations(loaded, store_loaded, prepared):
    _, data, schema = prepared
    request = _validation_requests(data, schema, 64)
    want = _call(loaded, "predict", request)
    store_request = ISS.item_store_request(schema, request, _regular_representations(loaded))
    assert "item_id" not in store_request and "hist_item_id" not in store_request
    for signature in ("predict", "serving_default"):
        got = _call(store_loaded, signature, store_request)
        np.testing.assert_allclose(got["probability"], want["probability"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(got["modality_weights"], want["modality_weights"], rtol=0, atol=1e-5)


def test_holds_no_catalog_sized_variable_or_item_vocabulary(exported, store_exported, prepared):
    _, _, schema = prepared
    catalog_rows = {schema.vocabularies[S.ITEM_VOCABULARY].input_dim, schema.item_table.num_with_id_embedding + 1}

    def per_item(version: str) -> list[str]:  # the saved variables with a row per item
        return [name for name, shape in tf.train.list_variables(os.path.join(version, "variables", "variables"))
                if shape and shape[0] in catalog_rows]

    assert per_item(exported[0].path)  # the regular export holds the catalog, so the test would see it
    assert not per_item(store_exported)
    assert "item_id.txt" in os.listdir(os.path.join(exported[0].path, "assets"))
    assert "item_id.txt" not in os.listdir(os.path.join(store_exported, "assets"))

    def size(version: str, name: str) -> int:
        path = os.path.join(version, name)
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, names in os.walk(path) for f in names) \
            if os.path.isdir(path) else os.path.getsize(path)

    assert size(store_exported, "variables") < size(exported[0].path, "variables")


@pytest.mark.parametrize("name, change", [
    ("candidate_representation", lambda v: np.concatenate([v, v[:, :1]], axis=1)),
    ("hist_representation", lambda v: v[:, :-1]),
    ("candidate_modality_mask", lambda v: v[:, 1:]),
])
def test_a_representation_of_another_shape_fails_naming_the_input(loaded, store_loaded, prepared, name, change):
    _, _, schema = prepared
    request = ISS.item_store_request(schema, to_columns(schema, [{"item_id": "x", "hist_item_id": ["a"]}]),
                                     _regular_representations(loaded))
    request[name] = change(request[name])
    with pytest.raises(tf.errors.InvalidArgumentError, match=name):
        _call(store_loaded, "predict", request)


@pytest.mark.parametrize("name, change, message", [
    ("hist_representation", lambda v: np.full_like(v, np.nan), "hist_representation must be finite"),
    ("candidate_modality_weights", lambda v: v[:1], "candidate_modality_weights has another batch size"),
    ("user_id", lambda v: v[:1], "user_id has another batch size than candidate_representation"),
    ("hist_length", lambda v: v + 100, "hist_length must not exceed the sequence length"),
    ("hist_event_type", lambda v: v + 4, r"hist_event_type must be in \[0, 4\)"),
])
def test_bad_values_fail_naming_the_input(loaded, store_loaded, prepared, name, change, message):
    _, _, schema = prepared
    request = ISS.item_store_request(schema, to_columns(schema, [{"item_id": "x", "hist_item_id": ["a"]},
                                                                 {"item_id": "y"}]), _regular_representations(loaded))
    request[name] = change(request[name])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _call(store_loaded, "predict", request)


def test_an_empty_batch_returns_empty_outputs(loaded, store_loaded, prepared):
    _, _, schema = prepared
    request = ISS.item_store_request(schema, to_columns(schema, [{"item_id": "x"}]), _regular_representations(loaded))
    out = _call(store_loaded, "predict", {name: value[:0] for name, value in request.items()})
    modalities = request["candidate_modality_weights"].shape[-1]
    assert out["probability"].shape == (0,) and out["modality_weights"].shape == (0, modalities)


def test_records_the_mode_and_passes_check_export(store_exported):
    info = json.load(open(os.path.join(store_exported, "assets.extra", "export_info.json")))
    assert info["mode"] == "item_store" and info["representation_dim"] > 0
    assert info["signatures"] == ["predict", "serving_default"]
    warmup = read_warmup(os.path.join(store_exported, "assets.extra", "tf_serving_warmup_requests"))
    assert [(r.predict_log.request.model_spec.signature_name,
             tf.make_ndarray(r.predict_log.request.inputs["candidate_representation"]).shape[0]) for r in warmup] \
        == [("predict", 1), ("predict", 5)]
    report = check_export(store_exported, examples=32)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert [c.name for c in report.checks] == ["signatures match the schema", "warmup requests replay",
                                               "predict matches the checkpoint", "saved_model_cli show --all"]


def test_the_rest_body_for_a_store_mode_model_scores_as_the_regular_predict(loaded, store_loaded, prepared):
    from marn_tf.export.clients import item_store_rest_body, json_value, rest_body
    from marn_tf.export.request_features import to_columns

    _, data, schema = prepared
    request = _validation_requests(data, schema, 8)
    instances = [{name: json_value(np.asarray(value[i]).tolist()) for name, value in request.items()} for i in range(8)]
    body = json.loads(json.dumps(item_store_rest_body(schema, instances, _regular_representations(loaded))))
    assert body["signature_name"] == "predict" and "item_id" not in body["instances"][0]
    columns = {name: [row[name] for row in body["instances"]] for name in body["instances"][0]}
    specs = store_loaded.signatures["predict"].structured_input_signature[1]
    got = store_loaded.signatures["predict"](**{name: tf.constant(v, specs[name].dtype) for name, v in columns.items()})
    want = _call(loaded, "predict", to_columns(schema, rest_body(schema, instances)["instances"]))
    np.testing.assert_allclose(got["probability"].numpy(), want["probability"], rtol=0, atol=1e-5)

