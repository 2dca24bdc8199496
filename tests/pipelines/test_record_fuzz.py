"""Fuzzing the record parsers and readers (Hypothesis): whatever the bytes, every record is accepted or
dead-lettered with a reason, nothing raises, and records in = accepted + dead-lettered.

Accepted records also go through what the job does with them next (tf.Example encoding, the item
table's Parquet row), so a value the outputs cannot hold (beyond int64, beyond float32) fails here.
"""
import datetime as dt
import gzip
import io
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marn_tf.pipelines import example_schema as ES
from marn_tf.pipelines import records as R
from marn_tf.pipelines.item_statistics import CumulativeCounts
from marn_tf.pipelines.item_table import arrow_schema, item_row
from marn_tf.pipelines.transforms import COUNTS, DEAD, ITEMS, ReadAndParse
from marn_tf.pipelines.raw_io import InputFile
from marn_tf.example_codec import ExampleEncoder
from marn_tf.pipelines.user_history import build_examples

# Derandomized (the same examples every run, so CI cannot flake) and few: seconds, not minutes.
FUZZ = settings(max_examples=120, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FILE_FUZZ = settings(FUZZ, max_examples=40)

EVENT = {"user_id": "u1", "item_id": "i1", "timestamp": 1767225600, "event_type": "impression", "clicked": 1,
         "request_id": "r1", "position": 2, "query": "dress"}
ITEM = {"item_id": "i1", "shop_id": "s1", "brand_id": "b1", "category_id": "c1", "image_embedding": [0.5, 1.0, -2.0],
        "title": "Red silk dress", "sales_count": 3}
USER = {"user_id": "u1", "gender": "f"}
GOOD = {"events": EVENT, "items": ITEM, "users": USER}

# Values that broke or nearly broke the job: limits of int64 and float32, huge and deep values, odd text.
EDGE_NUMBERS = st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**400, 1e39, -1e39, 3.4028235e38,
                                1e308, math.inf, -math.inf, math.nan, 0.5, 1767225600, 1767225600000, 253402300800])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), EDGE_NUMBERS, st.floats(),
                    st.text(max_size=20), st.sampled_from(["", " ", "\ud800", "1e39", "9" * 400, "2026-01-01T00:00:00Z",
                                                           "99999-01-01", "NaN", "-0", "true", "u\n1"]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)
# A field replaced by anything, often a vector of three edge numbers (image_dim is 3).
FIELD_VALUES = st.one_of(JSON_VALUES, st.lists(st.one_of(EDGE_NUMBERS, st.floats()), min_size=3, max_size=3))
# Parquet rows also bring types JSON has not: bytes, datetimes, decimals.
ROW_VALUES = st.one_of(FIELD_VALUES, st.binary(max_size=10), st.datetimes(timezones=st.just(dt.timezone.utc)),
                       st.dates(), st.decimals(allow_nan=True), st.times())


