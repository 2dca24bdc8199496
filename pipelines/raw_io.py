"""The raw tables' files (JSON lines, CSV, Parquet; text may be gzipped) and reading their records.

`list_input_files` runs before the job starts: every pattern must match, every format must be
known and every CSV file must have a header, or the command stops with a message naming the input.
The job then reads each file whole in one DoFn call (`read_records`), through Beam's FileSystems
(local paths, gs://, any registered scheme): lines stream at ~0.7 us each, where Beam's TextIO
spends ~13 us per line in Python (under cProfile). A file is the unit of parallelism, so a log
should come in several files (gzip files cannot be split anyway). Text lines stay bytes, so a line with bad UTF-8
becomes a dead letter rather than a crash.

Reading never raises on a file's content: a file that cannot be read to its end (a truncated or corrupt gzip
stream, a truncated Parquet file) ends in a `ReadFailure` naming where, which the job dead-letters; so does
a Parquet row whose values Python cannot hold (a timestamp past year 9999).
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import logging
from typing import Iterator, NamedTuple, Optional, Union

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from marn_tf.config import Config, InputSpec
from marn_tf.config_loader import ConfigError
from marn_tf.pipelines.records import RawRecord

log = logging.getLogger(__name__)

_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PARQUET_BATCH_ROWS = 10_000


@dataclasses.dataclass(frozen=True)
class InputFile:
    source: str  # events | items | users
    path: str
    format: str  # jsonl | csv | parquet
    csv_header: Optional[tuple] = None  # None for CSV only when the file cannot be read (the job dead-letters it)


class ReadFailure(NamedTuple):
    """What could not be read: the rest of the file from `where` on, or (rest_of_file False) one record."""

    where: str  # "line 12 (byte 3456 of its text)", "row 7"
    error: str
    text: str  # what was read of it, if anything
    rest_of_file: bool = True


def detect_format(spec: InputSpec, files: list[str]) -> str:
    if spec.format != "auto":
        return spec.format
    found = set()
    for path in files:
        name = path[:-3] if path.endswith(".gz") else path
        fmt = next((f for ext, f in _EXTENSIONS.items() if name.endswith(ext)), None)
        if fmt is None:
            raise ConfigError(f"cannot tell the format of {path} from its extension; set format: jsonl, csv or "
                              "parquet for this input")
        found.add(fmt)
    if len(found) > 1:
        raise ConfigError(f"{spec.path} matches files of several formats {sorted(found)}; use one per input")
    return found.pop()


def match_metadata(spec: InputSpec, name: str) -> list:
    """Beam's FileMetadata (path, size, last update) of the table's non-empty files, sorted by path."""
    try:
        (result,) = FileSystems.match([spec.path])
    except Exception as err:  # noqa: BLE001 -- Beam raises BeamIOError for unreachable paths
        raise ConfigError(f"inputs.{name}.path {spec.path!r} cannot be listed: {err}") from err
    files = sorted((m for m in result.metadata_list if m.size_in_bytes > 0), key=lambda m: m.path)
    if not files:
        raise ConfigError(f"inputs.{name}.path {spec.path!r} matches no file (or only empty ones)")
    return files


def match_files(spec: InputSpec, name: str) -> list[str]:
    return [m.path for m in match_metadata(spec, name)]


def csv_header(path: str) -> Optional[tuple]:
    """The header's column names; None when the file cannot be read (the job dead-letters it, naming why)."""
    try:
        with _open_text(path) as f:
            first = f.readline()
    except Exception as err:  # noqa: BLE001 -- a corrupt file is the job's dead letter, not a crash here
        log.warning("%s cannot be read (%s: %s); its records will be dead-lettered", path, type(err).__name__, err)
        return None
    return parse_csv_header(first, path)


def parse_csv_header(line: bytes, path: str) -> tuple:
    try:
        (header,) = list(csv.reader(io.StringIO(line.decode("utf-8-sig").rstrip("\r\n"))))
    except (UnicodeDecodeError, csv.Error, ValueError):
        header = []
    if not header or any(not h.strip() for h in header):
        raise ConfigError(f"{path}: the first line must be a CSV header naming every column")
    return tuple(h.strip() for h in header)


def list_input_files(config: Config) -> list[InputFile]:
    """Every file of every configured table, checked; raises ConfigError naming what is wrong."""
    files = []
    for source in ("events", "items", "users"):
        spec = getattr(config.inputs, source)
        if spec is None:
            continue
        paths = match_files(spec, source)
        fmt = detect_format(spec, paths)
        files += [InputFile(source, p, fmt, csv_header(p) if fmt == "csv" else None) for p in paths]
    return files


def _open_text(path: str):
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw


def read_records(file: InputFile) -> Iterator[Union[RawRecord, ReadFailure]]:
    """The file's records: text lines without their line break (blank lines and the CSV header
    skipped: they are not records), or Parquet rows as dicts; a ReadFailure where reading stops."""
    if file.format == "parquet":
        yield from _parquet_records(file)
        return
    line_number = offset = 0  # of the lines read whole
    header = file.csv_header
    try:
        with _open_text(file.path) as f:
            for line in f:
                if file.format == "csv" and line_number == 0:
                    header = header or parse_csv_header(line, file.path)  # unread before the job: read here
                elif line.strip():
                    yield RawRecord(line.rstrip(b"\r\n"), file.path, header)
                line_number += 1
                offset += len(line)
    except Exception as err:  # noqa: BLE001 -- truncated or corrupt: the rest of the file is dead-lettered
        yield ReadFailure(f"line {line_number + 1} (byte {offset} of its text)", f"{type(err).__name__}: {err}", "")


def _parquet_records(file: InputFile) -> Iterator[Union[RawRecord, ReadFailure]]:
    import pyarrow.parquet as pq

    row = 0
    try:
        with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=PARQUET_BATCH_ROWS):
                try:
                    rows = batch.to_pylist()
                except Exception:  # noqa: BLE001 -- a value Python cannot hold: find its row
                    rows = [_row_or_failure(batch, i, row + i) for i in range(batch.num_rows)]
                for values in rows:
                    yield values if isinstance(values, ReadFailure) else RawRecord(values, file.path)
                row += batch.num_rows
    except Exception as err:  # noqa: BLE001 -- truncated or corrupt: the rest of the file is dead-lettered
        yield ReadFailure(f"row {row}", f"{type(err).__name__}: {err}", "")


def _row_or_failure(batch, index: int, row: int) -> Union[dict, ReadFailure]:
    values, bad = {}, []
    for name, column in zip(batch.schema.names, batch.columns):
        try:
            values[name] = column[index].as_py()
        except Exception as err:  # noqa: BLE001
            bad.append(f"column {name}: {type(err).__name__}: {err}")
            values[name] = f"<{column.type} value Python cannot hold>"
    if not bad:
        return values
    return ReadFailure(f"row {row}", "; ".join(bad), repr(values), rest_of_file=False)
