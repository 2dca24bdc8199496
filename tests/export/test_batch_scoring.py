"""`marn score`: Beam RunInference over TFRecords and Parquet; ids kept, predictions equal the served ones,
bad records dead-lettered with a reason, and records in = scored + dead-lettered."""
import glob
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from marn_tf.export import batch_scoring
from marn_tf.config_loader import ConfigError
from marn_tf.data.input import make_dataset, split_files
from marn_tf.data.parquet_input import write_parquet_split

pytestmark = pytest.mark.integration


def _records(data, schema):
    return [r.numpy() for r in tf.data.TFRecordDataset(split_files(data, schema, "validation"), compression_type="GZIP")]


def test_scores_tfrecords_with_ids_and_dead_letters(exported, loaded, prepared, tmp_path):
    _, data, schema = prepared
    records = _records(data, schema)
    n = len(records)
    broken = [b"not an example", tf.train.Example().SerializeToString()]  # garbage; no candidate item id
    with tf.io.TFRecordWriter(str(tmp_path / "in.tfrecord")) as writer:
        for r in records[:n // 2] + broken + records[n // 2:]:
            writer.write(r)
    counts = batch_scoring.run(exported[0].path, str(tmp_path / "in.tfrecord"), str(tmp_path / "scores"),
                               batch_size=64)
    assert counts["read"] == n + 2 and counts["scored"] == n and counts["dead_lettered"] == 2 and counts["balanced"]
    rows = [json.loads(line) for f in glob.glob(str(tmp_path / "scores-0*.jsonl")) for line in open(f)]
    letters = [json.loads(line) for f in glob.glob(str(tmp_path / "scores-dead_letter-*.jsonl")) for line in open(f)]
    assert sorted(letter["reason"] for letter in letters) == ["invalid_record"] * 2
    assert any("'item_id' is required" in letter["detail"] for letter in letters)

    served = loaded.signatures["serving_default"](examples=tf.constant(records))["probability"].numpy()
    by_key = {(r["request_id"], r["item_id"]): r for r in rows}
    assert len(by_key) == n
    for record, probability in zip(records, served):
        features = tf.train.Example.FromString(record).features.feature
        row = by_key[(features["request_id"].bytes_list.value[0].decode(), features["item_id"].bytes_list.value[0].decode())]
        assert row["probability"] == pytest.approx(float(probability), abs=1e-6)
        assert row["label"] == features["label"].int64_list.value[0]
        assert {"weight_id", "weight_image", "weight_text", "weight_statistic"} <= set(row)
    assert json.loads((tmp_path / "scores-counts.json").read_text()) == counts


def test_scores_parquet_to_parquet(exported, prepared, tmp_path):
    _, data, schema = prepared
    batches = make_dataset(data, schema, "validation", 64, shuffle=False, drop_remainder=False)
    write_parquet_split(str(tmp_path / "pq"), "validation", batches, schema)
    counts = batch_scoring.run(exported[0].path, str(tmp_path / "pq" / "validation" / "*.parquet"),
                               str(tmp_path / "scores"), input_format="parquet", output_format="parquet")
    table = pq.ParquetDataset(glob.glob(str(tmp_path / "scores-0*.parquet"))).read()
    assert counts["read"] == counts["scored"] == table.num_rows > 0 and counts["dead_lettered"] == 0
    probabilities = np.array(table.column("probability").to_pylist())
    assert np.all((probabilities > 0) & (probabilities < 1))
    assert set(table.column_names) >= {"request_id", "user_id", "item_id", "label", "probability"}


def test_no_input_is_a_clear_error(exported, tmp_path):
    with pytest.raises(ConfigError, match="no input files match"):
        batch_scoring.run(exported[0].path, str(tmp_path / "nothing-*.tfrecord"), str(tmp_path / "out"))


def test_a_record_the_model_refuses_is_dead_lettered_alone_with_a_short_reason(exported, prepared, tmp_path):
    _, data, schema = prepared
    good = _records(data, schema)[:20]
    refused = tf.train.Example.FromString(good[0])  # well-formed, but it claims behaviours it does not give
    del refused.features.feature["hist_item_id"].bytes_list.value[:]
    refused.features.feature["hist_item_id"].bytes_list.value.extend([b""] * schema.sequence_length)
    refused.features.feature["hist_length"].int64_list.value[:] = [3]
    with tf.io.TFRecordWriter(str(tmp_path / "in.tfrecord")) as writer:
        for r in good[:10] + [refused.SerializeToString()] + good[10:]:
            writer.write(r)
    counts = batch_scoring.run(exported[0].path, str(tmp_path / "in.tfrecord"), str(tmp_path / "scores"),
                               batch_size=64)  # all 21 records in one batch
    assert counts["scored"] == 20 and counts["failed_inference"] == 1 and counts["balanced"]
    (letter,) = [json.loads(line) for f in glob.glob(str(tmp_path / "scores-dead_letter-*.jsonl")) for line in open(f)]
    assert letter["reason"] == "inference_failed" and "hist_length must not exceed" in letter["detail"]
    assert len(letter["detail"]) < 300 and "Traceback" not in letter["detail"]
    assert tf.train.Example.FromString(bytes.fromhex(letter["record"])) == refused  # the record, to fix and replay
