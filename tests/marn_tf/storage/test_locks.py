"""The directory lock: the kernel's where the file system has one, else an owner record judged by host, boot id,
pid namespace and pid. In one process: another holder is a second open file (the kernel tells it apart from this
one) or a record written as another process would."""
import errno
import fcntl
import json
import logging
import os
import subprocess
import sys

import pytest

from marn_tf.storage import locks, ownership
from marn_tf.storage.errors import LockedError


@pytest.fixture(params=["kernel lock", "owner record only"])
def kernel(request, monkeypatch):
    """True where the file system has kernel locks; False where `flock` fails as on a file system without them."""
    if request.param == "owner record only":
        def no_locks(fd, operation):
            raise OSError(errno.ENOLCK, "No locks available")

        monkeypatch.setattr(fcntl, "flock", no_locks)
    return request.param == "kernel lock"


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def record(**fields) -> dict:
    """An owner record as a process on this machine, in this pid namespace, writes it, with `fields` changed."""
    return {"command": "marn run", **locks.process_identity(), "started": "2026-01-01T00:00:00+00:00",
            "token": "t", "lock": locks.RECORD, **fields}


def hold(path, holder: dict):
    """Another live holder: its record at `path` and, where there are kernel locks, the kernel lock on it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    os.write(fd, json.dumps(holder).encode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        assert err.errno == errno.ENOLCK  # the file system has none: the record is all there is
    return fd


def test_a_container_with_the_same_host_name_and_pid_never_takes_over_a_live_lock(tmp_path, kernel):
    """Two containers with `--network host` share the host name and may both run marn as PID 1: a holder with
    this process's host and pid but another pid namespace is another process, and keeps its lock."""
    directory = tmp_path / "run"
    directory.mkdir()
    other = record(pid=os.getpid(), pid_namespace="pid:[4026532999]", lock=locks.KERNEL if kernel else locks.RECORD)
    fd = hold(directory / locks.LOCK, other)
    try:
        with pytest.raises(LockedError, match=f"in use by `marn run` \\(pid {os.getpid()} on host"):
            with locks.lock(str(directory), "marn run"):
                pass
        assert json.loads((directory / locks.LOCK).read_text()) == other
    finally:
        os.close(fd)


def test_a_new_directory_is_locked_for_the_body_and_released_after(tmp_path, kernel):
    """The lock file holds this command's record while it runs and is gone after, with kernel locks or without
    (where there are none, nothing of the kernel attempt is left in the way of the exclusive create)."""
    directory = tmp_path / "run"
    with locks.lock(str(directory), "marn run"):
        mine = json.loads((directory / locks.LOCK).read_text())
        assert mine["pid"] == os.getpid() and mine["lock"] == (locks.KERNEL if kernel else locks.RECORD)
    assert os.listdir(directory) == []


def test_the_kernel_holds_the_lock_while_the_command_runs_and_it_is_removed_after(tmp_path):
    """Held by the kernel during the body (another open file cannot take it), with the owner record inside; the
    file is gone after."""
    directory = tmp_path / "run"
    with locks.lock(str(directory), "marn run"):
        mine = json.loads((directory / locks.LOCK).read_text())
        assert mine["pid"] == os.getpid() and mine["lock"] == locks.KERNEL and mine["command"] == "marn run"
        assert mine["boot_id"] == locks.process_identity()["boot_id"] and mine["pid_namespace"].startswith("pid:")
        other = os.open(directory / locks.LOCK, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(other)
    assert not (directory / locks.LOCK).exists()


@pytest.mark.parametrize("left", ["a record", "a damaged record"])
def test_a_kernel_lock_left_by_a_process_that_ended_is_taken_over_whoever_wrote_it(tmp_path, caplog, left):
    """No process holds the kernel lock, so whatever the file says (a holder marn cannot check, such as a live
    pid in another container, or bytes that are not a record) it is taken over, with a warning."""
    directory = tmp_path / "run"
    directory.mkdir()
    lock_file = directory / locks.LOCK
    if left == "a record":
        lock_file.write_text(json.dumps(record(pid=os.getppid(), pid_namespace="pid:[4026532999]",
                                               lock=locks.KERNEL)))
    else:
        lock_file.write_bytes(b'{"command": "marn r')
    with caplog.at_level(logging.WARNING, logger=locks.__name__):
        with locks.lock(str(directory), "marn preprocess"):
            assert json.loads(lock_file.read_text())["command"] == "marn preprocess"
    assert not lock_file.exists()
    assert ("taking over the lock" in caplog.text) == (left == "a record")


def test_a_record_of_a_live_process_without_a_kernel_lock_is_respected_where_there_are_kernel_locks(tmp_path):
    """A holder that took the lock by owner record only (an older marn, say) is judged by its record, not
    overridden because the kernel lock is free."""
    directory = tmp_path / "run"
    directory.mkdir()
    live = record(pid=os.getppid(), process_start=locks.process_start(os.getppid()))
    (directory / locks.LOCK).write_text(json.dumps(live))
    with pytest.raises(LockedError, match=f"pid {os.getppid()}"):
        with locks.lock(str(directory), "marn run"):
            pass
    assert json.loads((directory / locks.LOCK).read_text()) == live


def test_an_owner_record_of_a_process_that_ended_on_this_machine_is_taken_over(tmp_path, kernel):
    """Same host, boot and pid namespace, and the pid gone: the holder provably ended, so its lock is taken."""
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / locks.LOCK).write_text(json.dumps(record(pid=dead_pid(), process_start=None)))
    with locks.lock(str(directory), "marn run"):
        assert json.loads((directory / locks.LOCK).read_text())["pid"] == os.getpid()
    assert not (directory / locks.LOCK).exists()


