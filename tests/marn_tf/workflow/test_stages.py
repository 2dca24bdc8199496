"""StageRunner: skip what is done, redo what changed, resume what stopped (on local disk and under a URL)."""
import io
import json
import shutil
import uuid

import pytest

from tests.marn_tf.storage.test_files import fail_reading

from marn_tf.storage import files
from marn_tf.workflow.stages import Stage, StageError, StageRunner, files_digest
from tests.marn_tf.storage import ram_filesystem  # importing it registers ram:// with Beam


@pytest.fixture(params=["local", "url"])
def root(request, tmp_path):
    """A directory on local disk, or under a URL on a file system TensorFlow and Beam both reach (as gs://)."""
    return str(tmp_path) if request.param == "local" else f"ram://stages-{uuid.uuid4().hex[:8]}"


class Recorder:
    """A stage action that writes `value` into `path` (and part of it first, to look interrupted)."""

    def __init__(self, path, fail_after_partial=False):
        self.path, self.fail_after_partial, self.calls, self.found_partial = path, fail_after_partial, 0, []

    def __call__(self, value):
        def action():
            self.calls += 1
            files.makedirs(self.path)
            partial = files.join(self.path, "partial")
            self.found_partial.append(files.exists(partial))
            files.write_text(partial, "started")
            if self.fail_after_partial:
                raise KeyboardInterrupt  # the process stopped mid-stage
            files.write_text(files.join(self.path, "value"), str(value))
            return {"value": value}
        return action


def run_once(run_dir, recorder, inputs, value=None):
    """One run of a stage whose output (`recorder.path`) lies inside `run_dir`: the only place it may be removed."""
    out = io.StringIO()
    outcome = StageRunner(str(run_dir), 1, out).run(
        Stage("step", "the step", inputs, [recorder.path], recorder(value if value is not None else inputs["x"])))
    return outcome, out.getvalue()


def test_a_finished_stage_with_the_same_inputs_is_skipped_with_a_message(root):
    recorder = Recorder(files.join(root, "run", "out"))
    first, _ = run_once(files.join(root, "run"), recorder, {"x": 1})
    second, said = run_once(files.join(root, "run"), recorder, {"x": 1})
    assert recorder.calls == 1
    assert second.skipped and not first.skipped
    assert second.result == {"value": 1} and second.outputs_digest == first.outputs_digest
    assert "skipped, its outputs exist and match its inputs" in said


def test_changed_inputs_rerun_the_stage_on_fresh_outputs(root):
    recorder = Recorder(files.join(root, "run", "out"))
    run_once(files.join(root, "run"), recorder, {"x": 1})
    outcome, said = run_once(files.join(root, "run"), recorder, {"x": 2})
    assert recorder.calls == 2 and outcome.result == {"value": 2}
    assert recorder.found_partial == [False, False]  # the old outputs were removed first
    assert "its inputs changed" in said


@pytest.mark.parametrize("damage", ["modify", "delete"])
def test_outputs_changed_or_missing_since_the_stage_finished_rerun_it(tmp_path, damage):
    recorder = Recorder(str(tmp_path / "run" / "out"))
    run_once(tmp_path / "run", recorder, {"x": 1})
    value = tmp_path / "run" / "out" / "value"
    if damage == "modify":
        value.write_text("edited by hand")
    else:
        shutil.rmtree(tmp_path / "run" / "out")
    outcome, said = run_once(tmp_path / "run", recorder, {"x": 1})
    assert recorder.calls == 2 and not outcome.skipped
    assert value.read_text() == "1"
    assert ("changed since it finished" if damage == "modify" else "outputs are missing") in said


def test_an_interrupted_stage_resumes_over_what_it_left(tmp_path):
    interrupted = Recorder(str(tmp_path / "run" / "out"), fail_after_partial=True)
    with pytest.raises(KeyboardInterrupt):
        run_once(tmp_path / "run", interrupted, {"x": 1})
    with open(tmp_path / "run" / "stages" / "step.json") as f:
        assert json.load(f)["status"] == "started"
    resumed = Recorder(str(tmp_path / "run" / "out"))
    outcome, said = run_once(tmp_path / "run", resumed, {"x": 1})
    assert resumed.found_partial == [True]  # e.g. training finds its checkpoints and goes on from them
    assert outcome.result == {"value": 1} and "resuming" in said


def test_a_stage_that_writes_no_output_fails(tmp_path):
    with pytest.raises(RuntimeError, match="without writing"):
        StageRunner(str(tmp_path), 1, io.StringIO()).run(
            Stage("empty", "nothing", {}, [str(tmp_path / "never")], lambda: None))


def test_files_digest_sees_names_and_sizes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_text("x")
    before = files_digest([str(tmp_path / "a")])
    (tmp_path / "a" / "g").write_text("y")
    assert files_digest([str(tmp_path / "a")]) != before
    assert files_digest([str(tmp_path / "missing")]) is None


def tree(path):
    """Every file under `path` (local or ram://) with its bytes."""
    found = {}
    for directory, _, names in ram_filesystem.gfile.walk(path):
        for name in names:
            with ram_filesystem.gfile.GFile(files.join(directory, name), "rb") as f:
                found[files.join(directory, name)] = f.read()
    return found


@pytest.mark.parametrize("damage", ["unreadable", "not JSON", "not an object"])
def test_a_stage_record_that_cannot_be_read_stops_the_run_and_removes_nothing(root, monkeypatch, damage):
    """A record that exists but cannot be read (a denied permission, a storage error) or is damaged is not
    "never run": `marn run` stops naming it and leaves the finished outputs in place."""
    run_dir, recorder = files.join(root, "run"), Recorder(files.join(root, "run", "out"))
    run_once(run_dir, recorder, {"x": 1})
    record = files.join(run_dir, "stages", "step.json")
    if damage == "unreadable":
        fail_reading(monkeypatch, root, record, ram_filesystem.RamFileSystem)
    else:
        files.write_text(record, "{\"status\": \"do" if damage == "not JSON" else "[]")
    before = tree(run_dir)
    with pytest.raises(StageError, match=f"record of stage step, {record}, cannot be read .*nothing was removed"):
        run_once(run_dir, recorder, {"x": 1})
    assert recorder.calls == 1 and tree(run_dir) == before
