"""Before the job, through `marn preprocess`: implausible timestamps and configured columns no file has stop
it with `error: ...` (exit 2) and the fix, before any output exists; a column only some files lack is a warning."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from marn_tf import cli

T0 = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400


def events(t0: int = T0, scale: int = 1) -> list[dict]:
    """Four days of impressions from t0 (in seconds, times `scale`)."""
    return [dict(user_id=f"u{u}", item_id=f"i{(u + k) % 5}", timestamp=(t0 + k * DAY // 2 + u) * scale,
                 event_type="impression", clicked=(u + k) % 2, request_id=f"r{u}-{k}", position=1, query="dress")
            for u in range(4) for k in range(8)]


ITEMS = [dict(item_id=f"i{i}", shop_id="s1", brand_id=f"b{i % 2}", category_id="c1", image_embedding=[0.1, 0.2, 0.3],
              title="red silk dress", sales_count=i) for i in range(5)]


def dataset(tmp_path, event_rows=None, events_file="events.jsonl", items_format="jsonl", users_csv=None, **sections):
    """Events (JSON lines, gzipped for .gz), items (jsonl or parquet), optional users CSV; returns the config path."""
    lines = b"".join(json.dumps(e).encode() + b"\n" for e in (event_rows or events()))
    (tmp_path / events_file).write_bytes(gzip.compress(lines) if events_file.endswith(".gz") else lines)
    items_path = tmp_path / f"items.{items_format}"
    if items_format == "parquet":
        pq.write_table(pa.Table.from_pylist(ITEMS), items_path)
    else:
        items_path.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    config = {"inputs": {"events": {"path": str(tmp_path / events_file)}, "items": {"path": str(items_path)}},
              "items": {"image_dim": 3, "statistics": ["sales_count"], "max_title_tokens": 4},
              "sequence": {"max_length": 3}, "vocabulary": {"min_count": 1},
              "split": {"train_end": "2026-01-03", "valid_end": "2026-01-04"},
              "pipeline": {"num_shards": 1, "max_dead_letter_rate": 1.0}}
    if users_csv is not None:
        (tmp_path / "users.csv").write_text(users_csv)
        config["inputs"]["users"] = {"path": str(tmp_path / "users.csv")}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return str(tmp_path / "config.yaml")


def preprocess(config: str, output) -> int:
    return cli.main(["preprocess", "--config", config, "--output", str(output), "--workers", "1"])


def refused(tmp_path, capsys, config: str) -> str:
    """Runs the command, which must stop before making its output; returns its one error line."""
    assert preprocess(config, tmp_path / "out") == 2
    assert not (tmp_path / "out").exists()
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    return error


@pytest.mark.parametrize("scale,unit,factor", [(1000, "milliseconds", "1,000"), (10**6, "microseconds", "1,000,000")])
def test_timestamps_in_a_smaller_unit_are_refused_with_the_fix(tmp_path, capsys, scale, unit, factor):
    error = refused(tmp_path, capsys, dataset(tmp_path, events(scale=scale)))
    assert f"looks like {unit} since the epoch" in error and f"divide the timestamps by {factor}" in error
    assert " is 2026-01-0" in error  # what the values mean in that unit


def test_events_all_after_the_training_window_are_refused(tmp_path, capsys):
    # Compressed: only the files' first records are read, and they are the earliest of a sorted log.
    error = refused(tmp_path, capsys, dataset(tmp_path, events(T0 + 400 * DAY), events_file="events.jsonl.gz"))
    assert "no event before split.train_end (2026-01-03" in error and "training split would be empty" in error
    assert "from 2027-02-05" in error and "set split.train_end and split.valid_end" in error


def test_events_all_before_the_validation_window_are_refused(tmp_path, capsys):
    error = refused(tmp_path, capsys, dataset(tmp_path, events(T0 - 400 * DAY)))
    assert "no event on or after split.train_end" in error and "validation and test splits would be empty" in error
    assert "run from 2024-11-27" in error


@pytest.mark.parametrize("sections,users_csv,items_format,expected", [
    ({"users": {"features": ["gendr"]}}, "user_id,gender\nu1,f\n", "jsonl",
     "users.features names the column 'gendr', which is not in the header of any file of inputs.users "
     "(did you mean 'gender'?)"),
    ({"items": {"statistics": ["sales_cnt"]}}, None, "parquet",
     "items.statistics names the column 'sales_cnt', which is not in the header of any file of inputs.items "
     "(did you mean 'sales_count'?)"),
    ({"events": {"context": ["qeury"]}}, None, "jsonl",
     "events.context names the column 'qeury', which is not in the first records of the files of inputs.events "
     "(did you mean 'query'?)"),
    ({"events": {"user_id": "uid"}}, None, "jsonl", "events.user_id names the column 'uid'"),
])
def test_a_configured_column_no_file_has_is_refused(tmp_path, capsys, sections, users_csv, items_format, expected):
    error = refused(tmp_path, capsys, dataset(tmp_path, users_csv=users_csv, items_format=items_format, **sections))
    assert expected in error and "Fix the name in the config" in error


@pytest.mark.integration
def test_a_default_column_no_file_has_and_a_column_some_files_lack_are_warnings(tmp_path, capsys):
    """The default `query` context column absent everywhere, `gender` absent from one of two users files; and a
    sorted, compressed log whose first records are all in the training window is not taken for a mistake."""
    rows = [{k: v for k, v in e.items() if k != "query"} for e in events()]
    config = dataset(tmp_path, rows, events_file="events.jsonl.gz", users_csv="user_id,gender\nu1,f\n",
                     users={"features": ["gender"]})
    (tmp_path / "users-2.csv").write_text("user_id\nu2\n")
    raw = yaml.safe_load(open(config))
    raw["inputs"]["users"]["path"] = str(tmp_path / "users*.csv")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    assert preprocess(config, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "events.context names the column 'query', which is not in the first records" in err
    assert "the feature would be all out-of-vocabulary" in err
    assert "users.features names the column 'gender', which 1 of 2 files of inputs.users lack" in err
    assert "error:" not in err


def test_split_windows_are_not_judged_from_a_sample_of_the_files(tmp_path):
    """17 events files: the 16 sampled (the first by path) end before split.train_end, the last holds the later
    events. The same records as the only files are refused ("no event on or after split.train_end"); as a sample of
    more files they are not, since a file left out may hold the missing times (here it does)."""
    from marn_tf.config import Config
    from marn_tf.config_loader import ConfigError
    from marn_tf.pipelines.input_checks import SAMPLE_FILES, check_inputs
    from marn_tf.pipelines.raw_io import list_input_files

    config_path = dataset(tmp_path)
    rows = events()
    early = [e for e in rows if e["timestamp"] < T0 + 2 * DAY]
    (tmp_path / "events").mkdir()
    for i in range(SAMPLE_FILES):
        (tmp_path / "events" / f"part-{i:02d}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in early))
    (tmp_path / "events" / "part-99.jsonl").write_text("".join(json.dumps(e) + "\n" for e in rows if e not in early))
    config = yaml.safe_load(open(config_path))
    config["inputs"]["events"]["path"] = str(tmp_path / "events" / "*.jsonl")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    loaded = Config.load(str(tmp_path / "config.yaml"))
    files = list_input_files(loaded)
    events_files = [f for f in files if f.source == "events"]
    assert [f.path for f in events_files[:SAMPLE_FILES]] == [str(tmp_path / "events" / f"part-{i:02d}.jsonl")
                                                             for i in range(SAMPLE_FILES)]
    with pytest.raises(ConfigError, match="no event on or after split.train_end"):
        check_inputs(loaded, [f for f in files if f not in events_files[SAMPLE_FILES:]])  # the sample, all there is
    check_inputs(loaded, files)  # the same sample, one file more: not refused