@pytest.mark.parametrize("differs", ["boot_id", "pid_namespace", "host"])
def test_without_kernel_locks_a_holder_marn_cannot_check_keeps_its_lock(tmp_path, monkeypatch, differs):
    """With owner records only, a dead-looking pid counts only on this machine's kernel and pid namespace: from
    another boot (or another machine with the same name), container or host, it is never taken over."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    directory = tmp_path / "run"
    directory.mkdir()
    elsewhere = record(pid=dead_pid(), process_start=None, **{differs: "elsewhere"})
    (directory / locks.LOCK).write_text(json.dumps(elsewhere))
    with pytest.raises(LockedError, match="no longer running \\(marn cannot check a process (in|on) another"):
        with locks.lock(str(directory), "marn run"):
            pass
    assert json.loads((directory / locks.LOCK).read_text()) == elsewhere


def test_without_kernel_locks_a_damaged_record_is_never_taken_over(tmp_path, monkeypatch):
    """With owner records only, a record that cannot be read says nothing of its holder: refused however old,
    and left for the user to delete."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    directory = tmp_path / "run"
    directory.mkdir()
    (directory / locks.LOCK).write_bytes(b'{"command": "marn r')
    os.utime(directory / locks.LOCK, (0, 0))
    with pytest.raises(LockedError, match="cannot be read.*delete"):
        with locks.lock(str(directory), "marn run"):
            pass
    assert (directory / locks.LOCK).read_bytes() == b'{"command": "marn r'


@pytest.mark.parametrize("other", [{}, {"pid_namespace": "pid:[4026532999]"}])
def test_a_staging_directory_is_removed_only_when_its_process_provably_ended(tmp_path, other):
    """`remove_stale_temporaries` removes a staging directory of a dead pid in this pid namespace, and keeps one
    from another container, whose pid it cannot check."""
    parent = tmp_path / "marn"
    left = parent / ".staging-1-x"
    left.mkdir(parents=True)
    marker = {"written_by": "marn-tf", "kind": ownership.TEMPORARY, "command": "marn export",
              **record(pid=dead_pid(), process_start=None), **other}
    (left / ownership.MARKER).write_text(json.dumps(marker))
    removed = ownership.remove_stale_temporaries(str(parent), ".staging-")
    assert (removed == [str(left)]) == (not other) and left.exists() == bool(other)


def test_a_link_in_place_of_the_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    """The owner record is written into the lock file itself, so a link there (to a file of the user's) is
    refused rather than followed and overwritten."""
    directory = tmp_path / "run"
    directory.mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    (directory / locks.LOCK).symlink_to(tmp_path / "notes.txt")
    with pytest.raises(LockedError, match="is a link or a directory"):
        with locks.lock(str(directory), "marn run"):
            pass
    assert (tmp_path / "notes.txt").read_text() == "mine"
