"""The Beam job end to end on the local runner: every input format, dead letters, outputs that parse."""
import csv
import glob
import gzip
import io
import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marn_tf.config_loader import ConfigError
from marn_tf.schema import Schema, read_vocabulary
from marn_tf.pipelines import preprocess
from marn_tf.pipelines import records as R

pytestmark = pytest.mark.integration

T0 = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400
EVENT_COLUMNS = ["user_id", "item_id", "timestamp", "event_type", "clicked", "request_id", "position", "query"]
ITEM_COLUMNS = ["item_id", "shop_id", "brand_id", "category_id", "image_embedding", "title", "sales_count"]


def ev(user, item, t, kind, clicked=None, request=None, position=None, query=None):
    return dict(user_id=user, item_id=item, timestamp=t, event_type=kind, clicked=clicked, request_id=request,
                position=position, query=query)


GOOD_EVENTS = [
    ev("u1", "i1", T0 + 100, "impression", 1, "r1", 1, "dress"),
    ev("u1", "i2", T0 + 100, "impression", 0, "r1", 2, "dress"),
    ev("u1", "i1", T0 + 100, "click"),
    ev("u1", "i1", T0 + 200, "cart"),
    ev("u1", "i2", T0 + DAY + 10, "impression", 0, "r2", 1),
    ev("u1", "i1", T0 + DAY + 20, "purchase"),
    ev("u1", "i3", T0 + DAY + 20, "impression", 1, "r3", 1),
    ev("u1", "i3", T0 + DAY + 30, "click"),
    ev("u1", "i1", T0 + 2 * DAY + 5, "impression", 0, "r4", 1, "dress"),
    ev("u1", "i3", T0 + 3 * DAY, "impression", 1, "r5", 1),
    ev("u2", "i1", T0 + 500, "impression", 0, "r6", 3, "dress"),
    ev("u2", "i4", T0 + 600, "impression", 1, "r6", 4, "dress"),
]
BAD_EVENTS = [  # (record, reason)
    (ev(None, "i1", T0, "impression", 0), R.MISSING_FIELD),
    (ev("u2", "i1", "not a time", "impression", 0), R.BAD_TIMESTAMP),
    (ev("u2", "i1", T0, "hover", 0), R.BAD_VALUE),
    (ev("u2", "i9", T0 + 50, "impression", 0, "r9", 1), R.UNKNOWN_ITEM),
    (GOOD_EVENTS[1], R.DUPLICATE),
]
GOOD_ITEMS = [
    dict(item_id="i1", shop_id="s1", brand_id="b1", category_id="c1", image_embedding=[0.1, 0.2, 0.3],
         title="Red silk dress", sales_count=10),
    dict(item_id="i2", shop_id="s1", brand_id="b2", category_id="c1", image_embedding=None,
         title="Blue dress", sales_count=0),
    dict(item_id="i3", shop_id="s2", brand_id="b2", category_id="c2", image_embedding=[1.0, 0.0, -1.0],
         title=None, sales_count=None),
    dict(item_id="i4", shop_id="s2", brand_id="b1", category_id="c2", image_embedding=[0.0, 0.5, 0.5],
         title="phone charger", sales_count=3),
    dict(item_id="i5", shop_id="s3", brand_id="b3", category_id="c3", image_embedding=[0.5, 0.5, 0.5],
         title="cold new item", sales_count=1),  # never shown: a cold item, still in the item table
]
BAD_ITEMS = [(dict(GOOD_ITEMS[0], title="Red silk dress, again"), R.DUPLICATE)]
# Kept, each with one optional field marked missing (and a dead letter naming it): (item, field, reason).
PARTLY_BAD_ITEMS = [
    (dict(GOOD_ITEMS[0], item_id="i6", image_embedding=[0.1, 0.2]), "image_embedding", R.BAD_VECTOR_LENGTH),
    (dict(GOOD_ITEMS[0], item_id="i7", image_embedding=[0.1, math.nan, 0.3]), "image_embedding", R.NON_FINITE),
    (dict(GOOD_ITEMS[0], item_id="i8", sales_count=-2), "sales_count", R.NEGATIVE_COUNT),
]
GOOD_USERS = [dict(user_id="u1", gender="f"), dict(user_id="u2", gender="m")]
BAD_USERS = [(dict(user_id=None, gender="f"), R.MISSING_FIELD), (dict(user_id="u1", gender="m"), R.DUPLICATE)]
TEXT_ONLY_BAD_EVENT_LINES = [(b'{"user_id": "u1", "item_id": ', R.MALFORMED, b'u1,"i1,'),
                             (b'{"user_id": "u\xff1"}', R.BAD_UTF8, b"u\xff1,i1,1,impression,0,,,")]


