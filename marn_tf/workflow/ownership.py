"""What marn may delete, and who writes where: ownership markers, directory locks, guarded removal.

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
* **Lock.** `lock(dir)` makes `<dir>/.marn.lock` by exclusive create, naming pid, host, start time and
  command: a second command on the same directory fails at once naming the holder. A lock left by a process
  that no longer runs on this host is taken over. Released on exit, also on exceptions (a lock left by a
  killed process is stale and taken over by the next command).

`owned_directory(...)` does it all in order: read-only checks, then create, lock, claim.
Local directories get every guarantee; a remote one (gs://...) gets the marker and the checks, not the lock.
"""
from __future__ import annotations

import contextlib
import datetime
import fnmatch
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from typing import Iterable, Iterator, Optional, Sequence

from marn_tf.config_loader import ConfigError

log = logging.getLogger(__name__)

MARKER = ".marn-owner.json"
LOCK = ".marn.lock"
_OWN_FILES = (MARKER, LOCK)
_GLOB_CHARS = "*?["

# Kinds of directories and the commands that write them.
RUN = "run"                # `marn run`, `marn demo`: a run directory
PREPROCESS = "preprocess"  # `marn preprocess`: a pipeline output (also <run>/preprocessed)
GENERATE = "generate-data"  # `marn generate-data`: a generated raw dataset (also <demo>/raw)
TEMPORARY = "temporary"    # `temporary_directory`: a directory written, then renamed into place (an export version)
_TEMPORARY: set = set()    # this process's temporary directories still being written


class OwnershipError(ConfigError):
    """marn refuses to write or delete here; the message says why and what to do."""


class LockedError(OwnershipError):
    """Another marn command holds the directory's lock."""


def is_remote(path: str) -> bool:
    return "://" in path


def _normal(path: str) -> str:
    """A comparable form: the real absolute path locally, the cleaned URL otherwise."""
    if is_remote(path):
        scheme, rest = path.split("://", 1)
        parts = [p for p in rest.split("/") if p not in ("", ".")]
        return f"{scheme}://" + "/".join(parts)
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _under(path: str, parent: str) -> bool:
    """`path` is `parent` or inside it (both normalised)."""
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def glob_base(pattern: str) -> str:
    """The directory a path or glob reads from: the part before the first wildcard component."""
    if not any(c in pattern for c in _GLOB_CHARS):
        return pattern
    head, sep, parts = "", "", pattern.split("/")
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


# ----------------------------------------------------------------------------------------------- file systems

def _exists(path: str) -> bool:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.exists(path) or bool(_remote_files(path))
    return os.path.lexists(path)


def _remote_files(directory: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    try:
        (result,) = FileSystems.match([directory.rstrip("/") + "/**"])
    except Exception:  # noqa: BLE001 -- nothing there: Beam raises rather than match nothing
        return []
    return [m.path for m in result.metadata_list]


def entries(directory: str) -> list[str]:
    """The names directly inside `directory` (none when it does not exist)."""
    if is_remote(directory):
        prefix = directory.rstrip("/") + "/"
        return sorted({p[len(prefix):].split("/", 1)[0] for p in _remote_files(directory) if p.startswith(prefix)})
    if not os.path.isdir(directory):
        return []
    return sorted(os.listdir(directory))


def _read_text(path: str) -> Optional[str]:
    try:
        if is_remote(path):
            from apache_beam.io.filesystems import FileSystems

            with FileSystems.open(path) as f:
                return f.read().decode("utf-8")
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None
    except Exception:  # noqa: BLE001 -- Beam's errors for a missing remote file
        return None


def _write_text(path: str, text: str) -> None:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path) as f:
            f.write(text.encode("utf-8"))
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _delete(path: str) -> None:
    """Deletes a file, a link (not what it points to) or a directory tree. Only called after the checks."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems

        files = _remote_files(path)
        if FileSystems.exists(path):
            files.append(path)
        if files:
            FileSystems.delete(sorted(set(files)))
        return
    if os.path.islink(path) or not os.path.isdir(path):
        os.remove(path)
    else:
        shutil.rmtree(path)


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name if is_remote(directory) else os.path.join(directory, name)


# ------------------------------------------------------------------------------------------------------ marker

def read_marker(directory: str) -> Optional[dict]:
    """The directory's ownership marker; None when it has none. Raises when it is unreadable."""
    path = _join(directory, MARKER)
    if not _exists(path):
        return None
    text = _read_text(path)
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
    return [e for e in entries(directory) if not is_own_file(e)]


