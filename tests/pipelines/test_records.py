"""Record parsing and validation: every dead-letter reason, and what good records become."""
import math

import pytest

from marn_tf.pipelines import records as R


def event_line(**overrides) -> bytes:
    import json

    record = {"user_id": "u1", "item_id": "i1", "timestamp": 1767225600, "event_type": "impression", "clicked": 1,
              "request_id": "r1", "position": 2, "query": "dress"}
    record.update(overrides)
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


def parse_event(make_config, payload, header=None):
    return R.parse_event(R.parse_raw(R.RawRecord(payload, "f", header)), make_config())


def rejected_reason(fn, *args) -> str:
    with pytest.raises(R.Rejected) as err:
        fn(*args)
    return err.value.reason


def test_good_json_event(make_config):
    e = parse_event(make_config, event_line())
    assert e == R.Event("u1", "i1", 1767225600, "impression", 1, "r1", 2, ("dress",))


def test_csv_event_and_iso_timestamp(make_config):
    header = ["user_id", "item_id", "timestamp", "event_type", "clicked", "request_id", "position", "query"]
    e = parse_event(make_config, b'u1,i1,2026-01-01T00:00:00Z,impression,0,,,"red, pink"', header)
    assert e == R.Event("u1", "i1", 1767225600, "impression", 0, "", 0, ("red, pink",))


def test_naive_iso_timestamp_is_utc():
    assert R.timestamp_seconds("2026-01-01 00:00:00", "t") == R.timestamp_seconds("2026-01-01T00:00:00+00:00", "t")


def test_behaviour_event_needs_no_clicked(make_config):
    e = parse_event(make_config, event_line(event_type="cart", clicked=..., request_id=..., position=...))
    assert (e.event_type, e.clicked, e.request_id, e.position) == ("cart", 0, "", 0)


@pytest.mark.parametrize("payload,reason", [
    (b'{"user_id": "u1", "item_id": ', R.MALFORMED),
    (b'["not", "an", "object"]', R.MALFORMED),
    (b'{"user_id": "u\xff"}', R.BAD_UTF8),
    (event_line(user_id=None), R.MISSING_FIELD),
    (event_line(item_id="  "), R.MISSING_FIELD),
    (event_line(clicked=...), R.MISSING_FIELD),
    (event_line(timestamp="last tuesday"), R.BAD_TIMESTAMP),
    (event_line(timestamp=-5), R.BAD_TIMESTAMP),
    (event_line(clicked=2), R.BAD_VALUE),
    (event_line(event_type="hover"), R.BAD_VALUE),
    (event_line(position=0), R.BAD_VALUE),
    (event_line(user_id="u\n1"), R.BAD_VALUE),
    (event_line(item_id=["i1"]), R.BAD_VALUE),
])
def test_bad_events_are_rejected_with_reason(make_config, payload, reason):
    assert rejected_reason(parse_event, make_config, payload) == reason


def test_csv_with_wrong_field_count_is_malformed(make_config):
    header = ["user_id", "item_id", "timestamp", "event_type", "clicked"]
    assert rejected_reason(parse_event, make_config, b"u1,i1,5", header) == R.MALFORMED
    assert rejected_reason(parse_event, make_config, b'u1,"i1,5,impression,1', header) == R.MALFORMED


def item(make_config, **fields):
    record = {"item_id": "i1", "shop_id": "s1", "brand_id": "b1", "category_id": "c1",
              "image_embedding": [0.5, 1.0, -2.0], "title": "Red Silk dress 2026", "sales_count": 3}
    record.update(fields)
    return R.parse_item(record, make_config())


def test_good_item_and_missing_content(make_config):
    it = item(make_config)
    assert it == R.Item("i1", ("s1", "b1", "c1"), (0.5, 1.0, -2.0), "Red Silk dress 2026", (3,))
    empty = item(make_config, image_embedding=None, title="  ", sales_count=None, brand_id=None)
    assert (empty.image, empty.title, empty.statistics, empty.id_values) == (None, None, (-1,), ("s1", "", "c1"))
    assert item(make_config, image_embedding="0.5 1 -2").image == (0.5, 1.0, -2.0)  # CSV form


@pytest.mark.parametrize("fields,field,reason", [
    ({"image_embedding": [1.0, 2.0]}, "image_embedding", R.BAD_VECTOR_LENGTH),
    ({"image_embedding": [1.0, math.nan, 2.0]}, "image_embedding", R.NON_FINITE),
    ({"image_embedding": "1 inf 2"}, "image_embedding", R.NON_FINITE),
    ({"image_embedding": "1 x 2"}, "image_embedding", R.BAD_VALUE),
    ({"image_embedding": [1.0, True, 2.0]}, "image_embedding", R.BAD_VALUE),  # bool is an int, not a number here
    ({"image_embedding": [1.0, "2.0", 3.0]}, "image_embedding", R.BAD_VALUE),
    ({"image_embedding": True}, "image_embedding", R.BAD_VALUE),
    ({"image_embedding": 7}, "image_embedding", R.BAD_VALUE),
    ({"sales_count": -4}, "sales_count", R.NEGATIVE_COUNT),
    ({"sales_count": "many"}, "sales_count", R.BAD_VALUE),
    ({"sales_count": math.inf}, "sales_count", R.NON_FINITE),
    ({"title": 17}, "title", R.BAD_VALUE),
    ({"brand_id": [1]}, "brand_id", R.BAD_VALUE),
])
def test_a_bad_optional_field_is_marked_missing_and_the_item_kept(make_config, fields, field, reason):
    """The item keeps its id and its other fields; the bad one is missing and named with its reason."""
    good, bad = item(make_config), item(make_config, **fields)
    assert bad.item_id == "i1" and [(f, r) for f, r, _ in bad.field_errors] == [(field, reason)]
    missing = {"image_embedding": ("image", None), "sales_count": ("statistics", (-1,)), "title": ("title", None),
               "brand_id": ("id_values", ("s1", "", "c1"))}[field]
    assert getattr(bad, missing[0]) == missing[1]
    kept = [name for name in ("image", "title", "statistics", "id_values") if name != missing[0]]
    assert [getattr(bad, name) for name in kept] == [getattr(good, name) for name in kept]


def test_an_item_without_its_id_is_rejected(make_config):
    assert rejected_reason(lambda: item(make_config, item_id=None)) == R.MISSING_FIELD


def test_title_words():
    assert R.title_words("Red SILK-dress, 2026 ÉtÉ", 10) == ["red", "silk", "dress", "2026", "été"]
    assert R.title_words("a b c", 2) == ["a", "b"]
    assert R.title_words(None, 3) == []


def test_dead_letter_json_keeps_the_record():
    import json

    d = R.DeadLetter("events", R.BAD_UTF8, "not valid UTF-8 at byte 3", "u\ufffd", "gs://b/f.jsonl")
    assert json.loads(d.to_json()) == {"source": "events", "reason": "bad_utf8", "detail": "not valid UTF-8 at byte 3",
                                       "record": "u\ufffd", "file": "gs://b/f.jsonl", "field": ""}
