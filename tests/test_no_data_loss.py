"""Nothing of the user's is lost: what marn refuses to write or delete, and the locks (docs/reliability.md).

Through the real command line (`marn_tf.cli.main`), as a user meets it; each refusal is checked against a
listing of the directory (names, sizes, modification times) taken before and after.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from marn_tf import cli
from marn_tf.storage import locks, ownership
from marn_tf.storage.errors import LockedError, OwnershipError
from marn_tf.workflow.stages import Stage, StageRunner
from tests.testing import REPO

T0 = 1767225600  # 2026-01-01T00:00:00Z
DAY = 86400


def listing(root) -> dict:
    """Every entry under `root`: relative path -> (is a directory, size, modification time in ns)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            stat = os.lstat(path)
            found[os.path.relpath(path, root)] = (os.path.isdir(path), stat.st_size, stat.st_mtime_ns)
    return found


def tiny_dataset(directory, bad_lines=0) -> str:
    """A few days of events and a five-item catalog in `directory`, with `config.yaml` there; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    events = [dict(user_id=f"u{u}", item_id=f"i{(u + k) % 5}", timestamp=T0 + k * DAY // 2 + u,
                   event_type="impression", clicked=(u + k) % 2, request_id=f"r{u}-{k}", position=1)
              for u in range(4) for k in range(8)]
    items = [dict(item_id=f"i{i}", shop_id="s1", brand_id=f"b{i % 2}", category_id="c1",
                  image_embedding=[0.1, 0.2, 0.3], title="red silk dress", sales_count=i) for i in range(5)]
    with open(directory / "events.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)
        f.writelines('{"user_id": "u1", "item_id": \n' for _ in range(bad_lines))
    with open(directory / "items.jsonl", "w") as f:
        f.writelines(json.dumps(i) + "\n" for i in items)
    config = {
        "inputs": {"events": {"path": str(directory / "events.jsonl")},
                   "items": {"path": str(directory / "items.jsonl")}},
        "items": {"image_dim": 3, "statistics": ["sales_count"], "max_title_tokens": 4},
        "sequence": {"max_length": 3}, "vocabulary": {"min_count": 1},
        "split": {"train_end": "2026-01-03", "valid_end": "2026-01-04"},
        "pipeline": {"num_shards": 1, "max_dead_letter_rate": 1.0},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def someones_directory(path):
    """A directory of the user's own: files and a subdirectory named like what marn writes."""
    (path / "model").mkdir(parents=True)
    (path / "model" / "weights.h5").write_bytes(b"w" * 1000)
    (path / "preprocessed").mkdir()
    (path / "preprocessed" / "notes.txt").write_text("mine")
    (path / "report.html").write_text("<p>my report</p>")
    (path / "summary.json").write_text("{}")
    return listing(path)


def preprocess(config, output, *extra):
    return cli.main(["preprocess", "--config", str(config), "--output", str(output), "--workers", "1", *extra])


# ---------------------------------------------------------------------------------- what is refused (never deleted)

