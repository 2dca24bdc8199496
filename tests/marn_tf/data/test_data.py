"""The training side of the contract: tf.data batches and the item table, on a real pipeline output."""
import collections
import dataclasses
import gzip
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.config import Config
from marn_tf.data.input import make_dataset, split_files
from marn_tf.data.item_table import load_item_table
from marn_tf.schema import Schema, SchemaError, read_vocabulary
from marn_tf.pipelines import preprocess
from marn_tf.pipelines.records import title_words
from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline_output(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    generate(GeneratorOptions(output=str(base / "raw"), users=30, items=200, days=8, image_dim=4,
                              bad_record_rate=0.0), progress=False)
    config = Config.load(str(base / "raw" / "config.yaml"), ["sequence.max_length=6"])
    preprocess.run(config, str(base / "out"))
    return base, Schema.load(str(base / "out"))


def test_batches_follow_the_schema(pipeline_output):
    base, schema = pipeline_output
    features, label = next(iter(make_dataset(str(base / "out"), schema, "train", batch_size=8)))
    assert label.shape == [8] and set(label.numpy()) <= {0, 1}
    assert "label" not in features
    for f in schema.features:
        if f.name != schema.label:
            assert features[f.name].shape == [8, *f.shape], f.name


def test_deterministic_order_with_a_seed(pipeline_output):
    base, schema = pipeline_output

    def first_ids():
        ds = make_dataset(str(base / "out"), schema, "train", batch_size=16, deterministic=True, seed=3)
        return [features["item_id"].numpy().tolist() for features, _ in ds.take(3)]

    assert first_ids() == first_ids()


def _examples(dataset) -> collections.Counter:
    """The examples of `dataset`'s batches, each as (request id, item id, position), counted."""
    seen = collections.Counter()
    for features, _ in dataset:
        seen.update(zip(*(features[k].numpy().tolist() for k in ("request_id", "item_id", "position"))))
    return seen


def _split_into_files(source: str, schema, directory, files: int) -> str:
    """`source`'s training records dealt out over `files` files of the split's layout under `directory`."""
    sources = split_files(source, schema, "train")
    records = [r.numpy() for r in tf.data.TFRecordDataset(sources, compression_type="GZIP")]
    (directory / "train").mkdir()
    for i in range(files):
        with tf.io.TFRecordWriter(str(directory / "train" / f"part-{i:05d}-of-{files:05d}.tfrecord.gz"), "GZIP") as out:
            for record in records[i::files]:
                out.write(record)
    return str(directory)


@pytest.mark.parametrize("files", [1, 4])
def test_the_parts_of_a_split_hold_each_record_once(pipeline_output, tmp_path, files):
    """`shard=(3, i)`: the three parts share no record and together hold every record of the split once, whether the
    split has fewer files than parts (each file's records are divided) or more (the files are)."""
    base, schema = pipeline_output
    directory = str(base / "out") if files == 1 else _split_into_files(str(base / "out"), schema, tmp_path, files)
    assert len(split_files(directory, schema, "train")) == files
    whole = _examples(make_dataset(directory, schema, "train", batch_size=16, drop_remainder=False))
    assert sum(whole.values()) == schema.split_examples["train"]
    parts = [_examples(make_dataset(directory, schema, "train", batch_size=16, drop_remainder=False, seed=3,
                                    shard=(3, i))) for i in range(3)]
    assert all(parts)
    assert sum(parts, collections.Counter()) == whole


def test_missing_or_empty_splits_fail_clearly(pipeline_output, tmp_path):
    base, schema = pipeline_output
    with pytest.raises(SchemaError, match="no TFRecords match .*run `marn preprocess` first"):
        make_dataset(str(tmp_path), schema, "train", batch_size=4)
    assert schema.split_examples["test"] > 0  # the pipeline counted them into the schema
    emptied = dataclasses.replace(schema, split_examples={**schema.split_examples, "test": 0})
    with pytest.raises(SchemaError, match="the test split has no examples"):
        make_dataset(str(base / "out"), emptied, "test", batch_size=4)


def test_item_table_is_dense_by_vocabulary_index(pipeline_output):
    base, schema = pipeline_output
    table = load_item_table(str(base / "out"), schema)
    vocabulary = read_vocabulary(str(base / "out" / "vocab" / "item_id.txt"))
    assert table.item_ids == [""] + vocabulary
    assert not table.columns["image"][0].any() and table.columns["has_image"][0] == 0  # row 0: OOV
    words = [""] + read_vocabulary(str(base / "out" / "vocab" / "title_word.txt"))
    catalog = [json.loads(line) for line in gzip.open(base / "raw" / "items" / "items.jsonl.gz")]
    for item in catalog[:50]:
        row = table.item_ids.index(item["item_id"])
        if item["image_embedding"]:
            np.testing.assert_allclose(table.columns["image"][row], item["image_embedding"], rtol=1e-6)
        assert table.columns["has_image"][row] == (item["image_embedding"] is not None)
        tokens = table.columns["title_tokens"][row][: table.columns["title_length"][row]]
        expected = title_words(item["title"], 16)
        assert len(tokens) == len(expected)
        assert [words[t] if t else w for t, w in zip(tokens, expected)] == expected  # 0 only for unseen words


def test_item_table_from_another_run_is_refused(pipeline_output, tmp_path):
    base, schema = pipeline_output
    copy = tmp_path / "copy"
    shutil.copytree(base / "out", copy)
    vocab = copy / "vocab" / "item_id.txt"
    lines = vocab.read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    vocab.write_text("\n".join(lines) + "\n")
    with pytest.raises(SchemaError, match="come from different runs"):
        load_item_table(str(copy), schema)
    shutil.rmtree(copy / "item_table")
    with pytest.raises(SchemaError, match="no item table"):
        load_item_table(str(copy), schema)


def test_parquet_source_gives_the_same_examples(pipeline_output, tmp_path):
    from marn_tf.data.parquet_input import make_parquet_dataset, write_parquet_split

    base, schema = pipeline_output
    tfrecords = list(make_dataset(str(base / "out"), schema, "validation", 7, shuffle=False, deterministic=True,
                                  drop_remainder=False))
    write_parquet_split(str(tmp_path), "validation", tfrecords, schema)
    parquet = list(make_parquet_dataset(str(tmp_path), schema, "validation", 7, drop_remainder=False))
    assert len(parquet) == len(tfrecords)
    for (a, label_a), (b, label_b) in zip(tfrecords, parquet):
        np.testing.assert_array_equal(label_a.numpy(), label_b.numpy())
        assert set(a) == set(b)
        for name in a:
            assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
            np.testing.assert_array_equal(a[name].numpy(), b[name].numpy(), err_msg=name)
    with pytest.raises(SchemaError, match="no Parquet files match"):
        make_parquet_dataset(str(tmp_path), schema, "train", 7)
