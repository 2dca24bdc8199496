"""The directory of one training run (`marn train --output`), on local disk or any file system (gs://, s3://, ...):
every path in it, its saved config and its checkpoints, in one place.

    run_config.yaml          the config the run used (a resumed run must match it)
    training_data.json       the data directory and its schema and vocabulary digests (resume, evaluate and
                             export refuse data with other vocabularies)
    checkpoints/ckpt-N       after every epoch: model, optimizers, step (TensorFlow writes them)
    best/ckpt-N              the epoch with the best validation AUC (the newest: what evaluate and export load),
                             and the best before it (what a resumed run goes back to when a kill lost the epoch)
    history.jsonl            one line of metrics per epoch
    tensorboard/             losses, AUC, D1/Ds accuracy, mean modality weights, lambda_grl
    training_summary.json    how the run ended
    evaluation_<split>/      `marn evaluate`'s default output
    workers/<task>/          the scratch checkpoints of a multi-worker run's other workers
    .marn-owner.json         the ownership marker (kind `train`): no other marn command writes here, and `marn
                             train` writes nowhere another command owns (`marn_tf/storage/ownership.py`)
    .marn.lock               held while the run's chief trains (`marn_tf/storage/locks.py`)

TensorFlow reads and writes checkpoints and TensorBoard events through its own file systems (gs:// built in);
marn's own files go through `marn_tf.storage.files`, so both work wherever the directory is.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import posixpath
from typing import Optional

import tensorflow as tf
import yaml

from marn_tf.storage import files, ownership

RUN_CONFIG = "run_config.yaml"
DATA_RECORD = "training_data.json"
CHECKPOINTS = "checkpoints"
BEST = "best"
COMMAND = "marn train"
# What a run directory holds (with `marn evaluate`'s default reports and what an interrupted atomic write leaves).
# The logs a cluster launcher (scripts/multi_worker_local.py) writes into the output before training starts.
LAUNCHER_LOGS = ("worker-*.log", "chief-*.log", "ps-*.log")
ENTRIES = (RUN_CONFIG, DATA_RECORD, CHECKPOINTS, BEST, "history.jsonl", "tensorboard", "training_summary.json",
           "evaluation_*", "workers", "*.tmp-*", *LAUNCHER_LOGS)


def trained_before_markers(entries: list[str]) -> bool:
    """An unmarked directory holding `entries` is a run `marn train` wrote before it claimed its directories:
    its config or data record is there, and nothing it does not write."""
    return bool({RUN_CONFIG, DATA_RECORD} & set(entries)) and all(
        any(fnmatch.fnmatchcase(e, pattern) for pattern in ENTRIES) for e in entries)


def adoptable(entries: list[str]) -> bool:
    """An unmarked directory `marn train` may claim: a run it wrote before markers existed, or one holding only
    the logs of the cluster launcher that started it."""
    only_logs = all(any(fnmatch.fnmatchcase(e, pattern) for pattern in LAUNCHER_LOGS) for e in entries)
    return only_logs or trained_before_markers(entries)


def check_claimable(output_dir: str) -> None:
    """Read-only, before anything is built: refuses an output another marn command owns (a `marn preprocess` or
    `marn run` directory: the message names it) or a non-empty directory that is no training run."""
    ownership.check_claimable(output_dir, ownership.TRAIN, COMMAND, adopt=adoptable)


def claim(output_dir: str) -> None:
    """Writes the directory's ownership marker (kept when there), checking again what `check_claimable` did."""
    ownership.claim(output_dir, ownership.TRAIN, COMMAND, adopt=adoptable)


@dataclasses.dataclass(frozen=True)
class TrainingDirectory:
    path: str

    def file(self, name: str) -> str:
        return files.join(self.path, name)

    @property
    def config_file(self) -> str:
        return self.file(RUN_CONFIG)

    @property
    def data_record(self) -> str:
        return self.file(DATA_RECORD)

    @property
    def history(self) -> str:
        return self.file("history.jsonl")

    @property
    def tensorboard(self) -> str:
        return self.file("tensorboard")

    @property
    def summary(self) -> str:
        return self.file("training_summary.json")

    def checkpoints(self, kind: str = CHECKPOINTS) -> str:
        """The directory of the periodic checkpoints, or of the best one (`kind="best"`)."""
        return self.file(kind)

    def evaluation(self, split: str) -> str:
        return self.file(f"evaluation_{split}")

    def worker(self, task: str) -> "TrainingDirectory":
        return TrainingDirectory(files.join(self.file("workers"), task))

    def checkpoint_numbers(self, kind: str = CHECKPOINTS) -> list[int]:
        """N of every `ckpt-N.index` in `checkpoints(kind)`, newest first."""
        return checkpoint_numbers(self.checkpoints(kind))

    def newest_checkpoint(self, kind: str = CHECKPOINTS) -> Optional[str]:
        numbers = self.checkpoint_numbers(kind)
        return files.join(self.checkpoints(kind), f"ckpt-{numbers[0]}") if numbers else None

    def checkpoint_to_load(self) -> Optional[str]:
        """The best checkpoint, or the newest when there is no validation result yet. From the files, not the state
        files: a damaged state file must not silently switch to another checkpoint."""
        return self.newest_checkpoint(BEST) or self.newest_checkpoint(CHECKPOINTS)

    def read_config(self) -> Optional[dict]:
        """The saved config as written (a dict), None when there is none."""
        text = files.read_text(self.config_file)
        return None if text is None else yaml.safe_load(text)

    def write_config(self, config: dict) -> None:
        files.makedirs(self.path)
        files.write_text(self.config_file, yaml.safe_dump(config, sort_keys=False))

    def write_summary(self, summary: dict) -> None:
        files.write_text(self.summary, json.dumps(summary, indent=2))


def checkpoint_numbers(directory: str) -> list[int]:
    """N of every `ckpt-N.index` in `directory`, newest first."""
    names = (posixpath.basename(p)[len("ckpt-"):-len(".index")]
             for p in tf.io.gfile.glob(files.join(directory, "ckpt-*.index")))
    return sorted((int(n) for n in names if n.isdigit()), reverse=True)
