"""One file-access API: local paths through `os`, URLs (gs://, s3://, hdfs://, ...) through Beam's
`FileSystems`, which dispatches on the scheme to whatever file systems are installed (and to test ones).

Nothing here knows about marn's directories; `ownership` builds on it.
"""
from __future__ import annotations

import os
import shutil
from typing import Optional

_GLOB_CHARS = "*?["


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


def list_tree(directory: str) -> list[str]:
    """Every file under the URL `directory` (object stores have no directories, only names with slashes)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        (result,) = FileSystems.match([directory.rstrip("/") + "/**"])
    except Exception:  # noqa: BLE001 -- nothing there: Beam raises rather than match nothing
        return []
    return [m.path for m in result.metadata_list]


def exists(path: str) -> bool:
    """A file, a link or a directory (for a URL: an object, or a prefix with objects under it)."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path) or bool(list_tree(path))
    return os.path.lexists(path)


def entries(directory: str) -> list[str]:
    """The names directly inside `directory` (none when it does not exist)."""
    if is_remote(directory):
        prefix = directory.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/", 1)[0] for p in list_tree(directory) if p.startswith(prefix)})
    if not os.path.isdir(directory):
        return []
    return sorted(os.listdir(directory))


def read_bytes(path: str) -> Optional[bytes]:
    """The file's bytes; None when it is missing."""
    try:
        if is_remote(path):
            from apache_beam.io.filesystems import FileSystems

            with FileSystems.open(path, compression_type="uncompressed") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None
    except Exception:  # noqa: BLE001 -- Beam's errors for a missing remote file
        return None


def read_text(path: str) -> Optional[str]:
    """The file's text; None when it is missing or not UTF-8."""
    data = read_bytes(path)
    try:
        return None if data is None else data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def write_bytes(path: str, data: bytes) -> None:
    """Writes the whole file at once (its directory made first): locally through a temporary file renamed into
    place; an object store shows an object only once it is complete."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path, compression_type="uncompressed") as f:
            f.write(data)
        return
    makedirs(os.path.dirname(path) or ".")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def append_text(path: str, text: str) -> None:
    """Adds `text` at the end of the file (made when missing). Object stores cannot append: there the file is
    read and written again whole, which suits the small logs this is for."""
    if is_remote(path):
        write_bytes(path, (read_bytes(path) or b"") + text.encode("utf-8"))
        return
    makedirs(os.path.dirname(path) or ".")
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def move_tree(source: str, target: str, last: tuple[str, ...] = ()) -> None:
    """Moves the directory `source` to `target` (which must not exist). Locally one rename; on an object store,
    which cannot rename, each object is copied, the files named in `last` after the others (so that a reader
    polling for them, as TF Serving polls for saved_model.pb, sees a complete tree), then `source` is deleted:
    pass only a directory the command made itself (`ownership.temporary_directory`), as the export does."""
    if not is_remote(source):
        os.rename(source, target)
        return
    from apache_beam.io.filesystems import FileSystems

    prefix = source.rstrip("/") + "/"
    found = sorted(list_tree(source), key=lambda p: p.rsplit("/", 1)[-1] in last)
    if not found:
        raise FileNotFoundError(f"nothing to move: no file under {source}")
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
