"""One marn command per directory: `lock(dir)` makes `<dir>/.marn.lock` by exclusive create, naming pid, host,
start time and command, so a second command on the same directory fails at once naming the holder. A lock
left by a process that no longer runs on this host is taken over. Released on exit, also on exceptions.
Local directories only: object stores have no exclusive create (a remote directory gets no lock).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import time
import uuid
from typing import Iterator, Optional

from marn_tf.storage import files
from marn_tf.storage.errors import LockedError

log = logging.getLogger(__name__)

LOCK = ".marn.lock"


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


_HELD: dict[str, list] = {}  # normalised directory -> [depth, token] of the locks this process holds


def process_start(pid: int) -> Optional[str]:
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
    text = files.read_text(path)
    try:
        holder = json.loads(text) if text else None
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def is_stale(holder: dict, key: str, held: Optional[set] = None) -> bool:
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
    return started is not None and process_start(pid) not in (None, started)


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
    info = {"command": command, "pid": os.getpid(), "host": socket.gethostname(), "started": utc_now(),
            "process_start": process_start(os.getpid()), "token": token}
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
        if not is_stale(holder, key):
            raise _locked_error(directory, path, holder)
        _take_over(path, holder)
    raise _locked_error(directory, path, _read_lock(path))


@contextlib.contextmanager
def lock(directory: str, command: str) -> Iterator[None]:
    """Holds `<directory>/.marn.lock` for the body (re-entrant within one process)."""
    if files.is_remote(directory):
        log.info("no lock on %s: locks are for local directories", directory)
        yield
        return
    key = files.normal_path(directory)
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
