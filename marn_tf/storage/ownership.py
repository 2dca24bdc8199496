"""What marn may delete, and who writes where: ownership markers, guarded removal, inputs kept out of outputs.

Every deletion marn makes goes through this module (`remove`, `clear`, `temporary_directory`), and so do
the checks that come before a command writes anything:

* **Ownership marker.** A command that writes a directory claims it first: a new or empty directory gets
  `<dir>/.marn-owner.json` (the kind of output, the command, a run id, host, pid, time) before anything else
  is written there. A directory that is not empty and has no marker is refused, with what to do; so is one
  whose marker names another kind of output (a `marn run` directory is no `marn preprocess` output).
* **Guarded removal.** `remove(path, owner_dir)` deletes only strictly inside a directory that carries the
  marker; `clear(dir, allowed)` empties a marked directory of the entries its command writes, and refuses
  (before deleting anything) when it holds anything else.
* **Inputs first.** `check_inputs_outside(inputs, written)` refuses when an input (a file, a glob's
  directory, a config file) lies at or under a path the command deletes or overwrites.
* **Lock.** `locks.lock(dir)`: one command per directory at a time.

`owned_directory(...)` does it all in order: read-only checks, then create, lock, claim.
Local directories get every guarantee; a remote one (gs://...) gets the marker and the checks, not the lock.
"""
from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import shutil
import socket
import tempfile
import uuid
from typing import Callable, Iterable, Iterator, Optional, Sequence

from marn_tf.storage import files
from marn_tf.storage.errors import OwnershipError
from marn_tf.storage.locks import LOCK, describe_holder, is_stale, lock, process_identity, utc_now

log = logging.getLogger(__name__)

MARKER = ".marn-owner.json"
_OWN_FILES = (MARKER, LOCK)

# Kinds of directories and the commands that write them.
RUN = "run"                # `marn run`, `marn demo`: a run directory
PREPROCESS = "preprocess"  # `marn preprocess`: a pipeline output (also <run>/preprocessed)
GENERATE = "generate-data"  # `marn generate-data`: a generated raw dataset (also <demo>/raw)
TRAIN = "train"            # `marn train`: a training run (also <run>/model, <run>/ladder/<rung>)
TEMPORARY = "temporary"    # `temporary_directory`: a directory written, then renamed into place (an export version)
SCORE = "score"            # `marn score`: the directory of its --output prefix (several prefixes may share it)
EMBED_ITEMS = "embed-items"  # `marn embed-items`: likewise
_TEMPORARY: set = set()    # this process's temporary directories still being written


# ------------------------------------------------------------------------------------------------------ marker

def read_marker(directory: str) -> Optional[dict]:
    """The directory's ownership marker; None when it has none. Raises when it is unreadable."""
    path = files.join(directory, MARKER)
    if not files.exists(path):
        return None
    text = files.read_text(path)
    try:
        marker = json.loads(text) if text is not None else None
    except ValueError:
        marker = None
    if not isinstance(marker, dict) or not isinstance(marker.get("kind"), str):
        raise OwnershipError(f"{path} is not a marn ownership marker marn can read, so marn cannot tell who wrote "
                             f"{directory}: it will not write there. Choose another directory.")
    return marker


def is_own_file(name: str) -> bool:
    """The marker, the lock, or what writing them atomically may leave for an instant."""
    return name.startswith(_OWN_FILES)


def _foreign_entries(directory: str) -> list[str]:
    return [e for e in files.entries(directory) if not is_own_file(e)]