def _csv_value(v):
    return " ".join(str(x) for x in v) if isinstance(v, list) else ("" if v is None else v)


def write_table(path, rows, columns, fmt, raw_lines=()):
    """Rows in `fmt` (jsonl, jsonl.gz, csv, csv.gz, parquet); raw_lines are appended as they are."""
    if fmt == "parquet":
        types = {"timestamp": pa.int64(), "clicked": pa.int64(), "position": pa.int64(), "sales_count": pa.int64(),
                 "image_embedding": pa.list_(pa.float64())}
        # A bad timestamp cannot be stored in an int column: Parquet logs keep it as a string column.
        if any(isinstance(r.get("timestamp"), str) for r in rows):
            types["timestamp"] = pa.string()
            rows = [dict(r, timestamp=str(r["timestamp"])) for r in rows]
        schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
        return
    buf = io.BytesIO()
    if fmt.startswith("jsonl"):
        for r in rows:
            buf.write(json.dumps(r).encode() + b"\n")
    else:
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_csv_value(r.get(c)) for c in columns])
        buf.write(text.getvalue().encode())
    for line in raw_lines:
        buf.write(line + b"\n")
    buf.write(b"\n")  # a blank line is not a record
    data = buf.getvalue()
    with (gzip.open(path, "wb") if fmt.endswith(".gz") else open(path, "wb")) as f:
        f.write(data)


def make_dataset(tmp_path, make_config, fmt, **config_sections):
    ext = {"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "csv": ".csv", "csv.gz": ".csv.gz", "parquet": ".parquet"}[fmt]
    text = fmt != "parquet"
    raw_lines = [(line if fmt.startswith("jsonl") else csv_line) for line, _, csv_line in TEXT_ONLY_BAD_EVENT_LINES]
    write_table(tmp_path / f"events{ext}", GOOD_EVENTS + [r for r, _ in BAD_EVENTS], EVENT_COLUMNS, fmt,
                raw_lines if text else ())
    write_table(tmp_path / f"items{ext}", GOOD_ITEMS + [r for r, _, _ in PARTLY_BAD_ITEMS] + [r for r, _ in BAD_ITEMS],
                ITEM_COLUMNS, fmt)
    write_table(tmp_path / f"users{ext}", GOOD_USERS + [r for r, _ in BAD_USERS], ["user_id", "gender"], fmt)
    expected_dead = {"events": {}, "items": {}, "users": {}}
    for source, bad in (("events", BAD_EVENTS), ("items", BAD_ITEMS), ("users", BAD_USERS)):
        for _, reason in bad:
            expected_dead[source][reason] = expected_dead[source].get(reason, 0) + 1
    if text:
        for _, reason, _ in TEXT_ONLY_BAD_EVENT_LINES:
            expected_dead["events"][reason] = expected_dead["events"].get(reason, 0) + 1
    sections = {"inputs": {"events": {"path": str(tmp_path / f"events{ext}")},
                           "items": {"path": str(tmp_path / f"items{ext}")},
                           "users": {"path": str(tmp_path / f"users{ext}")}},
                "users": {"features": ["gender"]},
                "pipeline": {"max_dead_letter_rate": 1.0, "num_shards": 1}}  # this data is mostly bad on purpose
    sections.update(config_sections)
    return make_config(**sections), expected_dead


def parse_split(out, schema, split):
    import tensorflow as tf

    files = sorted(glob.glob(str(out / schema.splits[split])))
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda x: tf.io.parse_single_example(x, schema.parse_spec()))
    return [{k: v.numpy() for k, v in ex.items()} for ex in ds]


