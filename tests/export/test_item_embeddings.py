"""`marn embed-items`: every item's representation from the export, as Parquet and TFRecords, bad ids dead-lettered."""
import glob
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from marn_tf.export import item_embeddings

pytestmark = pytest.mark.integration


def test_writes_the_signatures_representations_keyed_by_item_and_dead_letters_bad_ids(exported, loaded, tmp_path):
    result, _ = exported
    vocabulary = open(item_embeddings.item_vocabulary(result.path), encoding="utf-8").read().split()
    wanted = vocabulary[:3] + ["never-seen"]
    items = tmp_path / "items.txt"
    items.write_bytes("\n".join(wanted).encode() + b"\n\n\xff\xfe\n")  # an empty line and one not UTF-8
    prefix = str(tmp_path / "out" / "items")
    counts = item_embeddings.run(result.path, prefix, str(items), batch_size=2)
    assert counts == {"read": 6, "embedded": 4, "rejected_records": 2, "failed_inference": 0, "dead_lettered": 2,
                      "balanced": True}
    assert json.load(open(f"{prefix}-counts.json")) == counts

    rows = pq.read_table(glob.glob(f"{prefix}-*.parquet")).to_pylist()
    assert sorted(r["item_id"] for r in rows) == sorted(wanted)
    want = loaded.signatures["item_representations"](item_id=tf.constant(wanted))
    by_id = {r["item_id"]: r for r in rows}
    for key in item_embeddings.OUTPUTS:
        np.testing.assert_allclose([by_id[i][key] for i in wanted], want[key].numpy(), rtol=1e-6, atol=1e-7)

    records = tf.data.TFRecordDataset(glob.glob(f"{prefix}-*.tfrecord.gz"), compression_type="GZIP")
    examples = [tf.train.Example.FromString(r.numpy()) for r in records]
    assert len(examples) == 4
    for example in examples:
        feature = example.features.feature
        row = by_id[feature["item_id"].bytes_list.value[0].decode()]
        np.testing.assert_allclose(feature["representation"].float_list.value, row["representation"], rtol=1e-6)

    letters = [json.loads(line) for f in glob.glob(f"{prefix}-dead_letter-*.jsonl") for line in open(f)]
    assert sorted(letter["reason"] for letter in letters) == ["invalid_item_id", "invalid_item_id"]
    assert {letter["detail"].split(":")[0] for letter in letters} >= {"empty item id"}


def test_by_default_embeds_every_item_of_the_models_vocabulary(exported, tmp_path):
    result, _ = exported
    known = len(open(item_embeddings.item_vocabulary(result.path), encoding="utf-8").read().split())
    counts = item_embeddings.run(result.path, str(tmp_path / "all"), output_formats=["parquet"])
    assert counts["embedded"] == known and counts["dead_lettered"] == 0
    assert not glob.glob(str(tmp_path / "all-*.tfrecord.gz"))


@pytest.mark.parametrize("formats, message", [(["csv"], "--format must be among parquet, tfrecord, got csv"),
                                              ([], "got none")])
def test_unknown_output_formats_fail_before_any_work(exported, tmp_path, formats, message):
    with pytest.raises(item_embeddings.S.SchemaError, match=message):
        item_embeddings.run(exported[0].path, str(tmp_path / "x"), output_formats=formats)
    assert not list(tmp_path.iterdir())