def check_claimable(directory: str, kind: str, command: str, hint: str = "",
                    adopt: Optional[Callable[[list[str]], bool]] = None) -> Optional[dict]:
    """Read-only: the directory's marker (None for a new or empty directory); raises when `command` must not
    write there: not empty without a marker, or a marker of another kind. `adopt(entries)` says whether an
    unmarked directory holding `entries` is one `command` wrote before markers existed (then it is claimable)."""
    if not files.is_remote(directory) and os.path.lexists(directory) and not os.path.isdir(directory):
        raise OwnershipError(f"{directory} is a file, not a directory: `{command}` writes a directory there. "
                             "Choose another path.")
    marker = read_marker(directory)
    if marker is None:
        found = _foreign_entries(directory)
        if found and not (adopt and adopt(found)):
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise OwnershipError(
                f"{directory} is not empty ({shown}) and has no {MARKER}, so marn cannot prove that `{command}` "
                f"wrote it; it refuses to write there, since that could delete or overwrite what is in it. "
                f"Choose a new or empty directory{hint}, or move away what is in it.")
        return None
    if marker["kind"] != kind:
        raise OwnershipError(
            f"{directory} holds the output of `{marker.get('command', marker['kind'])}` (its {MARKER} says "
            f"{marker['kind']!r}), not of `{command}`: marn will not write or delete there. Choose another directory.")
    return marker


def claim(directory: str, kind: str, command: str, hint: str = "", fresh: bool = False,
          adopt: Optional[Callable[[list[str]], bool]] = None) -> dict:
    """Makes `directory` if needed and writes its marker first (kept when already there, unless `fresh`: a new
    run id for a directory the command has just emptied); returns the marker. `adopt`: as for `check_claimable`."""
    marker = check_claimable(directory, kind, command, hint, adopt)
    if marker is not None and not fresh:
        return marker
    files.makedirs(directory)
    marker = {"written_by": "marn-tf", "kind": kind, "command": command, "run_id": uuid.uuid4().hex,
              "created": utc_now(), "host": socket.gethostname(), "pid": os.getpid()}
    files.write_text(files.join(directory, MARKER), json.dumps(marker, indent=2) + "\n")
    return marker


# ---------------------------------------------------------------------------------------------------- removing

def _require_marked(owner_dir: str) -> None:
    if read_marker(owner_dir) is None:
        raise OwnershipError(f"{owner_dir} has no {MARKER}: marn deletes only inside directories it wrote")


def remove(path: str, owner_dir: str) -> bool:
    """Deletes `path` (file or tree) if it exists; only strictly inside `owner_dir`, which must carry the marker.

    Returns whether something was deleted. A link is removed, never what it points to; a path that leaves
    `owner_dir` (through `..` or a link on the way) is refused.
    """
    owner = files.normal_path(owner_dir)
    if files.is_remote(path) != files.is_remote(owner_dir):
        raise OwnershipError(f"refusing to delete {path}: it is not inside {owner_dir}")
    if files.is_remote(path):
        target = files.normal_path(path)
    else:  # the entry itself, not what a link at its end points to
        absolute = os.path.abspath(path)
        target = os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))
    if target == owner or not files.is_under(target, owner):
        raise OwnershipError(f"refusing to delete {path}: it is not inside the directory {owner_dir} that this "
                             "command owns")
    if os.path.basename(target.rstrip("/")) in _OWN_FILES and files.normal_path(os.path.dirname(target)) == owner:
        raise OwnershipError(f"refusing to delete {path}: the ownership marker and lock stay")
    _require_marked(owner_dir)
    if not files.exists(path):
        return False
    files.delete(path)
    return True


def clear(directory: str, allowed: Sequence[str], command: str) -> list[str]:
    """Deletes every entry of the marked `directory` (except its marker and lock): all must match `allowed`
    (names or fnmatch patterns of what `command` writes), else nothing is deleted. Returns what was deleted."""
    _require_marked(directory)
    found = _foreign_entries(directory)
    unknown = [e for e in found if not any(fnmatch.fnmatchcase(e, pattern) for pattern in allowed)]
    if unknown:
        raise OwnershipError(
            f"{directory} holds {', '.join(unknown[:5])}, which `{command}` does not write: nothing was deleted. "
            f"Move {'it' if len(unknown) == 1 else 'them'} out of {directory} (or choose another directory).")
    for name in found:
        remove(files.join(directory, name), directory)
    return found