@pytest.mark.parametrize("fmt", ["jsonl", "csv.gz", "parquet"])
def test_every_format_end_to_end(tmp_path, make_config, fmt):
    config, expected_dead = make_dataset(tmp_path, make_config, fmt)
    out = tmp_path / "out"
    report = preprocess.run(config, str(out))

    # Records in = accepted + dead-lettered, with the exact reasons.
    sources = report["sources"]
    assert {s: v["dead_letter_reasons"] for s, v in sources.items()} == expected_dead
    assert sources["events"]["accepted"] == len(GOOD_EVENTS)
    assert sources["items"]["accepted"] == len(GOOD_ITEMS) + len(PARTLY_BAD_ITEMS)
    assert sources["items"]["kept_without_field"] == {"image_embedding": {R.BAD_VECTOR_LENGTH: 1, R.NON_FINITE: 1},
                                                      "sales_count": {R.NEGATIVE_COUNT: 1}}
    assert sources["users"]["accepted"] == len(GOOD_USERS)
    assert all(v["balanced"] for v in sources.values())
    dead = [json.loads(line) for f in glob.glob(str(out / "dead_letter" / "*.jsonl.gz"))
            for line in gzip.open(f).read().decode().splitlines()]
    assert sum(sum(v.values()) for v in expected_dead.values()) + len(PARTLY_BAD_ITEMS) == len(dead)
    assert all(d["reason"] in R.REASONS and d["detail"] and d["record"] for d in dead)

    # The schema round-trips and the TFRecords parse with it.
    schema = Schema.load(str(out))
    assert Schema.from_dict(json.loads((out / "schema.json").read_text())) == schema
    train, validation, test = (parse_split(out, schema, s) for s in ("train", "validation", "test"))
    assert (len(train), len(validation), len(test)) == (6, 1, 1)
    assert report["splits"]["train"]["positives"] == 3
    (e,) = validation
    assert [x.decode() for x in e["hist_item_id"]] == ["i1", "i1", "i3"]  # cart, purchase, click: last 3
    assert list(e["hist_event_type"]) == [2, 3, 1] and e["hist_length"] == 3
    assert (e["user_id"], e["user_gender"], e["context_query"]) == (b"u1", b"f", b"dress")
    assert (e["item_stat_impressions"], e["item_stat_clicks"]) == (2, 2)  # i1 on day 0: u1 and u2
    # Click rates (clicks + 20 p0) / (impressions + 20); before day 3 all items had 7 impressions, 3 clicks:
    # p0 = 4/9. i3 had 1 impression, 1 click (day 1); u1 5 impressions, 2 clicks (days 0-2).
    (t,) = test
    assert t["item_ctr"] == pytest.approx((1 + 20 * 4 / 9) / 21, rel=1e-6)
    assert t["user_ctr"] == pytest.approx((2 + 20 * 4 / 9) / 25, rel=1e-6)
    written = {f["name"]: f for f in json.loads((out / "schema.json").read_text())["features"]}
    assert {n: (written[n]["dtype"], written[n]["tags"]) for n in ("item_ctr", "user_ctr")} == {
        "item_ctr": ("float32", ["candidate", "statistic", "rate"]), "user_ctr": ("float32", ["user", "rate"])}

    # Vocabularies from the training window; every catalog item (cold i5-i8 too) has an item table row.
    items = read_vocabulary(str(out / "vocab" / "item_id.txt"))
    assert sorted(items) == [f"i{i}" for i in range(1, 9)] and sorted(items[-4:]) == ["i5", "i6", "i7", "i8"]
    assert schema.item_table.num_with_id_embedding == 4  # min_count 1: all but the cold item
    table = pq.ParquetDataset(str(out / "item_table")).read().to_pylist()
    by_id = {row["item_id"]: row for row in table}
    assert sorted(by_id) == sorted(items)
    assert all(row["item_index"] == items.index(item) + 1 for item, row in by_id.items())
    words = read_vocabulary(str(out / "vocab" / "title_word.txt"))
    assert [words[t - 1] for t in by_id["i1"]["title_tokens"][:3]] == ["red", "silk", "dress"]
    assert by_id["i5"]["title_tokens"][:3] == [0, 0, 0] and by_id["i5"]["title_length"] == 3  # words unseen
    assert (by_id["i2"]["has_image"], by_id["i2"]["image"]) == (0, [0.0, 0.0, 0.0])
    assert by_id["i3"]["title_length"] == 0
    shops = read_vocabulary(str(out / "vocab" / "shop_id.txt"))
    assert sorted(shops) == ["s1", "s2"] and by_id["i5"]["shop_id"] == 0  # s3 only on a cold item: OOV
    assert schema.vocabularies["item_id"].size == 8 and schema.vocabularies["shop_id"].input_dim == 3
    assert [by_id[i]["has_image"] for i in ("i6", "i7", "i8")] == [0, 0, 1]  # a bad image is missing, the item kept


def test_dead_letter_threshold_fails_the_job_after_writing(tmp_path, make_config):
    config, _ = make_dataset(tmp_path, make_config, "jsonl", pipeline={"max_dead_letter_rate": 0.2, "num_shards": 1})
    out = tmp_path / "out"
    with pytest.raises(preprocess.PreprocessError, match=r"events: 36\.84%.*users: 50\.00%"):
        preprocess.run(config, str(out))
    assert "FAILED" in (out / "report.md").read_text()
    assert glob.glob(str(out / "dead_letter" / "*.jsonl.gz"))


