"""One file-access API: local paths through `os`, URLs (gs://, s3://, hdfs://, ...) through Beam's
`FileSystems`, which dispatches on the scheme to whatever file systems are installed (and to test ones).

Nothing here knows about marn's directories; `ownership` builds on it.

Missing and unreadable are told apart: a reader returns None (a listing: nothing) only when the file system
says the path does not exist; any other failure (permissions, a network or service error, bytes that are not
the text expected) raises `StorageError` naming the path, so that no caller mistakes an error for "not there".
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from typing import Optional

from marn_tf.storage import disk_full

_GLOB_CHARS = "*?["


class StorageError(OSError):
    """A path could not be read, listed or checked for another reason than not existing; the message names it."""


class DiskFullError(StorageError):
    """Writing `path` failed for want of space or quota: the message names it and says what to do."""

    def __init__(self, path: str, err: OSError) -> None:
        reason = err.strerror or "no space left on device"
        super().__init__(disk_full.advice(path, reason))
        self.errno, self.strerror, self.filename = err.errno, reason, path

    def __str__(self) -> str:  # the advice, not OSError's "[Errno N] ..." form that errno would give
        return self.args[0]


@contextlib.contextmanager
def _writing(path: str):
    """Turns a full disk or quota while writing `path` into `DiskFullError` naming it (the file written, not the
    temporary name it is written under)."""
    try:
        yield
    except OSError as err:
        if disk_full.is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(path, err) from err
        raise


def _absent(err: BaseException) -> bool:
    """The error says the path does not exist (also when wrapped in a Beam error's per-path details)."""
    if isinstance(err, (FileNotFoundError, NotADirectoryError)):
        return True
    details = getattr(err, "exception_details", None)
    return isinstance(details, dict) and bool(details) and all(_absent(e) for e in details.values())


def _reason(err: BaseException) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__


def _remote_exists(path: str) -> bool:
    """Whether the object (or, on a file system with directories, the directory) `path` exists."""
    from apache_beam.io.filesystems import FileSystems

    try:
        return FileSystems.exists(path)
    except Exception as err:  # noqa: BLE001 -- whatever the file system raises: not an answer
        raise StorageError(f"cannot check whether {path} exists: {_reason(err)}") from err


def is_remote(path: str) -> bool:
    return "://" in path


def normal_path(path: str) -> str:
    """A comparable form: the real absolute path locally, the cleaned URL otherwise."""
    if is_remote(path):
        scheme, rest = path.split("://", 1)
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        return f"{scheme}://" + "/".join(parts)
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def is_under(path: str, parent: str) -> bool:
    """`path` is `parent` or inside it (both normalised)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def glob_base(pattern: str) -> str:
    """The directory a path or glob reads from: the part before the first wildcard component."""
    if not any(c in pattern for c in _GLOB_CHARS):
        return pattern
    head, parts = "", pattern.split("/")
    if is_remote(pattern):
        scheme, rest = pattern.split("://", 1)
        head, parts = f"{scheme}://", rest.split("/")
    kept = []
    for part in parts:
        if any(c in part for c in _GLOB_CHARS):
            break
        kept.append(part)
    base = head + "/".join(kept)
    return base or "."


def join(directory: str, *names: str) -> str:
    if is_remote(directory):
        return "/".join([directory.rstrip("/"), *(name.strip("/") for name in names)])
    return os.path.join(directory, *names)


def makedirs(directory: str) -> None:
    """Makes a local directory and its parents; nothing for a URL (object stores have no directories)."""
    if not is_remote(directory):
        os.makedirs(directory, exist_ok=True)


def _missing_directory(directory: str) -> bool:
    """An object store lists a missing prefix as empty; a file system with directories (hdfs://) may raise for a
    missing directory instead, told apart by asking whether it exists."""
    from apache_beam.io.filesystems import FileSystems

    try:
        has_dirs = FileSystems.get_filesystem(directory).has_dirs()
    except Exception:  # noqa: BLE001 -- no file system for the scheme: the listing's own error says so
        return False
    return has_dirs and not _remote_exists(directory)


def list_tree(directory: str) -> list[str]:
    """Every file under the URL `directory` (object stores have no directories, only names with slashes); none
    when nothing is there. Raises `StorageError` when the listing fails."""
    from apache_beam.io.filesystems import FileSystems

    try:
        (result,) = FileSystems.match([directory.rstrip("/") + "/**"])
    except Exception as err:  # noqa: BLE001 -- Beam wraps whatever the file system raised
        if _absent(err) or _missing_directory(directory):
            return []
        raise StorageError(f"cannot list {directory}: {_reason(err)}") from err
    return [m.path for m in result.metadata_list]


def exists(path: str) -> bool:
    """A file, a link or a directory (for a URL: an object, or a prefix with objects under it). Raises
    `StorageError` when the file system cannot tell (e.g. a directory on the way that cannot be searched)."""
    if is_remote(path):
        return _remote_exists(path) or bool(list_tree(path))
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as err:
        raise StorageError(f"cannot check whether {path} exists: {_reason(err)}") from err
    return True


def entries(directory: str) -> list[str]:
    """The names directly inside `directory` (none when it does not exist or is a file)."""
    if is_remote(directory):
        prefix = directory.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/", 1)[0] for p in list_tree(directory) if p.startswith(prefix)})
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise StorageError(f"cannot list {directory}: {_reason(err)}") from err


def read_bytes(path: str) -> Optional[bytes]:
    """The file's bytes; None when it does not exist. Raises `StorageError` naming the path for any other
    failure (a file that exists but cannot be read is not missing)."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        try:
            with FileSystems.open(path, compression_type="uncompressed") as f:
                return f.read()
        except Exception as err:  # noqa: BLE001 -- Beam and the file systems under it raise their own types
            if _absent(err) or not _remote_exists(path):
                return None
            raise StorageError(f"cannot read {path}: {_reason(err)}") from err
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise StorageError(f"cannot read {path}: {_reason(err)}") from err


def read_text(path: str) -> Optional[str]:
    """The file's UTF-8 text; None when it does not exist. Raises `StorageError` when it cannot be read or is
    not UTF-8."""
    data = read_bytes(path)
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StorageError(f"cannot read {path}: it is not UTF-8 text ({err})") from err


def _fsync_directory(directory: str) -> None:
    """Makes a rename inside `directory` durable; nothing where directories cannot be opened (not POSIX)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # no fsync for directories there
            raise
    finally:
        os.close(fd)


def write_bytes(path: str, data: bytes) -> None:
    """Writes the whole file at once (its directory made first): locally through a temporary file, flushed to
    disk and then renamed into place (so a crash leaves the old file or the new one, never a part), under a
    name of its own per call (concurrent writers never share one) that is removed when the write fails; an
    object store shows an object only once it is complete."""
    with _writing(path):
        _write_bytes(path, data)


def _write_bytes(path: str, data: bytes) -> None:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path, compression_type="uncompressed") as f:
            f.write(data)
        return
    directory = os.path.dirname(path) or "."
    makedirs(directory)
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def append_text(path: str, text: str) -> None:
    """Adds `text` at the end of the file (made when missing). Object stores cannot append: there the file is
    read and written again whole, which suits the small logs this is for (a failed read raises: the file is
    never rewritten from a part)."""
    if is_remote(path):
        write_bytes(path, (read_bytes(path) or b"") + text.encode("utf-8"))
        return
    makedirs(os.path.dirname(path) or ".")
    with _writing(path), open(path, "a", encoding="utf-8") as f:
        f.write(text)


def move_tree(source: str, target: str, last: tuple[str, ...] = ()) -> None:
    """Moves the directory `source` to `target` (which must not exist). Locally one rename; on an object store,
    which cannot rename, each object is copied, the files named in `last` after the others (so that a reader
    polling for them, as TF Serving polls for saved_model.pb, sees a complete tree), then `source` is deleted:
    pass only a directory the command made itself (`ownership.temporary_directory`), as the export does.
    On an object store nothing is copied when `target` has objects under it (or cannot be listed)."""
    if not is_remote(source):
        os.rename(source, target)
        return
    from apache_beam.io.filesystems import FileSystems

    prefix = source.rstrip("/") + "/"
    found = sorted(list_tree(source), key=lambda p: p.rsplit("/", 1)[-1] in last)
    if not found:
        raise FileNotFoundError(f"nothing to move: no file under {source}")
    if list_tree(target):
        raise FileExistsError(f"cannot move {source} to {target}: {target} already has files")
    for path in found:
        FileSystems.copy([path], [join(target, path[len(prefix):])])
    delete(source)


def delete(path: str) -> None:
    """Deletes a file, a link (not what it points to) or a directory tree. Call it only after ownership's checks."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        found = list_tree(path)
        if FileSystems.exists(path):
            found.append(path)
        if found:
            FileSystems.delete(sorted(set(found)))
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.remove(path)
    else:
        shutil.rmtree(path)