@contextlib.contextmanager
def temporary_directory(parent: str, prefix: str, command: str = "marn") -> Iterator[str]:
    """A new directory under `parent` that only this process made; removed on the way out (an exception
    included) unless the body renamed it away.

    Its marker (kind `temporary`, host, boot id, pid namespace, pid, process start) is written first and travels
    with it when renamed: one left by a killed process is recognised and removed by `remove_stale_temporaries`.
    Under a URL (an object store) the directory is a new random prefix.
    """
    if files.is_remote(parent):
        path = files.join(parent, f"{prefix}{uuid.uuid4().hex[:12]}")
    else:
        os.makedirs(parent, exist_ok=True)
        path = tempfile.mkdtemp(prefix=prefix, dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o777 & ~umask)  # what os.makedirs would give it: mkdtemp's 0700 would hide it from a server
    key = files.normal_path(path)
    _TEMPORARY.add(key)
    try:
        files.write_text(files.join(path, MARKER), json.dumps(
            {"written_by": "marn-tf", "kind": TEMPORARY, "command": command, "started": utc_now(),
             **process_identity()},
            indent=2) + "\n")
        yield path
    finally:
        _TEMPORARY.discard(key)
        if files.is_remote(path):
            if files.list_tree(path):
                files.delete(path)
        elif os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_temporaries(parent: str, prefix: str) -> list[str]:
    """Deletes the `prefix*` directories in `parent` that `temporary_directory` made in a process that no longer
    runs on this host (what a killed export leaves); anything without that marker, or whose process may still
    run, is left. Returns what was deleted."""
    removed = []
    for name in files.entries(parent):
        path = files.join(parent, name)
        local_non_directory = not files.is_remote(path) and (os.path.islink(path) or not os.path.isdir(path))
        if not name.startswith(prefix) or local_non_directory:
            continue
        try:
            marker = read_marker(path)
        except (OwnershipError, files.StorageError):  # nothing readable proves marn made it: left alone
            continue
        if marker is not None and marker["kind"] == TEMPORARY and is_stale(marker, files.normal_path(path),
                                                                           _TEMPORARY):
            log.warning("removing %s, left by %s, which is no longer running", path, describe_holder(marker))
            files.delete(path)
            removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------------------ inputs

def check_inputs_outside(inputs: Iterable[tuple[str, str]], written: Iterable[str], command: str) -> None:
    """Refuses when an input lies at or under a path the command deletes or overwrites.

    `inputs`: (what it is, path or glob): for a glob, both the directory it reads from and every file it
    matches (pass matched files as their own entries) are protected.
    """
    written = [(w, files.normal_path(w)) for w in written]
    for what, path in inputs:
        candidates = {path, files.glob_base(path)}
        for candidate in candidates:
            normal = files.normal_path(candidate)
            for shown, target in written:
                if files.is_under(normal, target):
                    raise OwnershipError(
                        f"{what} {path} is inside {shown}, which `{command}` deletes or overwrites: refusing "
                        f"before touching anything. Write the output somewhere that holds none of its inputs.")


@contextlib.contextmanager
def owned_directory(directory: str, kind: str, command: str, inputs: Iterable[tuple[str, str]] = (),
                    written: Optional[Sequence[str]] = None, hint: str = "") -> Iterator[dict]:
    """Checks (read-only) that `command` may write `directory` and that no input lies in what it deletes or
    overwrites (`written`, default: the whole directory), then creates it, locks it and claims it; yields the
    marker. Nothing is created or written when a check fails."""
    check_inputs_outside(list(inputs), list(written) if written is not None else [directory], command)
    check_claimable(directory, kind, command, hint)
    with lock(directory, command):
        yield claim(directory, kind, command, hint)  # again under the lock: what it found may have changed
