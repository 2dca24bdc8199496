"""`marn train`'s output directory: locked while it trains, never one another marn command owns, and a full disk
ends it with one line, after which the same command resumes. Through the real command line."""
import errno
import json
import os
import socket

import yaml

from marn_tf import cli
from marn_tf.storage import files, locks, ownership
from tests.test_no_data_loss import hold_lock, listing

QUICK = ["train.steps_per_epoch=2", "train.epochs=2", "train.validation_steps=1", "train.early_stopping_patience=0"]


def _command(config, tmp_path, data, output) -> list:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    return ["train", "--config", str(path), "--data", data, "--output", str(output), "--no-progress",
            *[a for setting in QUICK for a in ("--set", setting)]]


def test_a_second_train_on_the_same_output_fails_at_once_naming_the_holder(prepared, tmp_path, capsys):
    """While another process trains into --output (holds its lock), `marn train` there exits 2 naming it and
    writes nothing."""
    config, data, _ = prepared
    run = tmp_path / "run"
    holder = hold_lock(run, "marn train")
    try:
        assert cli.main(_command(config, tmp_path, data, run)) == 2
        err = capsys.readouterr().err
        assert f"is in use by `marn train` (pid {holder.pid} on host {socket.gethostname()}, started " in err
        assert sorted(os.listdir(run)) == [locks.LOCK]
    finally:
        holder.kill()
        holder.wait()


def test_train_refuses_an_output_another_command_owns(prepared, tmp_path, capsys):
    """--output a `marn preprocess` output, a `marn run` directory, or a non-empty directory that is no training
    run: refused (exit 2) naming the owner, and nothing in it changes."""
    config, data, _ = prepared
    run = tmp_path / "run"
    ownership.claim(str(run), ownership.RUN, "marn run")
    (run / "summary.json").write_text("{}")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "history.jsonl").write_text("my notes\n")
    before = listing(run), listing(mine), listing(data)
    for output, says in ((data, "holds the output of `marn preprocess`"), (run, "holds the output of `marn run`"),
                         (mine, "is not empty (history.jsonl)")):
        assert cli.main(_command(config, tmp_path, data, output)) == 2
        assert says in capsys.readouterr().err
    assert (listing(run), listing(mine), listing(data)) == before


def test_a_full_disk_ends_training_with_one_line_and_the_same_command_resumes(prepared, tmp_path, monkeypatch,
                                                                            capsys):
    """A full disk while training writes its summary: exit 1, one `error:` line naming the file and what to do,
    the lock released; once there is space the same command resumes from the checkpoints and finishes. A run
    trained before directories were claimed (no marker) is resumed and claimed."""
    config, data, _ = prepared
    run = tmp_path / "run"
    command = _command(config, tmp_path, data, run)
    real = files.write_bytes

    def full_for_the_summary(path, data):
        if path.endswith("training_summary.json"):
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real(path, data)

    monkeypatch.setattr(files, "write_bytes", full_for_the_summary)
    assert cli.main(command) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"writing {run / 'training_summary.json'}: free space on that disk" in line
    assert not (run / locks.LOCK).exists() and not (run / "training_summary.json").exists()
    monkeypatch.undo()
    os.remove(run / ownership.MARKER)  # as a run trained before directories were claimed
    assert cli.main(command) == 0, capsys.readouterr().err
    summary = json.loads((run / "training_summary.json").read_text())
    assert summary["resumed_from_step"] == summary["steps"] == 4 and summary["status"] == "completed"
    assert json.loads((run / ownership.MARKER).read_text())["kind"] == ownership.TRAIN
