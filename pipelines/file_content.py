"""What an input file holds, told from its first bytes rather than its name (before the job, one read per file).

Magic bytes decide the container: gzip starts with 1f 8b, Parquet with "PAR1". Text (after gunzipping) is told
by its first non-blank character: `[` a JSON array (a dataframe's `to_json(orient="records")`), `{` JSON lines,
or JSON objects that span lines (pretty-printed, `jq .`); anything else is read as its name or the config's
`format` says. The head also shows a file with no record at all: only blank lines, a CSV header alone, `[]`,
a Parquet file of no rows.
"""
from __future__ import annotations

import json
import zlib
from typing import NamedTuple, Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

HEAD_BYTES = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


class Content(NamedTuple):
    kind: str  # parquet | json (an array, or objects spanning lines) | jsonl | text (CSV or a name's format) | binary
    gzip: bool  # the text is gzip-compressed, whatever the file's name
    has_records: Optional[bool]  # False: certainly none (blank, a header alone, [], no rows); None: not told
    head: str  # the first characters of its text, for messages
    one_line: bool = False  # the whole text is one non-blank line (as CSV: a header and no row)

    def describe(self) -> str:
        """What the file looks like, in words, for a message that refuses it."""
        words = {"parquet": "a Parquet file", "json": "a JSON array or multi-line JSON objects",
                 "jsonl": "JSON lines", "text": "text", "binary": "binary data (neither text, gzip nor Parquet)"}
        shown = f", starting {self.head[:40]!r}" if self.kind != "binary" and self.head else ""
        return ("gzip-compressed " if self.gzip else "") + words[self.kind] + shown


def sniff(path: str) -> Content:
    """The file's content kind from its first HEAD_BYTES (gunzipped first when they start with the gzip magic)."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        raw = f.read(HEAD_BYTES)
        whole = len(raw) < HEAD_BYTES or not f.read(1)
    if raw.startswith(PARQUET_MAGIC):
        return Content("parquet", False, _parquet_has_rows(path), "")
    compressed = raw.startswith(GZIP_MAGIC)
    if compressed:
        raw, whole = _gunzip_head(raw, whole)
        if raw.startswith(PARQUET_MAGIC):
            return Content("parquet", True, None, "")
    if b"\x00" in raw:  # no text holds NUL bytes (UTF-16 text does: not read either)
        return Content("binary", compressed, None, "")
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = text.lstrip()
    if not stripped:
        return Content("text", compressed, False if whole else None, "")
    head = stripped[:200]
    if stripped[0] == "[":
        empty = whole and stripped[1:].strip() == "]"
        return Content("json", compressed, False if empty else None, head)
    if stripped[0] == "{":
        return Content("json" if _spans_lines(stripped) else "jsonl", compressed, None, head)
    lines = [line for line in text.splitlines() if line.strip()]
    return Content("text", compressed, None, head, one_line=whole and len(lines) == 1)


def _gunzip_head(raw: bytes, whole: bool) -> tuple[bytes, bool]:
    """The first HEAD_BYTES of the gzip stream's text, and whether that is all of it (a corrupt stream: what
    could be read; the job dead-letters the rest)."""
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        text = decompressor.decompress(raw, HEAD_BYTES)
    except zlib.error:
        return b"", False
    return text, whole and decompressor.eof and not decompressor.unused_data and len(text) < HEAD_BYTES


def _parquet_has_rows(path: str) -> Optional[bool]:
    """False for a Parquet file of no rows; None when its footer cannot be read (the job dead-letters it)."""
    import pyarrow.parquet as pq

    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return pq.ParquetFile(f).metadata.num_rows > 0
    except Exception:  # noqa: BLE001 -- truncated or corrupt: the job reads what it can and dead-letters the rest
        return None


def _spans_lines(text: str) -> bool:
    """Whether the first JSON object is written over several lines (its first line alone is no JSON)."""
    first = text.split("\n", 1)[0]
    try:
        json.loads(first)
        return False
    except ValueError:
        pass
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        return False  # a bad first record: read as lines, each its own record
    return "\n" in text[:end]
