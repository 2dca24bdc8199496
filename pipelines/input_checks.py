"""Before the job: what the inputs' headers and first records say about the config.

Two mistakes give a job that runs to the end and writes useless output, so they stop it before it starts:
* a configured column that no file has (a misspelling): the feature would be all out-of-vocabulary.
  A column the config names on purpose (required, or not one of the defaults) and no file has stops
  the job; one that only some files lack, or a default column that none has, is a warning.
* implausible timestamps: milliseconds (or micro-, nanoseconds) where epoch seconds are expected, or
  events that all fall outside the split windows (no training or no validation examples).

CSV and Parquet files show their columns in their header; JSON lines files in their first records.
Timestamps come from the first records of each file and, where that is cheap (uncompressed text,
Parquet), from its last ones: a log sorted by time shows its first and last times there.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import logging
import statistics
from typing import Any, Iterable, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from marn_tf.config import Config, EventFields, ItemFields, UserFields
from marn_tf.config_loader import ConfigError
from marn_tf.pipelines import records as R
from marn_tf.pipelines.raw_io import InputFile, ReadFailure, read_records

log = logging.getLogger(__name__)

SAMPLE_FILES = 16  # per table, the first by path
SAMPLE_RECORDS = 200  # per file, from its start and (where cheap) its end
TAIL_BYTES = 1 << 16
MAX_PLAUSIBLE_SECONDS = 10**11  # year 5138: a larger epoch value is in a smaller unit
UNITS = ((10**3, "milliseconds"), (10**6, "microseconds"), (10**9, "nanoseconds"))


@dataclasses.dataclass
class FileSample:
    path: str
    columns: Optional[set]  # None: the file cannot be read (the job dead-letters it)
    records: list  # dicts from its start and end
    has_tail: bool  # records include the file's last ones


def check_inputs(config: Config, files: list[InputFile]) -> None:
    """Raises ConfigError for a configured column no file has, or implausible timestamps; warns for the rest."""
    for source in ("events", "items", "users"):
        every = [f for f in files if f.source == source]
        table = every[:SAMPLE_FILES]
        if not table:
            continue
        samples = [sample_file(f, config.events.timestamp if source == "events" else None) for f in table]
        check_columns(source, configured_columns(config, source), samples, table[0].format in ("jsonl", "json"))
        if source == "events":
            # The split windows are judged only from every file: unsampled files may hold the missing times.
            check_timestamps(config, [r.get(config.events.timestamp) for s in samples for r in s.records],
                             all(s.has_tail for s in samples), windows=len(table) == len(every))


def configured_columns(config: Config, source: str) -> list[tuple[str, str, bool]]:
    """(config key, column, stop when no file has it): required columns, and those not among the defaults."""
    def optional(default, key: str, names: Iterable[Optional[str]]) -> list:
        defaults = getattr(default, key)
        defaults = defaults if isinstance(defaults, list) else [defaults]
        return [(f"{source}.{key}", n, n not in defaults) for n in names if n]

    if source == "events":
        f = config.events
        return ([(f"events.{k}", getattr(f, k), True) for k in ("user_id", "item_id", "timestamp", "event_type")]
                + optional(EventFields(), "request_id", [f.request_id])
                + optional(EventFields(), "position", [f.position])
                + optional(EventFields(), "context", f.context))
    if source == "items":
        f = config.items
        return ([("items.item_id", f.item_id, True)] + optional(ItemFields(), "id_fields", f.id_fields)
                + optional(ItemFields(), "image", [f.image]) + optional(ItemFields(), "title", [f.title])
                + optional(ItemFields(), "statistics", f.statistics))
    f = config.users
    return [("users.user_id", f.user_id, True)] + optional(UserFields(), "features", f.features)


def check_columns(source: str, columns: list[tuple[str, str, bool]], samples: list[FileSample], json: bool) -> None:
    readable = [s for s in samples if s.columns is not None]
    if not readable:
        return
    where = (f"the first records of the files of inputs.{source}" if json
             else f"the header of any file of inputs.{source}")
    seen = set().union(*(s.columns for s in readable))
    for key, column, stop in columns:
        lacking = [s.path for s in readable if column not in s.columns]
        if len(lacking) == len(readable):
            close = difflib.get_close_matches(column, seen, n=1)
            message = (f"{key} names the column {column!r}, which is not in {where}"
                       + (f" (did you mean {close[0]!r}?)" if close else "")
                       + f"; the columns there: {', '.join(sorted(seen)[:30])}")
            if stop:
                raise ConfigError(message + ". Fix the name in the config, or remove it.")
            log.warning("%s: the feature would be all out-of-vocabulary", message)
        elif lacking:
            log.warning("%s names the column %r, which %d of %d files of inputs.%s lack (e.g. %s): their records "
                        "have no value for it", key, column, len(lacking), len(readable), source, lacking[0])


def check_timestamps(config: Config, values: list[Any], complete: bool, windows: bool = True) -> None:
    """`values`: raw timestamps from the files' starts (and ends when `complete`); `windows`: they come from every
    file of the table, so the split windows can be judged (else only the unit is)."""
    numeric = [v for v in (_number(v) for v in values) if v is not None]
    large = [v for v in numeric if v >= MAX_PLAUSIBLE_SECONDS]
    if numeric and len(large) * 2 > len(numeric):
        example = statistics.median_low(large)
        factor, unit = next(((f, u) for f, u in UNITS if example / f < MAX_PLAUSIBLE_SECONDS), UNITS[-1])
        raise ConfigError(
            f"events.{config.events.timestamp} looks like {unit} since the epoch, not seconds: {example:.0f} is "
            f"{_date(example / factor)} in {unit}, {_date(example)} in seconds. marn reads epoch seconds or "
            f"ISO-8601 text: divide the timestamps by {factor:,} in the events files")
    seconds = []
    for value in values:
        try:
            seconds.append(R.timestamp_seconds(value, "timestamp"))
        except R.Rejected:
            continue
    if not seconds or not windows:
        return
    start, train_end, valid_end = config.split.boundaries
    first, last = min(seconds), max(seconds)
    span = (f"the first{' and last' if complete else ''} records of the events files run from {_date(first)} "
            f"to {_date(last)}")
    fix = "set split.train_end and split.valid_end (and split.train_start) inside the events' time range"
    if first >= train_end:
        raise ConfigError(f"no event before split.train_end ({_date(train_end)}): the training split would be empty; "
                          f"{span}. Check the timestamps' unit and time zone, or {fix}")
    if complete and last < train_end:
        raise ConfigError(f"no event on or after split.train_end ({_date(train_end)}): the validation and test splits "
                          f"would be empty; {span}. {fix[0].upper()}{fix[1:]}")
    if complete and start is not None and last < start:
        raise ConfigError(f"every event is before split.train_start ({_date(start)}): no examples; {span}. "
                          f"{fix[0].upper()}{fix[1:]}")


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if abs(value) < 1e300 else None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _date(seconds: float) -> str:
    if not 0 <= seconds < R.MAX_TIMESTAMP:
        return f"year {1970 + seconds / 31_556_952:,.0f}"
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# -------------------------------------------------------------------------------------- reading the samples

def sample_file(file: InputFile, timestamp_column: Optional[str]) -> FileSample:
    """The file's columns and first records (and last ones where cheap); never raises on its content."""
    try:
        if file.format == "parquet":
            return _sample_parquet(file, timestamp_column)
        head = _parsed(read_records(file), SAMPLE_RECORDS)
        tail = _text_tail(file) if file.format in ("jsonl", "csv") and not file.gzip else None  # cheap here
    except Exception as err:  # noqa: BLE001 -- the job dead-letters what cannot be read; nothing to check here
        log.debug("cannot sample %s: %s", file.path, err)
        return FileSample(file.path, None, [], False)
    if file.format == "csv":
        columns = set(file.csv_header) if file.csv_header is not None else None
    else:
        columns = set().union(*(r.keys() for r in head)) if head else None
    return FileSample(file.path, columns, head + (tail or []), tail is not None)


