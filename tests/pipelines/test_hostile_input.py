"""Hostile and broken input through the real `marn preprocess`: no record and no file stops the job.

Each record is accepted or dead-lettered with its reason (records in = accepted + dead-lettered); a file
that cannot be read to its end dead-letters the rest with the file and place named, or, past the
dead-letter threshold, fails the job with one line naming them.
"""
import glob
import gzip
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from marn_tf import cli
from marn_tf.schema import Schema
from marn_tf.pipelines import records as R
from tests.pipelines.test_preprocess import parse_split

pytestmark = pytest.mark.integration

T0 = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400


def good_events(users: range) -> list[dict]:
    return [dict(user_id=f"u{u}", item_id=f"i{(u + k) % 5}", timestamp=T0 + k * DAY // 2 + u, event_type="impression",
                 clicked=(u + k) % 2, request_id=f"r{u}-{k}", position=1) for u in users for k in range(8)]


def jsonl(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


HOSTILE_EVENT_LINES = [  # (line, reason)
    (b'{"user_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", R.MALFORMED),  # RecursionError in json
    (b'{"user_id": "u1", "item_id": "i1", "timestamp": ' + b"9" * 5000 + b', "event_type": "impression"}',
     R.MALFORMED),  # more digits than Python converts
    (json.dumps(dict(good_events(range(1))[0], timestamp=2**64)).encode(), R.BAD_TIMESTAMP),
    (json.dumps(dict(good_events(range(1))[0], timestamp=1e300)).encode(), R.BAD_TIMESTAMP),
    (json.dumps(dict(good_events(range(1))[0], position=2**63)).encode(), R.NON_FINITE),
    (json.dumps(dict(good_events(range(1))[0], clicked=10**400)).encode(), R.NON_FINITE),
]
ITEM_SCHEMA = pa.schema([("item_id", pa.string()), ("shop_id", pa.string()), ("brand_id", pa.string()),
                         ("category_id", pa.string()), ("image_embedding", pa.list_(pa.float64())),
                         ("title", pa.string()), ("sales_count", pa.float64())])


def item(i: int, **fields) -> dict:
    return {"item_id": f"i{i}", "shop_id": "s1", "brand_id": f"b{i % 2}", "category_id": "c1",
            "image_embedding": [0.1, 0.2, 0.3], "title": "red silk dress", "sales_count": float(i), **fields}


def hostile_dataset(tmp_path, max_dead_letter_rate: float) -> tuple[str, dict]:
    """Events in three gzip shards (one with hostile lines, one cut short, one not gzip at all) and items in two
    Parquet files (one with values float32 cannot hold, one cut short); returns the config and the expected reasons."""
    (tmp_path / "events").mkdir()
    (tmp_path / "items").mkdir()
    lines = jsonl(good_events(range(4))) + b"".join(line + b"\n" for line, _ in HOSTILE_EVENT_LINES)
    (tmp_path / "events" / "a.jsonl.gz").write_bytes(gzip.compress(lines))
    cut = gzip.compress(jsonl(good_events(range(4, 8))))
    (tmp_path / "events" / "b.jsonl.gz").write_bytes(cut[: len(cut) * 2 // 3])
    (tmp_path / "events" / "c.jsonl.gz").write_bytes(b"this is not gzip\n" * 10)  # read as the text it is

    items = [item(i) for i in range(5)] + [item(5, image_embedding=[1e39, 0.0, 0.0]), item(6, sales_count=1e39)]
    pq.write_table(pa.Table.from_pylist(items, schema=ITEM_SCHEMA), tmp_path / "items" / "a.parquet")
    whole_items = pa.Table.from_pylist([item(i) for i in range(7, 20)], schema=ITEM_SCHEMA)
    pq.write_table(whole_items, tmp_path / "whole.parquet")
    whole = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "items" / "b.parquet").write_bytes(whole[: len(whole) - 40])  # the footer is gone

    config = {"inputs": {"events": {"path": str(tmp_path / "events" / "*.jsonl.gz")},
                         "items": {"path": str(tmp_path / "items" / "*.parquet")}},
              "items": {"image_dim": 3, "statistics": ["sales_count"], "max_title_tokens": 4},
              "sequence": {"max_length": 3}, "vocabulary": {"min_count": 1},
              "split": {"train_end": "2026-01-03", "valid_end": "2026-01-04"},
              "pipeline": {"num_shards": 1, "max_dead_letter_rate": max_dead_letter_rate,
                           "max_file_dead_letter_rate": 1.0}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    events = {R.MALFORMED: 2 + 10, R.BAD_TIMESTAMP: 2, R.NON_FINITE: 2, R.UNREADABLE: 1}
    return str(tmp_path / "config.yaml"), {"events": events, "items": {R.UNREADABLE: 1}, "users": {}}


def preprocess(config: str, output) -> int:
    return cli.main(["preprocess", "--config", config, "--output", str(output), "--workers", "1"])


def test_no_record_or_file_stops_the_job(tmp_path):
    config, expected = hostile_dataset(tmp_path, max_dead_letter_rate=1.0)
    out = tmp_path / "out"
    assert preprocess(config, out) == 0

    report = json.loads((out / "report.json").read_text())
    assert {s: v["dead_letter_reasons"] for s, v in report["sources"].items()} == expected
    assert all(v["balanced"] for v in report["sources"].values())
    assert report["sources"]["items"]["accepted"] == 7  # a bad image or counter drops the field, not the item
    assert report["sources"]["items"]["kept_without_field"] == {"image_embedding": {R.NON_FINITE: 1},
                                                                 "sales_count": {R.NON_FINITE: 1}}
    where = {u["file"].rsplit("/", 1)[1]: u["where"] for u in report["unreadable_files"]}
    assert sorted(where) == ["b.jsonl.gz", "b.parquet"]
    assert where["b.parquet"] == "row 0"
    assert where["b.jsonl.gz"].startswith("line ") and where["b.jsonl.gz"] != "line 1 (byte 0 of its text)"
    dead = [json.loads(line) for f in glob.glob(str(out / "dead_letter" / "*.jsonl.gz"))
            for line in gzip.open(f).read().decode().splitlines()]
    unreadable = [d for d in dead if d["reason"] == R.UNREADABLE]
    assert all(d["file"] and d["file"] in d["detail"] and "cannot be read past" in d["detail"] for d in unreadable)
    assert all(len(d["detail"]) < 1000 for d in dead)

    # What was accepted fits its outputs: the item table's images are finite float32, the examples parse.
    table = pq.ParquetDataset(str(out / "item_table")).read().to_pylist()
    assert sorted(row["item_id"] for row in table) == [f"i{i}" for i in range(7)]
    assert [row["has_image"] for row in sorted(table, key=lambda r: r["item_id"])] == [1] * 5 + [0, 1]
    assert all(math.isfinite(x) for row in table for x in np.asarray(row["image"], dtype=np.float32))
    schema = Schema.load(str(out))
    assert sum(len(parse_split(out, schema, s)) for s in ("train", "validation", "test")) > 0


def test_past_the_threshold_an_unreadable_file_fails_the_job_in_one_line_naming_it(tmp_path, capsys):
    config, _ = hostile_dataset(tmp_path, max_dead_letter_rate=0.05)
    assert preprocess(config, tmp_path / "out") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    (error,) = errors
    assert "too many rejected records" in error
    assert "events/b.jsonl.gz cannot be read past line" in error
    assert f"{tmp_path}/items/b.parquet cannot be read past row 0" in error


def test_a_rerun_over_a_killed_jobs_output_is_refused_and_overwrite_leaves_no_stale_shard(tmp_path, capsys):
    """What a job killed mid-write leaves (its marker, shards, a Beam temp folder) is never mixed into a new output."""
    config, _ = hostile_dataset(tmp_path, max_dead_letter_rate=1.0)
    out = tmp_path / "out"
    assert preprocess(config, out) == 0
    stale = [out / "train" / "part-99999-of-99999.tfrecord.gz", out / "dead_letter" / "part-killed.jsonl.gz",
             out / "train" / "beam-temp-part-0123" / "shard.tfrecord.gz"]
    stale[2].parent.mkdir()
    for path in stale:
        path.write_bytes(gzip.compress(b'{"reason": "stale"}\n'))
    (out / "schema.json").unlink()  # killed before its end: no schema yet

    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert preprocess(config, out) == 2  # a re-run without --overwrite
    assert "is not empty; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before

    assert cli.main(["preprocess", "--config", config, "--output", str(out), "--workers", "1", "--overwrite"]) == 0
    assert not any(path.exists() for path in stale) and not list(out.rglob("beam-temp-*"))
    report = json.loads((out / "report.json").read_text())
    dead = [line for f in glob.glob(str(out / "dead_letter" / "*.jsonl.gz"))
            for line in gzip.open(f).read().splitlines()]
    rejected = [line for line in dead if not json.loads(line)["field"]]  # the others name a field of a kept item
    assert len(rejected) == sum(v["dead_lettered"] for v in report["sources"].values())  # counted once, not doubled