def test_bad_paths_and_existing_output_fail_early(tmp_path, make_config):
    config, _ = make_dataset(tmp_path, make_config, "jsonl", inputs={
        "events": {"path": str(tmp_path / "nothing-*.jsonl")}, "items": {"path": str(tmp_path / "items.jsonl")}})
    with pytest.raises(ConfigError, match="inputs.events.path .* matches no file"):
        preprocess.run(config, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()  # the inputs are checked before the output is made
    valid, _ = make_dataset(tmp_path, make_config, "jsonl")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    for overwrite in (False, True):  # not written by marn preprocess: refused, --overwrite or not
        with pytest.raises(ConfigError, match="--overwrite"):
            preprocess.run(valid, str(tmp_path / "busy"), overwrite=overwrite)
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]


def test_sequences_and_statistics_match_a_brute_force_recount(tmp_path):
    """Every example of a generated dataset against an independent recount from the raw events."""
    import collections

    from marn_tf.config import Config
    from marn_tf.pipelines.item_statistics import ctr_bucket, log2_bucket
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate

    raw = tmp_path / "raw"
    generate(GeneratorOptions(output=str(raw), users=40, items=300, days=8, image_dim=4, bad_record_rate=0.0),
             progress=False)
    config = Config.load(str(raw / "config.yaml"), ["sequence.max_length=5", "pipeline.num_shards=1"])
    preprocess.run(config, str(tmp_path / "out"))
    schema = Schema.load(str(tmp_path / "out"))
    examples = [e for s in ("train", "validation", "test") for e in parse_split(tmp_path / "out", schema, s)]

    events = [json.loads(line) for f in sorted((raw / "events").iterdir()) for line in gzip.open(f)]
    behaviour_rank = {t: i for i, t in enumerate(config.events.behaviour_types)}
    by_user, shown = collections.defaultdict(list), collections.Counter()
    clicked, user_impressions = collections.Counter(), collections.defaultdict(list)
    user_click_times = collections.defaultdict(list)
    for e in events:
        if e["event_type"] in behaviour_rank:
            by_user[e["user_id"]].append((e["timestamp"], behaviour_rank[e["event_type"]], e["item_id"]))
            if e["event_type"] == "click":  # the generator logs one click event per clicked impression
                user_click_times[e["user_id"]].append(e["timestamp"])
        else:
            shown[(e["item_id"], e["timestamp"] // 86400)] += 1
            clicked[(e["item_id"], e["timestamp"] // 86400)] += e["clicked"]
            user_impressions[e["user_id"]].append((e["timestamp"], e["clicked"]))
    assert len(examples) > 1000
    nb = config.statistics.num_buckets
    for ex in examples:
        t, user, item = int(ex["timestamp"]), ex["user_id"].decode(), ex["item_id"].decode()
        earlier = sorted(b for b in by_user[user] if b[0] < t)[-5:]
        assert [x.decode() for x in ex["hist_item_id"][: len(earlier)]] == [b[2] for b in earlier]
        assert list(ex["hist_event_type"][: len(earlier)]) == [b[1] + 1 for b in earlier]
        assert ex["hist_length"] == len(earlier)
        day = t // 86400
        n = sum(v for (i, d), v in shown.items() if i == item and d < day)
        c = sum(v for (i, d), v in clicked.items() if i == item and d < day)
        expected = (log2_bucket(n, nb), log2_bucket(c, nb), ctr_bucket(n, c, nb)) if n else (0, 0, 0)
        assert (ex["item_stat_impressions"], ex["item_stat_clicks"], ex["item_stat_ctr"]) == expected
        p0 = (sum(v for (_, d), v in clicked.items() if d < day) + 1) / (
            sum(v for (_, d), v in shown.items() if d < day) + 2)
        assert ex["item_ctr"] == pytest.approx((c + 20 * p0) / (n + 20), rel=1e-6)
        # user_ctr by its definition: impressions shown, and clicks that happened, strictly before t
        shown_before = sum(1 for time, _ in user_impressions[user] if time < t)
        clicks_before = sum(1 for time in user_click_times[user] if time < t)
        assert ex["user_ctr"] == pytest.approx((clicks_before + 20 * p0) / (shown_before + 20), rel=1e-6)
