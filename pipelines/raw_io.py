"""The raw tables' files (JSON lines, CSV, Parquet; text may be gzipped) and reading their records.

`list_input_files` runs before the job starts: every pattern must match, every format must be
known and every CSV file must have a header, or the command stops with a message naming the input.
The job then reads each file whole in one DoFn call (`read_records`), through Beam's FileSystems
(local paths, gs://, any registered scheme): lines stream at ~0.7 us each, where Beam's TextIO
spends ~13 us per line in Python (under cProfile). A file is the unit of parallelism, so a log
should come in several files (gzip files cannot be split anyway). Text lines stay bytes, so a line with bad UTF-8
becomes a dead letter rather than a crash.

Each file is read by what it holds (`file_content.sniff`), not by its name: a gzip stream named `.jsonl`, a
JSON array (`[{...}, {...}]`) or pretty-printed objects where JSON lines were expected, Parquet under another
extension. A record is a JSON value, a CSV row or a Parquet row, whatever lines it spans. What cannot be read
(binary data, a `.parquet` name over text) is refused before the job, naming the file and what it looks like;
so is a table whose files hold no record at all (blank files, a CSV header alone, `[]`, no Parquet rows).

Reading never raises on a file's content: a file that cannot be read to its end (a truncated or corrupt gzip
stream, a truncated Parquet file) ends in a `ReadFailure` naming where, which the job dead-letters; so does
a Parquet row whose values Python cannot hold (a timestamp past year 9999).
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import glob
import gzip
import io
import json
import logging
from typing import Iterator, NamedTuple, Optional, Union

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from marn_tf.config import Config, InputSpec
from marn_tf.config_loader import ConfigError
from marn_tf.pipelines.file_content import Content, sniff
from marn_tf.pipelines.records import RawRecord

log = logging.getLogger(__name__)

_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PARQUET_BATCH_ROWS = 10_000
JSON_CHUNK_BYTES = 1 << 20
MAX_JSON_RECORD_CHARS = 64 << 20  # a JSON value longer than this is taken as unreadable, not buffered further


@dataclasses.dataclass(frozen=True)
class InputFile:
    source: str  # events | items | users
    path: str
    format: str  # jsonl | json (an array, or values spanning lines) | csv | parquet
    csv_header: Optional[tuple] = None  # None for CSV only when the file cannot be read (the job dead-letters it)
    gzip: bool = False  # its text is gzip-compressed (told by its first bytes, not its name)


class ReadFailure(NamedTuple):
    """What could not be read: the rest of the file from `where` on, or (rest_of_file False) one record."""

    where: str  # "line 12 (byte 3456 of its text)", "row 7"
    error: str
    text: str  # what was read of it, if anything
    rest_of_file: bool = True


def name_format(spec: InputSpec, path: str) -> Optional[str]:
    """The format the config or the file's extension names; None when neither does."""
    if spec.format != "auto":
        return spec.format
    name = path[:-3] if path.endswith(".gz") else path
    return next((f for ext, f in _EXTENSIONS.items() if name.endswith(ext)), None)


def file_format(spec: InputSpec, source: str, path: str, content: Content) -> str:
    """The format to read `path` in: its content's where that tells (Parquet, JSON), else its name's;
    raises ConfigError naming the file and what it looks like when it cannot be read as anything."""
    named = name_format(spec, path)
    what = f"{path} (inputs.{source})"
    looks = f"{what} looks like {content.describe()}"
    if content.kind == "binary" or (content.kind == "parquet" and content.gzip):
        raise ConfigError(f"{looks}: marn reads JSON lines, JSON arrays, CSV (each optionally gzipped) and "
                          "Parquet; convert or remove the file")
    read_as = {"parquet": "parquet", "json": "json", "jsonl": "jsonl"}.get(content.kind)
    if read_as is None and named == "parquet":
        raise ConfigError(f"{looks}, not Parquet (no 'PAR1' magic bytes) though "
                          f"{'the config' if spec.format != 'auto' else 'its name'} says Parquet; set the format "
                          "of this input or fix the file")
    if read_as is None and named is None:
        raise ConfigError(f"cannot tell the format of {what}: it looks like {content.describe()} and its extension "
                          f"is none of {', '.join(_EXTENSIONS)}; set format: jsonl, csv or parquet for this input")
    read_as = read_as or named
    if named is not None and named != read_as and not (named == "jsonl" and read_as == "json"):
        log.warning("%s is named as %s but holds %s: read as %s", path, named, content.describe(), read_as)
    return read_as


def match_metadata(spec: InputSpec, name: str) -> list:
    """Beam's FileMetadata (path, size, last update) of the table's non-empty files, sorted by path. A path that
    exists as a file is that file, even when it holds glob characters (`data[1].jsonl`)."""
    literal = _exists(spec.path) and any(c in spec.path for c in "*?[")
    pattern = glob.escape(spec.path) if literal else spec.path
    try:
        (result,) = FileSystems.match([pattern])
    except Exception as err:  # noqa: BLE001 -- Beam raises BeamIOError for unreachable paths
        raise ConfigError(f"inputs.{name}.path {spec.path!r} cannot be listed: {err}") from err
    files = sorted((m for m in result.metadata_list if m.size_in_bytes > 0), key=lambda m: m.path)
    if not files:
        folder = _folder(spec.path)
        raise ConfigError(f"inputs.{name}.path {spec.path!r} matches no file (or only empty ones); looked in "
                          f"{folder}{'' if _exists(folder) else ', which does not exist'} (a relative path in a "
                          "config file is read from the config file's folder)")
    return files


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 -- an unreachable scheme: the match says why
        return False


