"""`marn score`: Beam RunInference over TFRecords and Parquet; ids kept, predictions equal the served ones,
bad records dead-lettered with a reason, records in = scored + dead-lettered counted as data, and an output
prefix that never mixes two runs' files nor writes over files marn did not write."""
import glob
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.metrics.execution import MetricResult
from apache_beam.testing.util import assert_that, equal_to

from marn_tf.cli import main
from marn_tf.config_loader import ConfigError
from marn_tf.data.input import make_dataset, split_files
from marn_tf.data.parquet_input import write_parquet_split
from marn_tf.export import batch_scoring, job_outputs
from marn_tf.export.check import read_info
from marn_tf.pipelines.beam_options import pipeline_options
from marn_tf.storage import ownership
from marn_tf.storage.errors import OwnershipError

integration = pytest.mark.integration
ID_COLUMNS = ("request_id", "user_id", "item_id", "position", "timestamp", "label")


def _records(data, schema):
    return [r.numpy() for r in tf.data.TFRecordDataset(split_files(data, schema, "validation"), compression_type="GZIP")]


def _feature(record: bytes, name: str):
    feature = tf.train.Example.FromString(record).features.feature[name]
    value = getattr(feature, feature.WhichOneof("kind")).value[0]
    return value.decode() if isinstance(value, bytes) else value


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in records:
            writer.write(r)


def _jsonl(pattern):
    return [json.loads(line) for f in glob.glob(pattern) for line in open(f)]


class _AttemptedOnly:
    """What Flink and Spark job servers report: attempted metrics, no committed ones."""

    def __init__(self, results):
        self.results = results

    def query(self, filter=None):
        found = self.results.query(filter)
        return {kind: [MetricResult(m.key, None, m.attempted) for m in found[kind]] for kind in found}


@pytest.fixture
def attempted_only_metrics(monkeypatch):
    run = beam.Pipeline.run

    def run_reporting_attempted_only(pipeline, *args, **kwargs):
        result = run(pipeline, *args, **kwargs)
        committed = result.metrics()
        result.metrics = lambda: _AttemptedOnly(committed)
        return result

    monkeypatch.setattr(beam.Pipeline, "run", run_reporting_attempted_only)