def check_claimable(directory: str, kind: str, command: str, hint: str = "") -> Optional[dict]:
    """Read-only: the directory's marker (None for a new or empty directory); raises when `command` must not
    write there: not empty without a marker, or a marker of another kind."""
    if not is_remote(directory) and os.path.lexists(directory) and not os.path.isdir(directory):
        raise OwnershipError(f"{directory} is a file, not a directory: `{command}` writes a directory there. "
                             "Choose another path.")
    marker = read_marker(directory)
    if marker is None:
        found = _foreign_entries(directory)
        if found:
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


def claim(directory: str, kind: str, command: str, hint: str = "", fresh: bool = False) -> dict:
    """Makes `directory` if needed and writes its marker first (kept when already there, unless `fresh`: a new
    run id for a directory the command has just emptied); returns the marker."""
    marker = check_claimable(directory, kind, command, hint)
    if marker is not None and not fresh:
        return marker
    if not is_remote(directory):
        os.makedirs(directory, exist_ok=True)
    marker = {"written_by": "marn-tf", "kind": kind, "command": command, "run_id": uuid.uuid4().hex,
              "created": _now(), "host": socket.gethostname(), "pid": os.getpid()}
    _write_text(_join(directory, MARKER), json.dumps(marker, indent=2) + "\n")
    return marker


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------- removing

def _require_marked(owner_dir: str) -> None:
    if read_marker(owner_dir) is None:
        raise OwnershipError(f"{owner_dir} has no {MARKER}: marn deletes only inside directories it wrote")


def remove(path: str, owner_dir: str) -> bool:
    """Deletes `path` (file or tree) if it exists; only strictly inside `owner_dir`, which must carry the marker.

    Returns whether something was deleted. A link is removed, never what it points to; a path that leaves
    `owner_dir` (through `..` or a link on the way) is refused.
    """
    owner = _normal(owner_dir)
    if is_remote(path) != is_remote(owner_dir):
        raise OwnershipError(f"refusing to delete {path}: it is not inside {owner_dir}")
    if is_remote(path):
        target = _normal(path)
    else:  # the entry itself, not what a link at its end points to
        absolute = os.path.abspath(path)
        target = os.path.join(os.path.realpath(os.path.dirname(absolute)), os.path.basename(absolute))
    if target == owner or not _under(target, owner):
        raise OwnershipError(f"refusing to delete {path}: it is not inside the directory {owner_dir} that this "
                             "command owns")
    if os.path.basename(target.rstrip("/")) in _OWN_FILES and _normal(os.path.dirname(target)) == owner:
        raise OwnershipError(f"refusing to delete {path}: the ownership marker and lock stay")
    _require_marked(owner_dir)
    if not _exists(path):
        return False
    _delete(path)
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
        remove(_join(directory, name), directory)
    return found


