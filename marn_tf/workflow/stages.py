"""Resumable stages: a stage whose outputs exist and match its inputs is skipped, with a message.

Each stage of `marn run` names its inputs (config sections, upstream stages' output digests, input files)
and its output paths. When it finishes, `<run>/stages/<name>.json` records the digest of its inputs, the
digest of its outputs (file names, sizes and modification times) and what it returned. On the next run:

* same inputs, outputs unchanged since        -> skipped, and its recorded result is used;
* it started with the same inputs but stopped  -> run again over what it left (training resumes from its
  last checkpoint);
* anything else (new inputs, outputs changed)  -> its outputs are removed and it runs afresh.

The run directory is claimed first (`ownership.py`: its `.marn-owner.json` marker; a non-empty directory
without one is refused), and a stage's outputs are removed only strictly inside it.

A downstream stage's inputs include its upstream stages' output digests, so a change anywhere re-runs
exactly the stages after it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time
from typing import Any, Callable, Optional, Sequence

import tensorflow as tf

from marn_tf.storage import files, ownership
from marn_tf.workflow import run_directory as layout

log = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A stage could not produce what it should; the message says what to do."""


def digest(value: Any) -> str:
    """A short, stable hash of JSON-able `value`."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def files_digest(paths: Sequence[str]) -> Optional[str]:
    """Digest of every file under `paths` (name, size, modification time); None when a path is missing."""
    listing = []
    for path in paths:
        if not tf.io.gfile.exists(path):
            return None
        if not tf.io.gfile.isdir(path):
            stat = tf.io.gfile.stat(path)
            listing.append((path, stat.length, stat.mtime_nsec))
            continue
        for directory, _, names in tf.io.gfile.walk(path):
            for name in names:
                stat = tf.io.gfile.stat(files.join(directory, name))
                inside = files.join(directory, name)[len(path.rstrip("/")) + 1:]
                listing.append((inside, stat.length, stat.mtime_nsec))
    return digest(sorted(listing))


@dataclasses.dataclass
class Stage:
    """One step of the flow.

    Attributes:
        name: unique within a run; names the record file (`stages/<name>.json`).
        title: what the progress line says.
        inputs: everything the outputs depend on, JSON-able.
        outputs: the paths the stage writes (removed before a fresh run), inside the run directory.
        action: does the work; returns a JSON-able result that later stages and the summary read.
    """

    name: str
    title: str
    inputs: dict
    outputs: list[str]
    action: Callable[[], Any]


@dataclasses.dataclass
class StageOutcome:
    result: Any
    outputs_digest: str
    skipped: bool
    seconds: float


class StageRunner:
    """Runs stages in order in `run_dir`, skipping those that are done, and prints progress."""

    def __init__(self, run_dir: str, total: int, stream=None, command: str = "marn run"):
        ownership.claim(run_dir, ownership.RUN, command)  # a directory it did not write is refused here
        self.run_dir = run_dir
        self.total = total
        self.done = 0
        self.stream = stream or sys.stdout
        self.started = time.time()
        files.makedirs(files.join(run_dir, layout.STAGES_DIR))

    def _record_path(self, name: str) -> str:
        return files.join(self.run_dir, layout.STAGES_DIR, f"{name}.json")

    def _read(self, name: str) -> dict:
        """The stage's record; empty when it has none. A record that exists but cannot be read, or is not one,
        stops the run before anything is removed: without it marn cannot tell finished outputs from stale ones."""
        path = self._record_path(name)
        try:
            text = files.read_text(path)
            record = {} if text is None else json.loads(text)
            problem = None if isinstance(record, dict) else "it is not a JSON object"
        except (files.StorageError, ValueError) as err:
            problem = str(err)
        if problem is not None:
            raise StageError(f"the record of stage {name}, {path}, cannot be read ({problem}), so marn cannot tell "
                             f"whether its outputs are current; nothing was removed. Make it readable, or delete it "
                             f"to redo the stage (its outputs are then removed and written again).")
        return record

    def _write(self, name: str, record: dict) -> None:
        files.write_text(self._record_path(name), json.dumps(record, indent=2, default=str))

    def _say(self, text: str) -> None:
        minutes, seconds = divmod(int(time.time() - self.started), 60)
        print(f"[{self.done:>2}/{self.total} {minutes:02d}:{seconds:02d}] {text}", file=self.stream, flush=True)

    def run(self, stage: Stage) -> StageOutcome:
        inputs_digest = digest(stage.inputs)
        record = self._read(stage.name)
        same_inputs = record.get("inputs") == inputs_digest
        resuming = same_inputs and record.get("status") == "started"
        self.done += 1
        if same_inputs and record.get("status") == "done":
            current = files_digest(stage.outputs)
            if current is not None and current == record.get("outputs"):
                self._say(f"{stage.title}: skipped, its outputs exist and match its inputs "
                          f"(finished {record['finished']}; remove {self._record_path(stage.name)} to redo it)")
                return StageOutcome(record.get("result"), current, True, 0.0)
            reason = "its outputs are missing" if current is None else "its outputs changed since it finished"
        elif resuming:
            reason = "resuming: it stopped before finishing"
        else:
            reason = "its inputs changed" if record else "not run before"
        if not resuming:  # outputs of other inputs must not mix with the new ones
            for path in stage.outputs:
                ownership.remove(path, self.run_dir)
        self._say(f"{stage.title} ({reason}) ...")
        self._write(stage.name, {"status": "started", "inputs": inputs_digest, "input_values": stage.inputs})
        start = time.time()
        result = stage.action()
        seconds = time.time() - start
        outputs_digest = files_digest(stage.outputs)
        if outputs_digest is None:
            missing = [p for p in stage.outputs if not tf.io.gfile.exists(p)]
            raise StageError(f"stage {stage.name} finished without writing {missing}")
        self._write(stage.name, {"status": "done", "inputs": inputs_digest, "input_values": stage.inputs,
                                 "outputs": outputs_digest, "result": result, "seconds": round(seconds, 1),
                                 "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        self._say(f"{stage.title}: done in {seconds:.0f} s")
        return StageOutcome(result, outputs_digest, False, seconds)
