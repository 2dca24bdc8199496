"""`marn embed-items`: every item's representation from the export, as Parquet and TFRecords, bad ids dead-lettered."""
import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from marn_tf.cli import main
from marn_tf.export import item_embeddings
from marn_tf.storage.errors import OwnershipError

pytestmark = pytest.mark.integration


def test_writes_the_signatures_representations_keyed_by_item_and_dead_letters_bad_ids(exported, loaded, tmp_path):
    """Each known id is written once with the served representations; an id given again is counted, an id the
    model does not know is dead-lettered (never written with the out-of-vocabulary vector), as are lines that are
    no id; read = embedded + repeated + dead-lettered."""
    result, _ = exported
    vocabulary = open(item_embeddings.item_vocabulary(result.path), encoding="utf-8").read().split()
    wanted = vocabulary[:3]
    given = wanted + ["never-seen", wanted[0], "never-seen", f" {wanted[1]} "]
    items = tmp_path / "items.txt"
    items.write_bytes("\n".join(given).encode() + b"\n\n\xff\xfe\n")  # an empty line and one not UTF-8
    prefix = str(tmp_path / "out" / "items")
    counts = item_embeddings.run(result.path, prefix, str(items), batch_size=2)
    assert counts == {"read": 9, "embedded": 3, "duplicate_item_ids": 3, "dead_lettered": 3,
                      "dead_letters": {"invalid_item_id": 2, "unknown_item_id": 1, "inference_failed": 0},
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
    assert sorted(e.features.feature["item_id"].bytes_list.value[0].decode() for e in examples) == sorted(wanted)
    for example in examples:
        feature = example.features.feature
        row = by_id[feature["item_id"].bytes_list.value[0].decode()]
        np.testing.assert_allclose(feature["representation"].float_list.value, row["representation"], rtol=1e-6)

    letters = [json.loads(line) for f in glob.glob(f"{prefix}-dead_letter-*.jsonl") for line in open(f)]
    assert sorted(letter["reason"] for letter in letters) == ["invalid_item_id", "invalid_item_id", "unknown_item_id"]
    assert {letter["detail"].split(":")[0] for letter in letters} >= {"empty item id"}
    (unknown,) = [letter for letter in letters if letter["reason"] == "unknown_item_id"]
    assert json.loads(unknown["record"]) == "never-seen" and "not in the model's item vocabulary" in unknown["detail"]


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


def test_a_rerun_with_fewer_shards_leaves_no_stale_shard_and_foreign_files_are_refused(exported, tmp_path, capsys):
    """A re-run on the same prefix with fewer shards (from the command line) deletes the earlier run's shards; a
    file under the prefix that marn embed-items did not write is refused, named, and left as it was."""
    result, _ = exported
    items = tmp_path / "items.txt"
    items.write_text("\n".join(open(item_embeddings.item_vocabulary(result.path), encoding="utf-8").read().split()[:4]))
    prefix = str(tmp_path / "out" / "items")
    item_embeddings.run(result.path, prefix, str(items), num_shards=2)
    assert len(glob.glob(f"{prefix}-*.parquet")) == len(glob.glob(f"{prefix}-*.tfrecord.gz")) == 2
    assert main(["embed-items", "--model", result.path, "--output", prefix, "--items", str(items), "--format",
                 "parquet", "--num-shards", "1"]) == 0
    assert "read 4 item ids: 4 embedded, 0 repeated" in capsys.readouterr().out
    assert sorted(os.path.basename(p) for p in glob.glob(f"{prefix}-*")) == [
        "items-00000-of-00001.parquet", "items-counts.json", "items-dead_letter-00000-of-00001.jsonl"]
    assert pq.read_table(glob.glob(f"{prefix}-*.parquet")).num_rows == 4

    theirs = tmp_path / "out" / "items-extra.parquet"
    theirs.write_bytes(b"a feature store's file")
    with pytest.raises(OwnershipError, match="items-extra.parquet"):
        item_embeddings.run(result.path, prefix, str(items), output_formats=["parquet"])
    assert theirs.read_bytes() == b"a feature store's file" and len(glob.glob(f"{prefix}-0*.parquet")) == 1


def test_a_batch_size_below_one_is_a_usage_error_naming_the_flag(tmp_path, capsys):
    """--batch-size 0 exits 2 naming the flag before any work."""
    with pytest.raises(SystemExit) as exit_:
        main(["embed-items", "--model", str(tmp_path / "m"), "--output", str(tmp_path / "out" / "items"),
              "--batch-size", "0"])
    assert exit_.value.code == 2
    assert "argument --batch-size: 0 is too small: give 1 or more" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_embed_items_run_that_embedded_nothing_exits_1_with_the_first_reasons(exported, tmp_path, capsys):
    """Every id dead-lettered (none in the model's vocabulary): `marn embed-items` exits 1 with the reasons."""
    items = tmp_path / "items.txt"
    items.write_text("never-seen\nnor-this\n")
    prefix = str(tmp_path / "out" / "items")
    assert main(["embed-items", "--model", exported[0].path, "--output", prefix, "--items", str(items)]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: none of the 2 item ids read was embedded: 2 dead-lettered, the first reasons: "
                            "unknown_item_id: "), error