@contextlib.contextmanager
def temporary_directory(parent: str, prefix: str, command: str = "marn") -> Iterator[str]:
    """A new directory under `parent` that only this process made; removed on the way out (an exception
    included) unless the body renamed it away.

    Its marker (kind `temporary`, host, pid, process start) is written first and travels with it when renamed:
    one left by a killed process is recognised and removed by `remove_stale_temporaries`.
    """
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)  # what os.makedirs would give it: mkdtemp's 0700 would hide it from a server
    key = _normal(path)
    _TEMPORARY.add(key)
    try:
        _write_text(os.path.join(path, MARKER), json.dumps(
            {"written_by": "marn-tf", "kind": TEMPORARY, "command": command, "started": _now(),
             "host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid())},
            indent=2) + "\n")
        yield path
    finally:
        _TEMPORARY.discard(key)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_temporaries(parent: str, prefix: str) -> list[str]:
    """Deletes the `prefix*` directories in `parent` that `temporary_directory` made in a process that no longer
    runs on this host (what a killed export leaves); anything without that marker, or whose process may still
    run, is left. Returns what was deleted."""
    removed = []
    for name in entries(parent):
        path = os.path.join(parent, name)
        if not name.startswith(prefix) or os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            marker = read_marker(path)
        except OwnershipError:
            continue
        if marker is not None and marker["kind"] == TEMPORARY and _stale(marker, _normal(path), _TEMPORARY):
            log.warning("removing %s, left by %s, which is no longer running", path, describe_holder(marker))
            _delete(path)
            removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------------------ inputs

def check_inputs_outside(inputs: Iterable[tuple[str, str]], written: Iterable[str], command: str) -> None:
    """Refuses when an input lies at or under a path the command deletes or overwrites.

    `inputs`: (what it is, path or glob): for a glob, both the directory it reads from and every file it
    matches (pass matched files as their own entries) are protected.
    """
    written = [(w, _normal(w)) for w in written]
    for what, path in inputs:
        candidates = {path, glob_base(path)}
        for candidate in candidates:
            normal = _normal(candidate)
            for shown, target in written:
                if _under(normal, target):
                    raise OwnershipError(
                        f"{what} {path} is inside {shown}, which `{command}` deletes or overwrites: refusing "
                        f"before touching anything. Write the output somewhere that holds none of its inputs.")


# -------------------------------------------------------------------------------------------------------- lock

_HELD: dict[str, list] = {}  # normalised directory -> [depth, token] of the locks this process holds


def _process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:  # not a process: 0 and -1 would name a process group or every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _read_lock(path: str) -> Optional[dict]:
    text = _read_text(path)
    try:
        holder = json.loads(text) if text else None
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _stale(holder: dict, key: str, held: Optional[set] = None) -> bool:
    """The holder is known not to run any more: same host, and its pid is gone (or now another process).
    `held`: what this process holds now (default: its locks)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    pid = holder["pid"]
    if pid == os.getpid():
        # an earlier process that had this pid (e.g. in a container)
        return key not in (_HELD if held is None else held)
    if not _alive(pid):
        return True
    started = holder.get("process_start")
    return started is not None and _process_start(pid) not in (None, started)


def describe_holder(holder: dict) -> str:
    return (f"`{holder.get('command', 'marn')}` (pid {holder.get('pid')} on host {holder.get('host')}, "
            f"started {holder.get('started')})")


def _locked_error(directory: str, path: str, holder: Optional[dict]) -> LockedError:
    if holder is None:
        return LockedError(f"{directory} is locked by another marn command ({path} is being written or cannot be "
                           f"read). Wait for it to finish; if no marn command is running there, delete {path}.")
    other_host = holder.get("host") != socket.gethostname()
    return LockedError(
        f"{directory} is in use by {describe_holder(holder)}: two marn commands must not write the same directory "
        f"at once. Wait for it to finish; if that process is no longer running"
        f"{' (marn cannot check a process on another host)' if other_host else ''}, delete {path}.")


def _take_over(path: str, holder: dict) -> bool:
    """Moves a stale lock away; False when it changed meanwhile (someone else took it over first)."""
    aside = f"{path}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True  # already gone: try again
    moved = _read_lock(aside)
    if moved is None or moved.get("token") != holder.get("token"):
        with contextlib.suppress(OSError):
            os.link(aside, path)  # a fresh lock was there: put it back (unless a newer one is already)
        os.remove(aside)
        return False
    os.remove(aside)
    log.warning("taking over the lock of %s left by %s, which is no longer running", os.path.dirname(path),
                describe_holder(holder))
    return True


def _create_exclusive(path: str, text: str) -> None:
    """Creates `path` with `text`, complete, or raises FileExistsError: link a written file into place."""
    tmp = f"{path}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: exclusive create, then write
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    finally:
        os.remove(tmp)


def _acquire(directory: str, key: str, command: str) -> str:
    path = os.path.join(directory, LOCK)
    token = uuid.uuid4().hex
    info = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
            "process_start": _process_start(os.getpid()), "token": token}
    for _ in range(5):
        try:
            _create_exclusive(path, json.dumps(info, indent=2) + "\n")
            return token
        except FileExistsError:
            pass
        holder = _read_lock(path)
        if holder is None:  # another process is writing it this instant, or it is damaged
            time.sleep(0.2)
            holder = _read_lock(path)
            if holder is None:
                if os.path.exists(path) and time.time() - os.path.getmtime(path) > 60:
                    holder = {"token": None, "host": socket.gethostname(), "pid": -1}  # damaged and old: stale
                else:
                    raise _locked_error(directory, path, None)
        if not _stale(holder, key):
            raise _locked_error(directory, path, holder)
        _take_over(path, holder)
    raise _locked_error(directory, path, _read_lock(path))


@contextlib.contextmanager
def lock(directory: str, command: str) -> Iterator[None]:
    """Holds `<directory>/.marn.lock` for the body (re-entrant within one process)."""
    if is_remote(directory):
        log.info("no lock on %s: locks are for local directories", directory)
        yield
        return
    key = _normal(directory)
    if key in _HELD:
        _HELD[key][0] += 1
        try:
            yield
        finally:
            _HELD[key][0] -= 1
        return
    os.makedirs(directory, exist_ok=True)
    token = _acquire(directory, key, command)
    _HELD[key] = [1, token]
    try:
        yield
    finally:
        depth = _HELD[key][0] - 1
        if depth <= 0:
            del _HELD[key]
            path = os.path.join(directory, LOCK)
            holder = _read_lock(path)
            if holder is not None and holder.get("token") == token:
                os.remove(path)
        else:
            _HELD[key][0] = depth


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
