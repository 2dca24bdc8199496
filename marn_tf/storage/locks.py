"""One marn command per directory: `lock(dir)` holds `<dir>/.marn.lock`, so that a second command on the same
directory fails at once naming the holder. Released on exit, also on exceptions; re-entrant within a process.

Where the file system has kernel locks (`flock`: local disks; NFS through the kernel's emulation), the lock is the
kernel's, taken on that file: it ends with its process however the process ends (a crash, SIGKILL, a reboot), so
no holder is ever judged from outside. The file holds the owner record (command, host, pid, start time) for the
message; a record left there by a process that held no kernel lock is judged as below before it is replaced.

Elsewhere the file is made by exclusive create, and one left by a process that no longer runs is taken over only
when the record proves that process was this machine's, in this pid namespace: same host name, boot id
(`/proc/sys/kernel/random/boot_id`) and pid namespace (`/proc/self/ns/pid`), and its pid gone or now another
process (told by the process's start time). Two containers with one host name (`--network host`), both PID 1,
differ in their pid namespaces, so neither takes over the other's lock.

Local directories only: object stores have neither (a remote directory gets no lock).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import socket
import time
import uuid
from typing import Iterator, Optional

from marn_tf.storage import files
from marn_tf.storage.errors import LockedError

try:
    import fcntl
except ImportError:  # not POSIX: owner records only
    fcntl = None

log = logging.getLogger(__name__)

LOCK = ".marn.lock"
_NO_KERNEL_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL)  # what flock says where it has none


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# normalised directory -> [depth, (KERNEL, fd) or (RECORD, token)] of the locks this process holds
_HELD: dict[str, list] = {}
KERNEL, RECORD = "kernel", "record"


def process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _boot_id() -> Optional[str]:
    """This boot of this machine's kernel (Linux); the same in every container on it."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_namespace() -> Optional[str]:
    """The pid namespace this process's pids mean something in, e.g. `pid:[4026531836]` (Linux)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_identity() -> dict:
    """Who this process is, for a lock or marker another process may judge: host, boot id, pid namespace, pid
    and the process's start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid_namespace": _pid_namespace(), "pid": pid,
            "process_start": process_start(pid)}


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
    """The owner record at `path`; None when there is none or it cannot be read (never a reason to take over)."""
    try:
        text = files.read_text(path)
        holder = json.loads(text) if text else None
    except (files.StorageError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _same_process_space(holder: dict) -> bool:
    """The holder's pid names a process this process can see: same host, same boot, same pid namespace."""
    mine = process_identity()
    if mine["boot_id"] is None or mine["pid_namespace"] is None:  # cannot prove it: another machine may share a name
        return False
    return all(holder.get(k) == mine[k] for k in ("host", "boot_id", "pid_namespace"))


def is_stale(holder: dict, key: str, held: Optional[set] = None) -> bool:
    """The holder is known not to run any more: the same host, boot and pid namespace as this process, and its pid
    gone (or now another process). Anything else (another host or container, a record without these fields) cannot
    be checked from here, so it is not stale. `held`: what this process holds now (default: its locks)."""
    if not _same_process_space(holder) or not isinstance(holder.get("pid"), int):
        return False
    pid = holder["pid"]
    if pid == os.getpid():  # this process, or an earlier one in this namespace that had its pid
        return key not in (_HELD if held is None else held)
    if not _alive(pid):
        return True
    started = holder.get("process_start")
    return started is not None and process_start(pid) not in (None, started)


def describe_holder(holder: dict) -> str:
    return (f"`{holder.get('command', 'marn')}` (pid {holder.get('pid')} on host {holder.get('host')}, "
            f"started {holder.get('started')})")


def _locked_error(directory: str, path: str, holder: Optional[dict], kernel: bool) -> LockedError:
    """`kernel`: the kernel says a live process holds it, so the file must not be deleted."""
    if kernel:
        holder_text = describe_holder(holder) if holder else "another marn command (its record is being written)"
        return LockedError(f"{directory} is in use by {holder_text}: two marn commands must not write the same "
                           f"directory at once. Wait for it to finish.")
    if holder is None:
        return LockedError(f"{directory} is locked by another marn command ({path} is being written or cannot be "
                           f"read). Wait for it to finish; if no marn command is running there, delete {path}.")
    if holder.get("host") != socket.gethostname():
        unchecked = " (marn cannot check a process on another host)"
    elif not _same_process_space(holder):
        unchecked = " (marn cannot check a process in another container or boot)"
    else:
        unchecked = ""
    return LockedError(
        f"{directory} is in use by {describe_holder(holder)}: two marn commands must not write the same directory "
        f"at once. Wait for it to finish; if that process is no longer running{unchecked}, delete {path}.")


# ------------------------------------------------------------------------------------------------- kernel lock

def _acquire_kernel(directory: str, key: str, path: str, record: dict) -> Optional[int]:
    """Takes the kernel lock on `path` and writes the owner record into it; returns the descriptor that holds it,
    None where the file system has no kernel locks. Raises LockedError when a live process holds it."""
    if fcntl is None:
        return None
    for _ in range(5):
        opened = _open_lock_file(directory, path)
        if opened is None:  # removed between two looks: look again
            continue
        fd, created = opened
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_lock(path)
            if holder is None:  # its holder is writing the record this instant
                time.sleep(0.2)
                holder = _read_lock(path)
            raise _locked_error(directory, path, holder, kernel=True) from None
        except OSError as err:
            os.close(fd)
            if err.errno not in _NO_KERNEL_LOCKS:
                raise
            if created:  # the owner record is made by exclusive create instead
                os.remove(path)
            return None
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if not current:  # its holder removed it on release after this process opened it: lock the file there now
            os.close(fd)
            continue
        # Read through this descriptor: on NFS closing another one of this file would drop the lock.
        left = _parse(os.pread(fd, 1 << 16, 0))
        if left and left.get("lock") != KERNEL and not is_stale(left, key):
            # an owner record without a kernel lock (a marn without them): its holder may still run
            os.close(fd)
            raise _locked_error(directory, path, left, kernel=False)
        if left:
            log.warning("taking over the lock of %s left by %s, which is no longer running", directory,
                        describe_holder(left))
        data = (json.dumps({**record, "lock": KERNEL}, indent=2) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        return fd
    raise _locked_error(directory, path, _read_lock(path), kernel=True)


def _open_lock_file(directory: str, path: str) -> Optional[tuple[int, bool]]:
    """(descriptor, whether this call created the file); None when it vanished between two looks. Never through
    a link: the record is written into the file opened."""
    flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            return os.open(path, flags), False
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.EISDIR):
            raise
        raise LockedError(f"{path} is a link or a directory, not a lock file marn writes: it will not lock "
                          f"{directory} through it. Remove it.") from err


def _parse(data: bytes) -> Optional[dict]:
    try:
        holder = json.loads(data.decode("utf-8")) if data else None
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _release_kernel(path: str, fd: int) -> None:
    """Removes the file while still holding it (whoever opened it meanwhile finds it gone and tries again), then
    lets it go."""
    try:
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                os.remove(path)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------- owner record only (no kernel locks)

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


def _acquire_record(directory: str, key: str, path: str, record: dict) -> None:
    """Creates the owner record exclusively, taking over one whose holder provably no longer runs. A record that
    cannot be read is never taken over: nothing says whose it is."""
    text = json.dumps({**record, "lock": RECORD}, indent=2) + "\n"
    for _ in range(5):
        try:
            _create_exclusive(path, text)
            return
        except FileExistsError:
            pass
        holder = _read_lock(path)
        if holder is None:  # another process is writing it this instant, or it is damaged
            time.sleep(0.2)
            holder = _read_lock(path)
            if holder is None:
                raise _locked_error(directory, path, None, kernel=False)
        if not is_stale(holder, key):
            raise _locked_error(directory, path, holder, kernel=False)
        _take_over(path, holder)
    raise _locked_error(directory, path, _read_lock(path), kernel=False)


def _release_record(path: str, token: str) -> None:
    holder = _read_lock(path)
    if holder is not None and holder.get("token") == token:
        os.remove(path)


# ----------------------------------------------------------------------------------------------------- the lock

def _acquire(directory: str, key: str, command: str) -> tuple:
    path = os.path.join(directory, LOCK)
    token = uuid.uuid4().hex
    record = {"command": command, **process_identity(), "started": utc_now(), "token": token}
    fd = _acquire_kernel(directory, key, path, record)
    if fd is not None:
        return KERNEL, fd
    _acquire_record(directory, key, path, record)
    return RECORD, token


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
    handle = _acquire(directory, key, command)
    _HELD[key] = [1, handle]
    try:
        yield
    finally:
        depth = _HELD[key][0] - 1
        if depth <= 0:
            del _HELD[key]
            kind, value = handle
            path = os.path.join(directory, LOCK)
            if kind == KERNEL:
                _release_kernel(path, value)
            else:
                _release_record(path, value)
        else:
            _HELD[key][0] = depth
