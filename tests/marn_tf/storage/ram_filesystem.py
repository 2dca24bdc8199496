"""TensorFlow's in-memory file system (`ram://`) behind Beam's `FileSystem` interface: one file system that both
TensorFlow (checkpoints, TensorBoard, SavedModels, TFRecords) and `marn_tf.storage.files` (Beam) read and write,
as both do gs:// on Google Cloud, so a whole training run, evaluation and export can be tested off local disk.
Beam finds it by its scheme once this module is imported; TensorFlow has `ram://` built in (one per process)."""
from __future__ import annotations

import io

import marn_tf  # noqa: F401 -- before TensorFlow: marn_tf picks tf-keras
import tensorflow as tf
from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata

from tests.marn_tf.storage import memory_filesystem

SCHEME = "ram"
gfile = tf.io.gfile


class _Upload(memory_filesystem._Upload):
    def close(self):
        if not self.closed:
            gfile.makedirs(self.path.rsplit("/", 1)[0])
            if gfile.exists(self.path):  # ram:// writes over a file without truncating it
                gfile.remove(self.path)
            with gfile.GFile(self.path, "wb") as f:
                f.write(self.getvalue())
        io.BytesIO.close(self)  # not the memory store's close, which keeps the bytes in its dict


class RamFileSystem(memory_filesystem.MemoryFileSystem):
    """Paths as the object store's (`join`, `split`, no directories when listing); the bytes in TensorFlow's ram://."""

    @classmethod
    def scheme(cls):
        return SCHEME

    def mkdirs(self, path):
        gfile.makedirs(path)

    def _list(self, dir_or_prefix):
        # From the directory the prefix lies in: TensorFlow's ram:// calls any prefix of a path a directory.
        top = dir_or_prefix.rstrip("/") if dir_or_prefix.endswith("/") else dir_or_prefix.rsplit("/", 1)[0]
        if not gfile.isdir(top):
            return
        for directory, _, names in gfile.walk(top):
            for name in names:
                path = f"{directory.rstrip('/')}/{name}"
                if path.startswith(dir_or_prefix) and gfile.exists(path):  # ram:// lists some names it cannot stat
                    yield FileMetadata(path, gfile.stat(path).length)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return _Upload(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        if not gfile.exists(path) or gfile.isdir(path):
            raise BeamIOError(f"no file {path}")
        with gfile.GFile(path, "rb") as f:
            return io.BytesIO(f.read())

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            gfile.makedirs(destination.rsplit("/", 1)[0])
            if gfile.exists(destination):
                gfile.remove(destination)
            gfile.copy(source, destination)

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path):
        return gfile.exists(path) and not gfile.isdir(path)

    def size(self, path):
        return gfile.stat(path).length

    def last_updated(self, path):
        return gfile.stat(path).mtime_nsec / 1e9

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path))

    def delete(self, paths):
        for path in paths:
            if not gfile.exists(path):
                raise BeamIOError(f"no file {path}")
            gfile.rmtree(path) if gfile.isdir(path) else gfile.remove(path)
