"""schema.json: round trip, consistency checks, and the tf.data parse spec."""
import json

import pytest

from marn_tf.schema import SCHEMA_FILE, Schema, SchemaError
from marn_tf.pipelines.example_schema import build_schema


@pytest.fixture
def schema(make_config):
    return build_schema(make_config(users={"features": ["gender"]}), {"item_id": 5, "user_id": 2}, 4,
                        {"train": 30, "validation": 6, "test": 0})


def test_save_load_round_trip(schema, tmp_path):
    schema.save(str(tmp_path))
    assert Schema.load(str(tmp_path)) == schema
    assert Schema.load(str(tmp_path / SCHEMA_FILE)) == schema


def test_the_schema_carries_what_readers_of_the_data_need(schema, tmp_path):
    """The category column reports slice by and the examples per split: no reader needs the raw-data config or
    report.json. A schema.json written before they were added still loads, without them."""
    assert schema.item_table.category_column == "category_id"
    assert schema.split_examples == {"train": 30, "validation": 6, "test": 0}
    older = schema.to_dict()
    del older["split_examples"], older["item_table"]["category_column"]
    loaded = Schema.from_dict(older)
    assert loaded.split_examples == {} and loaded.item_table.category_column is None


def test_tags_pick_features(schema):
    assert [f.name for f in schema.features_with_tags("behaviour", "item_key")] == ["hist_item_id"]
    assert [f.name for f in schema.features_with_tags("candidate", "statistic")] == [
        "item_stat_impressions", "item_stat_clicks", "item_stat_ctr", "item_ctr"]
    assert [(f.name, f.dtype) for f in schema.features_with_tags("rate")] == [
        ("user_ctr", "float32"), ("item_ctr", "float32")]
    assert [f.name for f in schema.features_with_tags("user", "rate")] == ["user_ctr"]
    assert [c.name for c in schema.item_columns("image")] == ["image"]
    assert schema.vocabularies["item_id"].input_dim == 6


def test_parse_spec_follows_the_features(schema):
    import tensorflow as tf

    spec = schema.parse_spec()
    assert spec["hist_item_id"] == tf.io.FixedLenFeature([3], tf.string, default_value=[""] * 3)
    assert spec["label"].dtype == tf.int64 and "label" not in schema.parse_spec(with_label=False)


def test_inconsistent_or_missing_schemas_fail_clearly(schema, tmp_path):
    data = schema.to_dict()
    data["features"][1]["vocabulary"] = "nope"
    with pytest.raises(SchemaError, match="feature 'user_id' names an unknown vocabulary 'nope'"):
        Schema.from_dict(data)
    with pytest.raises(SchemaError, match="version 7 is not supported"):
        Schema.from_dict({**schema.to_dict(), "version": 7})
    with pytest.raises(SchemaError, match="run `marn preprocess` first"):
        Schema.load(str(tmp_path / "empty"))
    (tmp_path / SCHEMA_FILE).write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        Schema.load(str(tmp_path))
    with pytest.raises(SchemaError, match="no feature 'clicks'"):
        schema.feature("clicks")
    assert json.loads(json.dumps(schema.to_dict())) == schema.to_dict()