def _parsed(raws: Iterable, limit: int) -> list[dict]:
    """Up to `limit` records that parse as dicts (the others are the job's dead letters)."""
    found = []
    for raw in raws:
        if isinstance(raw, ReadFailure) or len(found) >= limit:
            break
        try:
            found.append(R.parse_raw(raw))
        except (R.Rejected, RecursionError, ValueError):
            continue
    return found


def _text_tail(file: InputFile) -> list[dict]:
    """The last records of an uncompressed text file, read from its last TAIL_BYTES."""
    with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        lines = f.read().split(b"\n")
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first is cut
    elif file.format == "csv":
        lines = lines[1:]  # the header
    raws = [R.RawRecord(line.rstrip(b"\r"), file.path, file.csv_header) for line in lines if line.strip()]
    return _parsed(raws[-SAMPLE_RECORDS:], SAMPLE_RECORDS)


def _sample_parquet(file: InputFile, timestamp_column: Optional[str]) -> FileSample:
    import pyarrow.parquet as pq

    with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        parquet = pq.ParquetFile(f)
        columns = set(parquet.schema_arrow.names)
        if timestamp_column not in columns:
            return FileSample(file.path, columns, [], False)
        read = [timestamp_column]
        head = next(parquet.iter_batches(batch_size=SAMPLE_RECORDS, columns=read), None)
        tail = parquet.read_row_group(parquet.num_row_groups - 1, columns=read) if parquet.num_row_groups else None
    values = []
    for part in (head, tail.slice(max(0, tail.num_rows - SAMPLE_RECORDS)) if tail is not None else None):
        if part is not None:
            values += part.column(0).to_pylist()
    return FileSample(file.path, columns, [{timestamp_column: v} for v in values], True)