def test_run_refuses_a_non_empty_directory_it_did_not_write(tmp_path, capsys):
    config = tiny_dataset(tmp_path / "raw")
    before = someones_directory(tmp_path / "mine")
    assert cli.main(["run", "--config", config, "--output", str(tmp_path / "mine"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and ".marn-owner.json" in err and "Choose a new or empty directory" in err
    assert listing(tmp_path / "mine") == before


def test_run_with_output_dot_in_a_source_tree_is_refused(tmp_path, capsys, monkeypatch):
    """`marn run --output .` from a repository root: its source package (export/) must survive."""
    config = tiny_dataset(tmp_path / "raw")
    repo = tmp_path / "repo"
    (repo / "export").mkdir(parents=True)
    (repo / "export" / "__init__.py").write_text("# the source package\n")
    (repo / "export" / "saved_model.py").write_text("def export_model(): ...\n")
    (repo / "setup.py").write_text("from setuptools import setup\n")
    before = listing(repo)
    monkeypatch.chdir(repo)
    assert cli.main(["run", "--config", config, "--output", ".", "--no-progress"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert listing(repo) == before


def test_demo_and_generate_data_refuse_a_directory_they_did_not_write(tmp_path, capsys):
    before = someones_directory(tmp_path / "mine")
    assert cli.main(["demo", "--output", str(tmp_path / "mine"), "--no-progress"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert cli.main(["generate-data", "--output", str(tmp_path / "mine"), "--users", "5", "--items", "20",
                     "--quiet"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert listing(tmp_path / "mine") == before


@pytest.mark.parametrize("where", ["the input directory", "its parent"])
def test_preprocess_overwrite_refuses_an_output_that_holds_the_input(tmp_path, capsys, where):
    raw = tmp_path / "data" / "raw"
    config = tiny_dataset(raw)
    output = raw if where == "the input directory" else tmp_path / "data"
    before = listing(tmp_path)
    assert preprocess(config, output, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "deletes or overwrites: refusing before touching anything" in err and "raw" in err
    assert listing(tmp_path) == before


def test_preprocess_overwrite_refuses_inputs_even_inside_its_own_earlier_output(tmp_path, capsys):
    """The marker does not make inputs deletable: raw data or a config put into an earlier output stay."""
    out = tmp_path / "out"
    ownership.claim(str(out), ownership.PREPROCESS, "marn preprocess")  # as an earlier run left it
    config = tiny_dataset(out / "raw")
    other = tmp_path / "other"
    ownership.claim(str(other), ownership.PREPROCESS, "marn preprocess")
    (other / "my.yaml").write_text(open(tiny_dataset(tmp_path / "elsewhere")).read())  # only the config inside
    before = listing(tmp_path)
    assert preprocess(config, out, "--overwrite") == 2
    assert "inputs.events.path" in capsys.readouterr().err
    assert preprocess(other / "my.yaml", other, "--overwrite") == 2
    assert "the config file" in capsys.readouterr().err
    assert listing(tmp_path) == before


def test_preprocess_overwrite_refuses_what_it_does_not_write_even_in_its_own_output(tmp_path, capsys):
    config = tiny_dataset(tmp_path / "raw")
    out = tmp_path / "out"
    ownership.claim(str(out), ownership.PREPROCESS, "marn preprocess")
    (out / "train").mkdir()
    (out / "train" / "part-00000-of-00001.tfrecord.gz").write_bytes(b"old")
    (out / "my-notes.txt").write_text("mine")
    before = listing(out)
    assert preprocess(config, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "my-notes.txt" in err and "nothing was deleted" in err
    assert listing(out) == before


def test_commands_refuse_a_directory_of_another_kind(tmp_path, capsys):
    config = tiny_dataset(tmp_path / "raw")
    ownership.claim(str(tmp_path / "prep"), ownership.PREPROCESS, "marn preprocess")
    (tmp_path / "prep" / "schema.json").write_text("{}")
    ownership.claim(str(tmp_path / "run"), ownership.RUN, "marn run")
    (tmp_path / "run" / "summary.json").write_text("{}")
    before = listing(tmp_path)
    assert cli.main(["run", "--config", config, "--output", str(tmp_path / "prep"), "--no-progress"]) == 2
    assert "holds the output of `marn preprocess`" in capsys.readouterr().err
    assert preprocess(config, tmp_path / "run", "--overwrite") == 2
    assert "holds the output of `marn run`" in capsys.readouterr().err
    assert listing(tmp_path) == before


def test_a_run_refuses_a_config_inside_what_it_rewrites(tmp_path, capsys):
    tiny_dataset(tmp_path / "raw")
    run = tmp_path / "run"
    ownership.claim(str(run), ownership.RUN, "marn run")
    (run / "model").mkdir()
    inside = run / "model" / "my.yaml"
    inside.write_text((tmp_path / "raw" / "config.yaml").read_text())
    before = listing(tmp_path)
    assert cli.main(["run", "--config", str(inside), "--output", str(run), "--no-progress"]) == 2
    assert "the config file" in capsys.readouterr().err
    assert listing(tmp_path) == before


def test_inputs_are_checked_before_any_output_is_made(tmp_path, capsys):
    config = tiny_dataset(tmp_path / "raw")
    (tmp_path / "raw" / "events.jsonl").unlink()
    assert preprocess(config, tmp_path / "out") == 2
    assert cli.main(["run", "--config", config, "--output", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------- removal inside a marked dir

def test_stage_outputs_are_removed_only_inside_the_marked_run_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    runner = StageRunner(str(tmp_path / "run"), 1)
    with pytest.raises(OwnershipError, match="not inside"):
        runner.run(Stage("s", "a stage", {}, [str(outside)], lambda: None))
    assert (outside / "keep").read_text() == "x"


def test_remove_never_leaves_the_owned_directory(tmp_path):
    owned, outside = tmp_path / "owned", tmp_path / "outside"
    ownership.claim(str(owned), ownership.RUN, "marn run")
    outside.mkdir()
    (outside / "keep").write_text("x")
    (owned / "link").symlink_to(outside, target_is_directory=True)
    for path in (outside, owned / ".." / "outside", owned / "link" / "keep", owned, owned / ownership.MARKER):
        with pytest.raises(OwnershipError):
            ownership.remove(str(path), str(owned))
    assert ownership.remove(str(owned / "link"), str(owned))  # the link goes, never what it points to
    assert (outside / "keep").read_text() == "x" and not (owned / "link").exists()
    (outside / "sub").mkdir()
    with pytest.raises(OwnershipError, match="has no .marn-owner.json"):
        ownership.remove(str(outside / "sub"), str(outside))  # not a marked directory
    assert (outside / "sub").is_dir()


# ------------------------------------------------------------------------------------------------------------ locks

HOLD = ("import sys, time\nfrom marn_tf.storage import locks\n"
        "with locks.lock(sys.argv[1], sys.argv[2]):\n    print('locked', flush=True)\n    time.sleep(300)\n")


def hold_lock(directory, command):
    """Another process holding `directory`'s lock, as a running command does."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), command], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.integration
def test_a_second_command_on_a_locked_directory_fails_at_once_naming_the_holder(tmp_path, capsys):
    config = tiny_dataset(tmp_path / "raw")
    holders = [hold_lock(tmp_path / "run", "marn run"), hold_lock(tmp_path / "out", "marn preprocess")]
    try:
        started = time.monotonic()
        assert cli.main(["run", "--config", config, "--output", str(tmp_path / "run"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by `marn run` (pid {holders[0].pid} on host {socket.gethostname()}, started " in err
        assert preprocess(config, tmp_path / "out") == 2
        err = capsys.readouterr().err
        assert f"is in use by `marn preprocess` (pid {holders[1].pid} on host {socket.gethostname()}" in err
        assert time.monotonic() - started < 60  # at once: no waiting for the holder
        assert not os.path.exists(tmp_path / "run" / ownership.MARKER)  # nothing written while locked
        assert sorted(os.listdir(tmp_path / "out")) == [locks.LOCK]
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()


@pytest.mark.integration
def test_a_lock_left_by_a_killed_process_is_taken_over_and_released_after_the_job(tmp_path, capsys):
    config = tiny_dataset(tmp_path / "raw")
    out = tmp_path / "out"
    holder = hold_lock(out, "marn preprocess")
    os.kill(holder.pid, signal.SIGKILL)  # no chance to release it
    holder.wait()
    assert os.path.exists(out / locks.LOCK)
    assert preprocess(config, out) == 0
    assert not os.path.exists(out / locks.LOCK)
    first = json.loads((out / ownership.MARKER).read_text())
    assert first["kind"] == "preprocess" and first["command"] == "marn preprocess" and first["run_id"]
    # Its own output: --overwrite replaces it, under a new run id; without --overwrite it is refused.
    assert preprocess(config, out) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert preprocess(config, out, "--overwrite") == 0
    assert json.loads((out / ownership.MARKER).read_text())["run_id"] != first["run_id"]
    assert (out / "schema.json").exists() and not os.path.exists(out / locks.LOCK)


@pytest.mark.integration
def test_the_lock_is_released_when_the_job_fails(tmp_path, capsys):
    config = tiny_dataset(tmp_path / "raw", bad_lines=5)
    out = tmp_path / "out"
    assert preprocess(config, out, "--set", "pipeline.max_dead_letter_rate=0.0") == 1
    assert "too many rejected records" in capsys.readouterr().err
    assert not os.path.exists(out / locks.LOCK) and os.path.exists(out / ownership.MARKER)


@pytest.mark.integration
def test_lock_rules(tmp_path):
    directory = tmp_path / "d"
    with locks.lock(str(directory), "marn run"):
        assert os.path.exists(directory / locks.LOCK)
        with locks.lock(str(directory), "marn run"):  # re-entrant in one process (marn demo -> marn run)
            pass
        assert os.path.exists(directory / locks.LOCK)
    assert not os.path.exists(directory / locks.LOCK)
    with pytest.raises(KeyError):
        with locks.lock(str(directory), "marn run"):
            raise KeyError("boom")
    assert not os.path.exists(directory / locks.LOCK)  # released on an exception too

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = directory / locks.LOCK
    lock.write_text(json.dumps({**locks.process_identity(), "pid": dead.pid, "process_start": None,
                                "command": "marn run", "started": "then", "token": "t", "lock": locks.RECORD}))
    with locks.lock(str(directory), "marn run"):  # a dead pid on this machine, in this pid namespace: taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "another-host", "command": "marn run",
                                "started": "2026-01-01T00:00:00+00:00", "token": "t"}))
    with pytest.raises(LockedError, match="pid .* on host another-host.*another host"):
        with locks.lock(str(directory), "marn run"):  # another host: cannot tell, so never taken over
            pass
    assert json.loads(lock.read_text())["host"] == "another-host"
