"""Keras callbacks of a training run: checkpoints with a NaN guard and early stopping, history. Only epoch-level
hooks, as ParameterServerStrategy requires, except `StopOnNonFiniteLoss` (the trainer leaves it out there)."""
from __future__ import annotations

import contextlib
import json
import logging
import math

import tensorflow as tf

from marn_tf.storage import files

log = logging.getLogger(__name__)


def all_finite(logs: dict) -> bool:
    return all(math.isfinite(float(v)) for v in logs.values())


def non_finite(variables) -> list[str]:
    """Names of the floating-point variables holding a NaN or an infinity."""
    return sorted({v.name for v in variables
                   if v.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(v)))})


class TrainingState(tf.Module):
    """What the callbacks must remember across a resume, saved in every checkpoint with the weights it goes with:
    the best monitored value, its epoch (1-based; 0: none yet) and the epochs since it (early stopping's wait).
    A fresh Keras `EarlyStopping` forgot them, so a resumed run trained more epochs than an uninterrupted one."""

    def __init__(self):
        super().__init__(name="training_state")
        self.best_value = tf.Variable(0.0, dtype=tf.float64, trainable=False)  # finite: checkpoints are checked
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)

    def set_from_history(self, history: list[dict], epochs: int, monitor: str) -> None:
        """For a checkpoint written before the state was saved with it: the same state from the history file."""
        values = {int(h["epoch"]): h[monitor] for h in history if monitor in h and h["epoch"] <= epochs}
        if values:
            best_epoch = max(sorted(values), key=lambda e: values[e])  # the first epoch of the best value
            self.best_value.assign(values[best_epoch])
            self.best_epoch.assign(best_epoch)
            self.wait.assign(len([e for e in values if e > best_epoch]))


class AveragedWeightsForValidation(tf.keras.callbacks.Callback):
    """Validation passes run on the moving averages of the weights (`train.weight_averaging`)."""

    def __init__(self, weight_average):
        super().__init__()
        self.weight_average = weight_average
        self._swap = None

    def on_test_begin(self, logs=None):
        self._swap = self.weight_average.swapped()
        self._swap.__enter__()

    def on_test_end(self, logs=None):
        self._swap.__exit__(None, None, None)
        self._swap = None


