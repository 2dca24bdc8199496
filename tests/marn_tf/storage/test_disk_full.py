"""A full disk or quota ends a command with one `error:` line naming the path and what to do, wherever it was met;
the same command run again once there is space finishes."""
import errno
import os

import pytest
import tensorflow as tf

from marn_tf import cli
from marn_tf.storage import files
from marn_tf.storage.disk_full import disk_full_message


def _full(code):
    def fsync(fd):
        raise OSError(code, os.strerror(code))
    return fsync


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_names_the_file_written_and_keeps_the_old_one(tmp_path, monkeypatch, code):
    """The error names the file being written (not its temporary name) and says to free space and run again; the
    old file stays whole and no temporary file is left."""
    path = tmp_path / "summary.json"
    path.write_text("old")
    monkeypatch.setattr(os, "fsync", _full(code))
    with pytest.raises(files.DiskFullError) as raised:
        files.write_text(str(path), "new")
    assert raised.value.errno == code and raised.value.filename == str(path)
    assert str(raised.value).startswith(f"{os.strerror(code)} writing {path}: free space")
    assert "run the same command again" in str(raised.value)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_a_full_disk_is_found_in_what_tensorflow_and_beam_raise():
    """TensorFlow and Beam carry the OSError as text only: the path is still named; any other error is not taken
    for a full disk."""
    checkpoint = "/runs/a/checkpoints/ckpt-3_temp/part-00000-of-00001.data-00000-of-00001.tempstate42"
    err = tf.errors.ResourceExhaustedError(None, None, f"{checkpoint}; No space left on device")
    assert disk_full_message(err).startswith(f"No space left on device writing {checkpoint}: free space")
    beam = RuntimeError("Traceback ...\nOSError: [Errno 122] Disk quota exceeded: '/out/scores-00000-of-00002.jsonl'")
    assert "Disk quota exceeded writing /out/scores-00000-of-00002.jsonl" in disk_full_message(beam)
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/out/plot.png")
        except OSError as cause:
            raise ValueError("saving the figure failed") from cause
    except ValueError as chained:
        assert "writing /out/plot.png: free space" in disk_full_message(chained)
    assert disk_full_message(OSError(errno.EACCES, "Permission denied", "/x")) is None
    assert disk_full_message(RuntimeError("no space for the label")) is None


def _error_lines(err: str) -> list:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_a_full_disk_ends_a_command_with_one_line_and_the_same_command_then_finishes(tmp_path, monkeypatch,
                                                                                      capsys):
    """Through the command line: a full disk while the storage layer writes (as a raw OSError, or met under it)
    exits 1 with one line naming the path; once there is space again the same command finishes."""
    out = tmp_path / "raw"
    command = ["generate-data", "--output", str(out), "--users", "3", "--items", "5", "--days", "5", "--quiet"]
    real = files.write_bytes

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(files, "write_bytes", full)
    assert cli.main(command) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"writing {out}" in line and "free space on that disk" in line
    monkeypatch.setattr(files, "write_bytes", real)
    monkeypatch.setattr(os, "fsync", _full(errno.EDQUOT))
    assert cli.main(command) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"Disk quota exceeded writing {out}" in line
    monkeypatch.undo()  # space freed
    assert cli.main(command) == 0, capsys.readouterr().err
    assert (out / "config.yaml").exists()