@integration
def test_scores_tfrecords_with_ids_and_dead_letters(exported, loaded, prepared, tmp_path, attempted_only_metrics):
    """Every record is scored as the served model scores it (probability and each modality's weight), its row
    carries its ids, position and timestamp (two impressions of one item in one request are told apart), bad
    records are dead-lettered, and the counts are exact on a runner that reports no committed metrics."""
    _, data, schema = prepared
    records = _records(data, schema)
    again = tf.train.Example.FromString(records[0])  # the same item in the same request, at another slot
    again.features.feature["position"].int64_list.value[:] = [_feature(records[0], "position") + 7]
    records.append(again.SerializeToString())
    n = len(records)
    broken = [b"not an example", tf.train.Example().SerializeToString()]  # garbage; no candidate item id
    _write(tmp_path / "in.tfrecord", records[:n // 2] + broken + records[n // 2:])
    prefix = str(tmp_path / "out" / "scores")
    counts = batch_scoring.run(exported[0].path, str(tmp_path / "in.tfrecord"), prefix, batch_size=64)
    assert counts == {"read": n + 2, "scored": n, "dead_lettered": 2,
                      "dead_letters": {"invalid_record": 2, "inference_failed": 0}, "balanced": True}
    assert json.loads(open(f"{prefix}-counts.json").read()) == counts
    letters = _jsonl(f"{prefix}-dead_letter-*.jsonl")
    assert sorted(letter["reason"] for letter in letters) == ["invalid_record"] * 2
    assert any("'item_id' is required" in letter["detail"] for letter in letters)

    served = loaded.signatures["serving_default"](examples=tf.constant(records))
    modalities = read_info(exported[0].path)["modalities"]
    rows = {tuple(r[c] for c in ID_COLUMNS): r for r in _jsonl(f"{prefix}-0*.jsonl")}
    assert len(rows) == n
    for i, record in enumerate(records):
        row = rows[tuple(_feature(record, c) for c in ID_COLUMNS)]
        assert row["probability"] == pytest.approx(float(served["probability"][i]), abs=1e-6)
        np.testing.assert_allclose([row[f"weight_{m}"] for m in modalities], served["modality_weights"][i], atol=1e-6)
    same_item = [r for r in rows.values() if (r["request_id"], r["item_id"]) == (_feature(records[0], "request_id"),
                                                                                 _feature(records[0], "item_id"))]
    assert len({r["position"] for r in same_item}) == 2


@integration
def test_scores_parquet_to_parquet_with_each_rows_ids(exported, prepared, tmp_path):
    """Parquet in, Parquet out: each output row carries the ids, position, timestamp and label of its input row."""
    _, data, schema = prepared
    batches = make_dataset(data, schema, "validation", 64, shuffle=False, drop_remainder=False)
    write_parquet_split(str(tmp_path / "pq"), "validation", batches, schema)
    prefix = str(tmp_path / "out" / "scores")
    counts = batch_scoring.run(exported[0].path, str(tmp_path / "pq" / "validation" / "*.parquet"), prefix,
                               input_format="parquet", output_format="parquet")
    table = pq.ParquetDataset(glob.glob(f"{prefix}-0*.parquet")).read()
    assert counts["read"] == counts["scored"] == table.num_rows > 0 and counts["dead_lettered"] == 0
    probabilities = np.array(table.column("probability").to_pylist())
    assert np.all((probabilities > 0) & (probabilities < 1))
    given = pq.read_table(str(tmp_path / "pq" / "validation" / "part-00000.parquet"), columns=list(ID_COLUMNS))
    assert sorted(zip(*(table.column(c).to_pylist() for c in ID_COLUMNS))) \
        == sorted(zip(*(given.column(c).to_pylist() for c in ID_COLUMNS)))
    assert all(request_id for request_id in table.column("request_id").to_pylist())


@integration
def test_no_input_is_a_clear_error(exported, tmp_path):
    with pytest.raises(ConfigError, match="no input files match"):
        batch_scoring.run(exported[0].path, str(tmp_path / "nothing-*.tfrecord"), str(tmp_path / "out"))


@integration
def test_a_record_the_model_refuses_is_dead_lettered_alone_with_a_short_reason(exported, prepared, tmp_path):
    _, data, schema = prepared
    good = _records(data, schema)[:20]
    refused = tf.train.Example.FromString(good[0])  # well-formed, but it claims behaviours it does not give
    del refused.features.feature["hist_item_id"].bytes_list.value[:]
    refused.features.feature["hist_item_id"].bytes_list.value.extend([b""] * schema.sequence_length)
    refused.features.feature["hist_length"].int64_list.value[:] = [3]
    _write(tmp_path / "in.tfrecord", good[:10] + [refused.SerializeToString()] + good[10:])
    prefix = str(tmp_path / "out" / "scores")
    counts = batch_scoring.run(exported[0].path, str(tmp_path / "in.tfrecord"), prefix,
                               batch_size=64)  # all 21 records in one batch
    assert counts["scored"] == 20 and counts["dead_letters"]["inference_failed"] == 1 and counts["balanced"]
    (letter,) = _jsonl(f"{prefix}-dead_letter-*.jsonl")
    assert letter["reason"] == "inference_failed" and "hist_length must not exceed" in letter["detail"]
    assert len(letter["detail"]) < 300 and "Traceback" not in letter["detail"]
    assert tf.train.Example.FromString(bytes.fromhex(letter["record"])) == refused  # the record, to fix and replay


def test_the_count_check_fails_when_the_counts_do_not_add_up():
    """read = written + dead-lettered (+ folded): counts that disagree fail the check, counts that agree pass."""
    reasons = (batch_scoring.INVALID_RECORD, batch_scoring.INFERENCE_FAILED)
    agree = job_outputs.tally({"read": 10, "scored": 7, "dead_letter:invalid_record": 3}, "scored", reasons)
    assert agree["balanced"] and agree["dead_letters"] == {"invalid_record": 3, "inference_failed": 0}
    job_outputs.check_counts(agree, "scored")
    for data in ({"read": 10, "scored": 7, "dead_letter:invalid_record": 2},  # a record lost
                 {"read": 10, "scored": 8, "dead_letter:inference_failed": 3},  # one counted twice
                 {"scored": 1}):  # nothing counted as read
        disagree = job_outputs.tally(data, "scored", reasons)
        assert not disagree["balanced"]
        with pytest.raises(RuntimeError, match="records lost or counted twice"):
            job_outputs.check_counts(disagree, "scored")
    folded = {"read": 5, "embedded": 3, "duplicate_item_ids": 1, "dead_letter:unknown_item_id": 1}
    job_outputs.check_counts(job_outputs.tally(folded, "embedded", (), ("duplicate_item_ids",)), "embedded",
                               ("duplicate_item_ids",))
    with pytest.raises(RuntimeError):
        job_outputs.check_counts(job_outputs.tally(folded, "embedded", ()), "embedded")


@integration
def test_a_failed_batchs_dead_letters_read_the_exception_message():
    """A batch that fails outside the model's checks: each record's dead letter says `Type: message`, from what
    Beam's exception handling passes on (type, repr, traceback), not the repr of that tuple."""
    def fail(batch):
        raise RuntimeError("the model could not be loaded: out of memory\nsecond line")

    with beam.Pipeline(options=pipeline_options([], 1)) as pipeline:
        batches = pipeline | beam.Create([[({"item_id": "a"}, b"x"), ({"item_id": "b"}, b"y")]])
        _, failed = batches | beam.Map(fail).with_exception_handling()
        letters = failed | beam.FlatMap(batch_scoring.failed_batch_letters)
        assert_that(letters, equal_to([
            {"reason": "inference_failed", "detail": "RuntimeError: the model could not be loaded: out of memory",
             "record": json.dumps({"item_id": item})} for item in "ab"]))


@integration
@pytest.mark.parametrize("marked", [False, True])
def test_files_marn_score_did_not_write_are_refused_and_left_alone(exported, prepared, tmp_path, marked):
    """An output directory holding files marn score did not write (no marker; or, in a directory it marked, files
    that `<output>-*` would read) is refused before any work, naming the files, and nothing there changes."""
    _, data, schema = prepared
    _write(tmp_path / "in.tfrecord", _records(data, schema)[:3])
    out = tmp_path / "out"
    out.mkdir()
    if marked:
        ownership.claim(str(out), ownership.SCORE, "marn score")
    theirs = out / ("scores-00000-of-00001.jsonl.bak" if marked else "scores-00000-of-00001.jsonl")
    theirs.write_text("someone's scores\n")
    before = sorted(os.listdir(out))
    with pytest.raises(OwnershipError, match=theirs.name):
        batch_scoring.run(exported[0].path, str(tmp_path / "in.tfrecord"), str(out / "scores"))
    assert sorted(os.listdir(out)) == before and theirs.read_text() == "someone's scores\n"


@integration
def test_a_rerun_with_fewer_shards_leaves_no_stale_shard(exported, prepared, tmp_path, capsys):
    """Run again on the same prefix with fewer shards (from the command line): `<output>-*` holds that run's files
    only; the files of another prefix in the same directory stay."""
    _, data, schema = prepared
    _write(tmp_path / "in.tfrecord", _records(data, schema)[:6])
    out = tmp_path / "out"
    first = batch_scoring.run(exported[0].path, str(tmp_path / "in.tfrecord"), str(out / "scores"), num_shards=3)
    assert len(glob.glob(str(out / "scores-0*.jsonl"))) == 3 and first["scored"] == 6
    (out / "other-00000-of-00001.jsonl").write_text("{}\n")  # another prefix's scores
    others = sorted(glob.glob(str(out / "other-*")))
    assert main(["score", "--model", exported[0].path, "--input", str(tmp_path / "in.tfrecord"), "--output",
                 str(out / "scores"), "--num-shards", "1"]) == 0
    assert "read 6 records: 6 scored, 0 dead-lettered" in capsys.readouterr().out
    assert sorted(os.path.basename(p) for p in glob.glob(str(out / "scores-*"))) == [
        "scores-00000-of-00001.jsonl", "scores-counts.json", "scores-dead_letter-00000-of-00001.jsonl"]
    assert len(_jsonl(str(out / "scores-0*.jsonl"))) == 6
    assert sorted(glob.glob(str(out / "other-*"))) == others


@pytest.mark.parametrize("size", ["0", "-1"])
def test_a_batch_size_below_one_is_a_usage_error_naming_the_flag(tmp_path, capsys, size):
    """--batch-size 0 or less exits 2 naming the flag before any work; the library refuses it as well."""
    with pytest.raises(SystemExit) as exit_:
        main(["score", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "in"), "--output",
              str(tmp_path / "out" / "scores"), "--batch-size", size])
    assert exit_.value.code == 2
    assert f"argument --batch-size: {size} is too small: give 1 or more" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=rf"--batch-size must be 1 or more .*, got {size}"):
        batch_scoring.run(str(tmp_path / "m"), str(tmp_path / "in"), str(tmp_path / "out" / "scores"),
                          batch_size=int(size))
    assert not (tmp_path / "out").exists()


@integration
def test_a_score_that_scored_nothing_exits_1_with_the_first_dead_letter_reasons(exported, tmp_path, capsys):
    """Every record dead-lettered, or no record read: the counts are written, and `marn score` exits 1 saying so,
    with the first dead letters' reasons, so that a scheduler does not take the empty output for a result."""
    _write(tmp_path / "bad.tfrecord", [b"not an example", b"\x00\x01"])
    out = str(tmp_path / "out" / "scores")
    assert main(["score", "--model", exported[0].path, "--input", str(tmp_path / "bad.tfrecord"), "--output", out]) == 1
    captured = capsys.readouterr()
    assert "read 2 records: 0 scored, 2 dead-lettered" in captured.out
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("error: none of the 2 records read was scored: 2 dead-lettered, the first reasons: "
                            "invalid_record: "), error
    assert f"(every one in {out}-dead_letter-*.jsonl)" in error
    assert json.load(open(f"{out}-counts.json"))["dead_lettered"] == 2
    _write(tmp_path / "empty.tfrecord", [])
    assert main(["score", "--model", exported[0].path, "--input", str(tmp_path / "empty.tfrecord"), "--output",
                 out]) == 1
    assert "error: read no records, so none was scored: the input files are empty" in capsys.readouterr().err
