"""Input files through the real `marn preprocess`: read by what they hold, not by their name; files and tables
that cannot be read, or hold nothing, refused before the job naming the file; per-file dead-letter rates."""
import gzip
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from marn_tf import cli

pytestmark = pytest.mark.integration

T0 = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400
SPLIT = {"train_end": "2026-01-03", "valid_end": "2026-01-04"}


def events(users=range(4), days=(0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5)) -> list[dict]:
    return [dict(user_id=f"u{u}", item_id=f"i{(u + k) % 5}", timestamp=int(T0 + day * DAY) + u,
                 event_type="impression", clicked=(u + k) % 2, request_id=f"r{u}-{k}", position=1)
            for u in users for k, day in enumerate(days)]


ITEMS = [{"item_id": f"i{i}", "image_embedding": [0.1, 0.2, 0.3], "title": "red dress", "sales_count": i}
         for i in range(5)]


def lines(rows: list[dict]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def write_config(tmp_path, events_path: str, items_path: str, **pipeline) -> str:
    config = {"inputs": {"events": {"path": events_path}, "items": {"path": items_path}},
              "items": {"image_dim": 3, "statistics": ["sales_count"], "max_title_tokens": 4},
              "sequence": {"max_length": 3}, "vocabulary": {"min_count": 1}, "split": SPLIT,
              "pipeline": {"num_shards": 1, **pipeline}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def preprocess(config: str, output) -> int:
    return cli.main(["preprocess", "--config", config, "--output", str(output), "--workers", "1"])


def report(out) -> dict:
    return json.loads((out / "report.json").read_text())


EVENT_FILES = {  # name: bytes, each holding events() under a name that does not say what it is
    "gzip named .jsonl": ("events.jsonl", gzip.compress(lines(events()))),
    "JSON array (a dataframe export)": ("events.json", json.dumps(events()).encode()),
    "pretty-printed JSON array, gzipped": ("events.json.gz", gzip.compress(json.dumps(events(), indent=2).encode())),
    "pretty-printed JSON objects": ("events.jsonl", "\n".join(json.dumps(e, indent=2) for e in events()).encode()),
    "Parquet named .jsonl": ("events.jsonl", parquet(events())),
    "JSON lines named .parquet": ("events.parquet", lines(events())),
}


@pytest.mark.parametrize("case", list(EVENT_FILES))
def test_a_file_is_read_by_what_it_holds_every_record_counted_once(tmp_path, case):
    name, data = EVENT_FILES[case]
    (tmp_path / name).write_bytes(data)
    (tmp_path / "items.jsonl").write_bytes(lines(ITEMS))
    out = tmp_path / "out"
    assert preprocess(write_config(tmp_path, str(tmp_path / name), str(tmp_path / "items.jsonl")), out) == 0
    sources = report(out)["sources"]["events"]
    assert (sources["in"], sources["accepted"], sources["dead_lettered"]) == (len(events()), len(events()), 0)


def test_a_bad_record_of_a_json_array_is_one_dead_letter(tmp_path):
    """Records, not lines: a pretty-printed array's bad element is one record rejected, its neighbours kept."""
    rows = events()
    rows[3] = dict(rows[3], timestamp="yesterday")
    (tmp_path / "events.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "items.jsonl").write_bytes(lines(ITEMS))
    out = tmp_path / "out"
    assert preprocess(write_config(tmp_path, str(tmp_path / "events.json"), str(tmp_path / "items.jsonl"),
                                   max_dead_letter_rate=0.5), out) == 0
    e = report(out)["sources"]["events"]
    assert (e["in"], e["accepted"], e["dead_letter_reasons"]) == (len(rows), len(rows) - 1, {"bad_timestamp": 1})


@pytest.mark.parametrize("name,data,looks", [
    ("events.jsonl", bytes(range(256)) * 8, "binary data"),
    ("events.parquet", b"user_id,item_id\nu1,i1\n", "text, starting 'user_id,item_id"),
    ("events.jsonl.gz", gzip.compress(parquet(events())), "gzip-compressed a Parquet file"),
])
def test_a_file_that_cannot_be_read_is_refused_before_the_job_naming_it(tmp_path, capsys, name, data, looks):
    (tmp_path / name).write_bytes(data)
    (tmp_path / "items.jsonl").write_bytes(lines(ITEMS))
    out = tmp_path / "out"
    assert preprocess(write_config(tmp_path, str(tmp_path / name), str(tmp_path / "items.jsonl")), out) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / name} (inputs.events) looks like {looks}" in error
    assert not out.exists()  # refused before anything is written


NO_ROWS = io.BytesIO()
pq.write_table(pa.table({"item_id": pa.array([], pa.string())}), NO_ROWS)


@pytest.mark.parametrize("name,data", [("items.json", b"[]\n"), ("items.csv", b"item_id,title\n"),
                                       ("items.jsonl", b"\n  \n"), ("items.parquet", NO_ROWS.getvalue()),
                                       ("items.jsonl.gz", gzip.compress(b"\n\n"))])
def test_an_empty_catalog_is_refused_before_the_job(tmp_path, capsys, name, data):
    (tmp_path / "events.jsonl").write_bytes(lines(events()))
    (tmp_path / name).write_bytes(data)
    out = tmp_path / "out"
    assert preprocess(write_config(tmp_path, str(tmp_path / "events.jsonl"), str(tmp_path / name)), out) == 2
    assert "the catalog (inputs.items) holds no record" in capsys.readouterr().err
    assert not out.exists()


def test_an_events_glob_of_blank_files_is_refused_before_the_job(tmp_path, capsys):
    for i in range(3):
        (tmp_path / f"events-{i}.jsonl").write_text("\n \n\t\n")
    (tmp_path / "items.jsonl").write_bytes(lines(ITEMS))
    out = tmp_path / "out"
    assert preprocess(write_config(tmp_path, str(tmp_path / "events-*.jsonl"), str(tmp_path / "items.jsonl")),
                      out) == 2
    error = capsys.readouterr().err
    assert "inputs.events holds no record" in error and "matches 3 file(s)" in error
    assert not out.exists()


def test_one_file_losing_most_records_fails_the_job_under_the_global_limit(tmp_path, capsys):
    """Ten files, one of them nearly all bad: 8% of the events rejected (under the 10% limit), but that file's
    90% is past pipeline.max_file_dead_letter_rate; the report lists every file's rate."""
    (tmp_path / "events").mkdir()
    for u in range(9):
        (tmp_path / "events" / f"part-{u}.jsonl").write_bytes(lines(events(users=[u])))
    bad = events(users=[9])
    (tmp_path / "events" / "part-9.jsonl").write_bytes(lines(bad[:1]) + b"not json\n" * (len(bad) - 1))
    (tmp_path / "items.jsonl").write_bytes(lines(ITEMS))
    out = tmp_path / "out"
    config = write_config(tmp_path, str(tmp_path / "events" / "*.jsonl"), str(tmp_path / "items.jsonl"),
                          max_dead_letter_rate=0.1)
    assert preprocess(config, out) == 1
    error = capsys.readouterr().err
    assert f"{tmp_path}/events/part-9.jsonl: 87.50%" in error and "pipeline.max_file_dead_letter_rate is 50.00%" in error
    r = report(out)
    assert r["sources"]["events"]["dead_letter_rate"] < 0.1 and not r["dead_letter_rate_exceeded"]
    files = {f["file"].rsplit("/", 1)[1]: f for f in r["files"]}
    assert len(files) == 11 and files["part-9.jsonl"]["exceeded"] and files["part-0.jsonl"]["dead_letter_rate"] == 0
    assert "part-9.jsonl" in (out / "report.md").read_text()


def test_a_split_with_no_example_fails_the_job_naming_it_and_its_dates(tmp_path, capsys):
    """Events before split.train_end and after split.valid_end, none between: no validation example."""
    (tmp_path / "events.jsonl").write_bytes(lines(events(days=(0, 0.5, 1, 1.5, 3, 3.5))))
    (tmp_path / "items.jsonl").write_bytes(lines(ITEMS))
    out = tmp_path / "out"
    assert preprocess(write_config(tmp_path, str(tmp_path / "events.jsonl"), str(tmp_path / "items.jsonl")), out) == 1
    error = capsys.readouterr().err
    assert ("the validation split has no example (impressions from split.train_end 2026-01-03 to split.valid_end "
            "2026-01-04)") in error
    assert report(out)["empty_splits"] == {"validation": "from split.train_end 2026-01-03 to split.valid_end 2026-01-04"}


def test_relative_paths_are_read_from_the_config_files_folder(tmp_path, monkeypatch, capsys):
    data = tmp_path / "project"
    (data / "raw").mkdir(parents=True)
    (data / "raw" / "events.jsonl").write_bytes(lines(events()))
    (data / "raw" / "items[1].jsonl").write_bytes(lines(ITEMS))  # glob characters: read as the file they name
    (data / "raw" / "items1.jsonl").write_bytes(lines(ITEMS[:1]))  # what the glob would match instead
    config = write_config(data, "raw/events.jsonl", "raw/items[1].jsonl")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert preprocess(config, tmp_path / "out") == 0
    assert report(tmp_path / "out")["sources"]["items"]["accepted"] == len(ITEMS)

    missing = write_config(data, "logs/events-*.jsonl", "raw/items[1].jsonl")
    assert preprocess(missing, tmp_path / "out2") == 2
    assert f"looked in {data}/logs, which does not exist" in capsys.readouterr().err
