"""Reading the raw tables (JSON lines, CSV, Parquet; gzip allowed) into RawRecords.

Any path Beam's FileSystems read works: local files, gs://, and the other registered schemes. Text
lines are kept as bytes, so a line with bad UTF-8 becomes a dead letter rather than a crash.
"""
from __future__ import annotations

import csv
import io

import apache_beam as beam
from apache_beam.coders import BytesCoder
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from marn_tf.config import InputSpec
from marn_tf.config_loader import ConfigError

_EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


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


def match_files(spec: InputSpec, name: str) -> list[str]:
    try:
        (result,) = FileSystems.match([spec.path])
    except Exception as err:  # noqa: BLE001 -- Beam raises BeamIOError for unreachable paths
        raise ConfigError(f"inputs.{name}.path {spec.path!r} cannot be listed: {err}") from err
    files = sorted(m.path for m in result.metadata_list if m.size_in_bytes > 0 or not m.path.endswith(".parquet"))
    if not files:
        raise ConfigError(f"inputs.{name}.path {spec.path!r} matches no file")
    return files


def csv_header(path: str) -> list[str]:
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
        first = f.readline().decode("utf-8-sig").rstrip("\r\n")
    (header,) = list(csv.reader(io.StringIO(first)))
    if not header or any(not h.strip() for h in header):
        raise ConfigError(f"{path}: the first line must be a CSV header naming every column")
    return [h.strip() for h in header]


class ReadRaw(beam.PTransform):
    """One raw table -> PCollection[(file, line bytes or Parquet row dict)].

    Files are listed and formats checked at construction, before the job starts; `csv_headers`
    maps each CSV file to its column names (the header line itself is not read as a record).
    """

    def __init__(self, spec: InputSpec, name: str):
        super().__init__(label=f"Read {name}")
        self.spec, self.name = spec, name
        self.files = match_files(spec, name)
        self.format = detect_format(spec, self.files)
        self.csv_headers = {p: csv_header(p) for p in self.files} if self.format == "csv" else None

    def expand(self, pbegin):
        if self.format == "parquet":
            return (pbegin
                    | "Files" >> beam.Create(self.files)
                    | "Parquet" >> beam.io.ReadAllFromParquet(with_filename=True))
        return pbegin | "Text" >> beam.io.ReadFromTextWithFilename(
            self.spec.path, coder=BytesCoder(), skip_header_lines=1 if self.csv_headers else 0)