@st.composite
def mutated(draw, base: st.SearchStrategy) -> bytes:
    """Bytes of `base` with a few random edits: bytes flipped, cut, inserted; or deeply nested."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "truncate", "nest"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del data[at:]
        elif kind == "nest":
            depth = draw(st.sampled_from([10, 1000, 100_000]))
            data[at:at] = b"[" * depth + b"]" * depth
    return bytes(data)


def json_line(source: str):
    """A record of `source` with some fields replaced by anything, as a JSON line (NaN, Infinity allowed)."""
    good = GOOD[source]
    return st.dictionaries(st.sampled_from(sorted(good)), FIELD_VALUES, max_size=4).map(
        lambda changes: json.dumps({**good, **changes}).encode())


def csv_line(source: str):
    return st.lists(st.one_of(st.text(max_size=12), st.sampled_from(["1e39", "9" * 400, "-1", '"', "a,b"])),
                    min_size=len(GOOD[source]), max_size=len(GOOD[source])).map(
        lambda fields: ",".join(fields).encode("utf-8", errors="surrogatepass"))


def raw_records(source: str):
    """(payload, csv header) pairs: mutated JSON and CSV lines, any bytes, Parquet-like rows."""
    header = tuple(GOOD[source])
    return st.one_of(
        json_line(source).map(lambda b: (b, None)),
        mutated(json_line(source)).map(lambda b: (b, None)),
        mutated(csv_line(source)).map(lambda b: (b, header)),
        st.binary(max_size=40).map(lambda b: (b, None)),
        st.dictionaries(st.sampled_from(header), ROW_VALUES, max_size=len(header)).map(
            lambda changes: ({**GOOD[source], **changes}, None)),
    )


def check_written_as_the_job_writes(record, source: str, config) -> None:
    """What the job does next with an accepted record; raises if its values do not fit the outputs."""
    if source == "events":
        shared, own = ES.split_by_sharing(ES.example_features(config))
        encoders = ExampleEncoder(shared), ExampleEncoder(own)
        for _, shared_values, own_values in build_examples(record.user_id, [record], None, {}.get,
                                                           CumulativeCounts.from_daily([]), config):
            if shared_values:
                encoders[0].encode(shared_values) + encoders[1].encode(own_values)
        assert 0 <= record.timestamp < R.MAX_TIMESTAMP
    elif source == "items":
        indices = {name: {} for name in ES.vocabulary_names(config)}
        indices[ES.ITEM_VOCAB] = {record.item_id: 1}
        pa.Table.from_pylist([item_row(record, indices, config)], schema=arrow_schema(config))
        assert np.all(np.isfinite(np.asarray(record.image or [], dtype=np.float32)))
        assert all(-1 <= s <= R.INT64_MAX for s in record.statistics)
    for text in (v for v in record if isinstance(v, str)):
        text.encode("utf-8")


def check_dead_letter(letter: R.DeadLetter, source: str) -> None:
    assert letter.source == source and letter.reason in R.REASONS and letter.detail
    assert len(letter.detail) < 1000  # a line of a report, not a dump of the record
    letter.to_json().encode("utf-8")  # the dead-letter file is UTF-8 JSON lines


@pytest.mark.parametrize("source", ["events", "items", "users"])
def test_any_record_is_accepted_or_dead_lettered(make_config, source):
    config = make_config(users={"features": ["gender"]})

    @FUZZ
    @given(raw=raw_records(source))
    def check(raw):
        payload, header = raw
        result = R.parse_record(R.RawRecord(payload, "fuzz.jsonl", header), source, config)
        if isinstance(result, R.DeadLetter):
            check_dead_letter(result, source)
        else:
            check_written_as_the_job_writes(result, source, config)

    check()


@pytest.mark.parametrize("source", ["events", "items", "users"])
def test_any_value_in_any_one_field_is_accepted_or_dead_lettered(make_config, source):
    """A good record with one field replaced by anything: as a JSON line, and as a Parquet row would give it."""
    config = make_config(users={"features": ["gender"]})

    @FUZZ
    @given(field=st.sampled_from(sorted(GOOD[source])), value=ROW_VALUES)
    def check(field, value):
        row = {**GOOD[source], field: value}
        try:
            payloads = [row, json.dumps(row).encode()]
        except (TypeError, ValueError):  # no JSON form (bytes, datetimes; an int past the digit limit)
            payloads = [row]
        for payload in payloads:
            result = R.parse_record(R.RawRecord(payload, "fuzz"), source, config)
            if isinstance(result, R.DeadLetter):
                check_dead_letter(result, source)
            else:
                check_written_as_the_job_writes(result, source, config)

    check()


def test_the_known_crashes_are_dead_letters_with_their_reason(make_config):
    config = make_config()

    def reason(source, payload):
        result = R.parse_record(R.RawRecord(payload, "f"), source, config)
        if isinstance(result, R.DeadLetter):
            return result.reason
        dropped = getattr(result, "field_errors", ())  # an item kept with a bad optional field marked missing
        return dropped[0][1] if dropped else "accepted"

    line = lambda **fields: json.dumps({**EVENT, **fields}).encode()  # noqa: E731
    assert reason("events", b'{"user_id": ' + b"[" * 100_000 + b"]" * 100_000 + b"}") == R.MALFORMED
    assert reason("events", line(timestamp=1)[:-1] + b', "x": ' + b"9" * 5000 + b"}") == R.MALFORMED
    assert reason("events", line(timestamp=2**64)) == R.BAD_TIMESTAMP
    assert reason("events", line(timestamp=1e300)) == R.BAD_TIMESTAMP
    assert reason("events", line(position=2**63)) == R.NON_FINITE
    assert reason("items", json.dumps({**ITEM, "image_embedding": [1e39, 0, 0]}).encode()) == R.NON_FINITE
    assert reason("items", json.dumps({**ITEM, "image_embedding": [10**400, 0, 0]}).encode()) == R.NON_FINITE
    assert reason("items", json.dumps({**ITEM, "sales_count": 1e39}).encode()) == R.NON_FINITE
    assert reason("items", json.dumps({**ITEM, "title": "\ud800"}).encode()) == R.BAD_VALUE
    assert reason("items", {**ITEM, "image_embedding": [3.4e38, -3.4e38, 0.0]}) == "accepted"


# ------------------------------------------------------------------------------------------ whole files, read

def file_bytes(fmt: str):
    """A file of good and hostile lines in `fmt`, then possibly cut anywhere or with bytes flipped."""
    lines = st.lists(st.one_of(json_line("events"), mutated(json_line("events"))), min_size=1, max_size=12)

    def encode(parts):
        text = b"\n".join(parts) + b"\n"
        if fmt == "json":  # a JSON array of the records, one a line
            text = b"[" + b",\n".join(parts) + b"]\n"
        if fmt == "csv":
            text = b",".join(k.encode() for k in EVENT) + b"\n" + text
        return gzip.compress(text) if fmt.endswith("gz") else text

    return mutated(lines.map(encode)) if fmt.endswith("gz") or fmt == "json" else lines.map(encode)


def parquet_bytes():
    """Parquet files of events with edge numbers (timestamps past year 9999 included), possibly truncated."""
    numbers = st.fixed_dictionaries({}, optional={
        "timestamp": st.sampled_from([0, 1767225600000, 10**16, 2**63 - 1, -(2**62)]),  # in ms
        "clicked": EDGE_NUMBERS.filter(lambda v: isinstance(v, float) or abs(v) < 2**53),
        "position": EDGE_NUMBERS.filter(lambda v: isinstance(v, float) or abs(v) < 2**53)})
    rows = st.lists(numbers.map(lambda changes: {**EVENT, **changes}), min_size=1, max_size=20)
    types = {"timestamp": pa.timestamp("ms"), "clicked": pa.float64(), "position": pa.float64()}

    def encode(table_rows, cut):
        buffer = io.BytesIO()
        schema = pa.schema([(k, types.get(k, pa.string())) for k in EVENT])
        pq.write_table(pa.Table.from_pylist(table_rows, schema=schema), buffer, row_group_size=4)
        data = buffer.getvalue()
        return data[:cut % (len(data) + 1)] if cut is not None else data

    return st.builds(encode, rows, st.none() | st.integers(0, 10_000))


def read_and_parse(config, file: InputFile):
    """ReadAndParse as the job runs it on one file: its outputs by tag and its counts."""
    fn = ReadAndParse(config)
    fn.start_bundle()
    outputs = list(fn.process(file))
    counts = dict(o.value.value for o in fn.finish_bundle())
    dead = [o.value for o in outputs if getattr(o, "tag", None) == DEAD]
    accepted = [o for o in outputs if getattr(o, "tag", None) not in (DEAD, COUNTS)]
    assert not any(getattr(o, "tag", None) == ITEMS for o in outputs)
    return accepted, dead, counts


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json", "csv", "parquet"])
def test_any_file_is_read_to_its_end_or_dead_lettered_and_counts_balance(make_config, tmp_path, fmt):
    config = make_config()
    path = tmp_path / f"events.{fmt}"

    @FILE_FUZZ
    @given(data=parquet_bytes() if fmt == "parquet" else file_bytes(fmt))
    def check(data):
        path.write_bytes(data)
        header = tuple(EVENT) if fmt == "csv" else None
        file = InputFile("events", str(path), fmt.split(".")[0], header, gzip=fmt.endswith("gz"))
        accepted, dead, counts = read_and_parse(config, file)
        assert counts.get("in:events", 0) == len(accepted) + len(dead)  # records in = accepted + dead-lettered
        for letter in dead:
            check_dead_letter(letter, "events")
        unreadable = [d for d in dead if d.reason == R.UNREADABLE]
        assert len(unreadable) <= 1 and all(str(path) in d.detail and d.file == str(path) for d in unreadable)

    check()


def test_a_bug_in_a_parser_is_logged_with_its_traceback_not_only_dead_lettered(make_config, monkeypatch, caplog):
    # An AttributeError is no user value's doing: the record is still dead-lettered, but the bug must be visible.
    def broken(record, config):
        return None.strip()

    monkeypatch.setitem(R.PARSERS, "users", broken)
    monkeypatch.setattr(R, "_LOGGED", set())
    raw = R.RawRecord(b'{"user_id": "u1"}', "users.jsonl")
    with caplog.at_level("ERROR", logger="marn_tf.pipelines.records"):
        letters = [R.parse_record(raw, "users", make_config()) for _ in range(3)]
    assert all(isinstance(d, R.DeadLetter) and d.reason == R.MALFORMED for d in letters)
    (logged,) = [r for r in caplog.records if "a bug in marn" in r.getMessage()]  # once, not per record
    assert logged.exc_info and logged.exc_info[0] is AttributeError
