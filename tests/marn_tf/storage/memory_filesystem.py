"""An object store in memory behind Beam's `FileSystem` interface (scheme `memtest://`): what gs:// or s3://
look like to `marn_tf.storage.files` (no directories, only names with slashes), where neither can run.
Beam finds it by its scheme once this module is imported."""
from __future__ import annotations

import io

from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata, FileSystem

SCHEME = "memtest"
OBJECTS: dict[str, bytes] = {}  # every object of every test: tests use their own prefixes, `clear()` empties it


def clear() -> None:
    OBJECTS.clear()


class _Upload(io.BytesIO):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def close(self):
        if not self.closed:
            OBJECTS[self.path] = self.getvalue()  # visible once complete, as in an object store
        super().close()


class MemoryFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass  # no directories in an object store

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        for path, data in sorted(OBJECTS.items()):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(data))

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return _Upload(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        if path not in OBJECTS:
            raise BeamIOError(f"no object {path}")
        return io.BytesIO(OBJECTS[path])

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            OBJECTS[destination] = OBJECTS[source]

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            OBJECTS[destination] = OBJECTS.pop(source)

    def exists(self, path):
        return path in OBJECTS

    def size(self, path):
        return len(OBJECTS[path])

    def last_updated(self, path):
        return 0.0

    def checksum(self, path):
        return str(hash(OBJECTS[path]))

    def metadata(self, path):
        return FileMetadata(path, len(OBJECTS[path]))

    def delete(self, paths):
        missing = [p for p in paths if p not in OBJECTS]
        if missing:
            raise BeamIOError(f"no object {missing[0]}")
        for path in paths:
            del OBJECTS[path]