def _folder(pattern: str) -> str:
    """The folder a pattern lists: its part before the first glob character, up to the last separator."""
    fixed = next((pattern[:i] for i, c in enumerate(pattern) if c in "*?["), pattern)
    return fixed.rsplit("/", 1)[0] if "/" in fixed else "."


def match_files(spec: InputSpec, name: str) -> list[str]:
    return [m.path for m in match_metadata(spec, name)]


def csv_header(path: str, compressed: bool) -> Optional[tuple]:
    """The header's column names; None when the file cannot be read (the job dead-letters it, naming why)."""
    try:
        with _open_text(path, compressed) as f:
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
    """Every file of every configured table, checked; raises ConfigError naming what is wrong. Files certainly
    holding no record are skipped; a table of only such files is refused."""
    files = []
    for source in ("events", "items", "users"):
        spec = getattr(config.inputs, source)
        if spec is None:
            continue
        paths = match_files(spec, source)
        table = []
        for path in paths:
            content = sniff(path)
            fmt = file_format(spec, source, path, content)
            if content.has_records is False or (fmt == "csv" and content.one_line):
                log.warning("%s (inputs.%s) holds no record (%s): skipped", path, source, content.describe())
                continue
            table.append(InputFile(source, path, fmt, csv_header(path, content.gzip) if fmt == "csv" else None,
                                   content.gzip))
        if not table:
            what = "the catalog (inputs.items)" if source == "items" else f"inputs.{source}"
            raise ConfigError(f"{what} holds no record: {spec.path!r} matches {len(paths)} file(s), each blank, a "
                              f"CSV header alone, an empty JSON array or a Parquet file of no rows "
                              f"(e.g. {paths[0]})")
        files += table
    return files


def _open_text(path: str, compressed: bool):
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return gzip.GzipFile(fileobj=raw) if compressed else raw


def read_records(file: InputFile) -> Iterator[Union[RawRecord, ReadFailure]]:
    """The file's records: text lines without their line break (blank lines and the CSV header
    skipped: they are not records), or Parquet rows as dicts; a ReadFailure where reading stops."""
    if file.format == "parquet":
        yield from _parquet_records(file)
        return
    if file.format == "json":
        yield from _json_records(file)
        return
    line_number = offset = 0  # of the lines read whole
    header = file.csv_header
    try:
        with _open_text(file.path, file.gzip) as f:
            for line in f:
                if file.format == "csv" and line_number == 0:
                    header = header or parse_csv_header(line, file.path)  # unread before the job: read here
                elif line.strip():
                    yield RawRecord(line.rstrip(b"\r\n"), file.path, header)
                line_number += 1
                offset += len(line)
    except Exception as err:  # noqa: BLE001 -- truncated or corrupt: the rest of the file is dead-lettered
        yield ReadFailure(f"line {line_number + 1} (byte {offset} of its text)", f"{type(err).__name__}: {err}", "")


def _json_records(file: InputFile) -> Iterator[Union[RawRecord, ReadFailure]]:
    """The values of a JSON array, or of JSON values one after another over any lines, each one record (its
    text, as a JSON line's). Bad UTF-8 stays in the record (surrogate escapes), so that record alone is
    dead-lettered; a value that does not parse ends the file in a ReadFailure."""
    decoder, chars = json.JSONDecoder(), codecs.getincrementaldecoder("utf-8")("surrogateescape")
    buffer, pos, done, index, array, skipped = "", 0, False, 0, None, 0
    try:
        with _open_text(file.path, file.gzip) as f:
            def more() -> bool:
                nonlocal buffer, pos, done, skipped
                chunk = f.read(JSON_CHUNK_BYTES)
                done = not chunk
                skipped += pos
                buffer, pos = buffer[pos:] + chars.decode(chunk, final=done), 0
                return not done

            while True:
                while pos < len(buffer) and (buffer[pos].isspace() or buffer[pos] == "\ufeff"
                                             or (array and buffer[pos] == ",")):
                    pos += 1
                if pos == len(buffer):
                    if more() or buffer:
                        continue
                    if array:
                        raise ValueError("the JSON array is not closed (a truncated file?)")
                    return
                if array is None:
                    array = buffer[pos] == "["
                    pos += array
                    continue
                if array and buffer[pos] == "]":
                    return
                try:
                    _, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as err:
                    if not done and len(buffer) - pos < MAX_JSON_RECORD_CHARS:
                        more()  # the value may go on in the next chunk: decoded again from its start
                        continue
                    raise ValueError(f"record {index + 1} is not valid JSON: {err.msg}") from None
                if end == len(buffer) and not done:
                    more()  # a number may go on in the next chunk
                    continue
                yield RawRecord(buffer[pos:end].encode("utf-8", "surrogateescape"), file.path)
                index, pos = index + 1, end
    except Exception as err:  # noqa: BLE001 -- truncated or corrupt: the rest of the file is dead-lettered
        yield ReadFailure(f"record {index + 1} (character {skipped + pos} of its text)",
                          f"{type(err).__name__}: {err}", buffer[pos:pos + 200])


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