class CheckpointsWithNanGuard(tf.keras.callbacks.Callback):
    """Saves a checkpoint after every epoch (`train.steps_per_epoch` steps) and the best one by validation AUC
    (before the periodic checkpoint of its epoch), and stops early after `patience` epochs without a better one
    (0: never).

    A non-finite loss, or a NaN or infinity in any variable of the model or the optimizer (the loss can stay finite
    while kernels are NaN), stops training at once and nothing more is saved, so the last checkpoint on disk is
    the last good state. `stopped_on_nan` and `non_finite_variables` tell the caller.
    """

    def __init__(self, manager: tf.train.CheckpointManager, best: tf.train.CheckpointManager, monitor: str = "val_auc",
                 state: TrainingState | None = None, patience: int = 0, weight_average=None):
        super().__init__()
        self.weight_average = weight_average  # the best checkpoint holds the averaged weights validation saw
        self.manager = manager
        self.best = best
        self.monitor = monitor
        self.state = state or TrainingState()
        self.patience = patience
        self.stopped_on_nan = None  # (epoch, batch) where the loss went non-finite; batch -1: at the epoch's end
        self.non_finite_variables: list[str] = []

    @property
    def best_value(self) -> float | None:
        return float(self.state.best_value.numpy()) if int(self.state.best_epoch.numpy()) else None

    @property
    def patience_exhausted(self) -> bool:
        return bool(self.patience) and int(self.state.wait.numpy()) >= self.patience

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped_on_nan or not all_finite(logs or {}):
            self.stopped_on_nan = self.stopped_on_nan or (epoch, -1)
            # the step has spread the NaN through the trained weights; a non-trainable one (an item table column
            # loaded from the data) that holds NaN or infinite values points at the data instead
            self.non_finite_variables = non_finite(self.model.non_trainable_variables)
            if self.non_finite_variables:
                log.error("epoch %d: the loss is not finite and NaN or infinite values are in %s, which training does "
                          "not change: look for non-finite values in the data", epoch + 1,
                          ", ".join(self.non_finite_variables[:10]))
            self.model.stop_training = True
            return
        # The model's own variables first: they point at the cause, the optimizer's slots follow them.
        self.non_finite_variables = non_finite(self.model.variables) + non_finite(self.model.optimizer.variables())
        if self.non_finite_variables:
            self.stopped_on_nan = (epoch, -1)
            names = self.non_finite_variables
            log.error("epoch %d: the loss is finite but NaN or infinite values are in %s%s. Stopping without saving "
                      "this epoch (%s). Look for non-finite values in the data (an item table column such as an "
                      "image embedding), or lower train.learning_rate", epoch + 1, ", ".join(names[:10]),
                      f" and {len(names) - 10} more" if len(names) > 10 else "",
                      f"the last checkpoint, {self.manager.latest_checkpoint}, is intact"
                      if self.manager.latest_checkpoint else "no checkpoint was saved")
            self.model.stop_training = True
            return
        value = (logs or {}).get(self.monitor)
        improved = value is not None and (self.best_value is None or value > self.best_value)
        if improved:
            self.state.best_value.assign(float(value))
            self.state.best_epoch.assign(epoch + 1)
            self.state.wait.assign(0)
        elif value is not None:
            self.state.wait.assign_add(1)
        # The best checkpoint first, then the periodic one that records it as the best (the state just updated):
        # a kill between the two resumes from the epoch before, which still names the best before this one.
        if improved:
            with self.weight_average.swapped() if self.weight_average else contextlib.nullcontext():
                path = self.best.save(checkpoint_number=epoch + 1)
            log.info("epoch %d: %s %.4f, the best so far (saved as %s)", epoch + 1, self.monitor, value, path)
        self.manager.save(checkpoint_number=epoch + 1)
        if self.patience_exhausted:
            log.info("epoch %d: no better %s for %d epochs (the best: %.4f at epoch %d): stopping early", epoch + 1,
                     self.monitor, self.patience, self.best_value, int(self.state.best_epoch.numpy()))
            self.model.stop_training = True


class StopOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Stops at the first batch whose loss is not finite, instead of at the end of its epoch, and tells `guard`
    (a `CheckpointsWithNanGuard`), which then saves nothing more. A batch-level hook: not under
    ParameterServerStrategy, where the guard's epoch-end check alone applies."""

    def __init__(self, guard: CheckpointsWithNanGuard):
        super().__init__()
        self.guard = guard

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs.get("total_loss", 0.0))):
            self.guard.stopped_on_nan = (self.guard.epoch, batch)
            log.error("non-finite loss at epoch %d, batch %d: stopping; the last checkpoint (%s) is intact",
                      self.guard.epoch + 1, batch + 1, self.guard.manager.latest_checkpoint)
            self.model.stop_training = True


class HistoryFile(tf.keras.callbacks.Callback):
    """Appends every epoch's logs as a JSON line (kept across resumed runs). It runs before the checkpoint is
    saved, so a kill between the two leaves a line for an epoch that a resumed run trains again:
    `keep_history_until` drops such lines on resume."""

    def __init__(self, path: str, steps_per_epoch: int):
        super().__init__()
        self.path = path
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "step": (epoch + 1) * self.steps_per_epoch,
                  **{k: float(v) for k, v in (logs or {}).items()}}
        files.append_text(self.path, json.dumps(record) + "\n")


def keep_history_until(path: str, epochs: int) -> None:
    """Drops the lines of epochs after `epochs` (the resumed checkpoint's): their weights were never saved."""
    history = read_history(path)
    kept = [h for h in history if int(h["epoch"]) <= epochs]
    if len(kept) < len(history):
        log.warning("%s: dropping the lines of epoch(s) %s, which the checkpoint does not hold; they are trained again",
                    path, ", ".join(str(h["epoch"]) for h in history if int(h["epoch"]) > epochs))
        files.write_text(path, "".join(json.dumps(h) + "\n" for h in kept))


def read_history(path: str) -> list[dict]:
    text = files.read_text(path)
    return [json.loads(line) for line in (text or "").splitlines() if line.strip()]
