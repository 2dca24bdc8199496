"""Keras callbacks of a training run: the gradient-reversal ramp, checkpoints with a NaN guard, history."""
from __future__ import annotations

import json
import logging
import math
import os

import tensorflow as tf

from marn_tf.layers.gradient_reversal import dann_ramp

log = logging.getLogger(__name__)


class AdversarialRamp(tf.keras.callbacks.Callback):
    """Sets the adversarial coefficient lambda_grl before every step from the DANN schedule over `ramp_steps`
    steps, then holds `max_coefficient` (resume-safe: it reads the optimizer's step counter). The ramp has
    its own clock: a longer run (more epochs) does not change the game. With `ramp=False` it holds
    `max_coefficient` from the start. `layers` have `set_coefficient` (the discriminators)."""

    def __init__(self, layers, ramp_steps: int, max_coefficient: float, ramp: bool = True):
        super().__init__()
        self.layers = list(layers)
        self.ramp_steps = ramp_steps
        self.max_coefficient = max_coefficient
        self.ramp = ramp
        self.coefficient = max_coefficient

    def on_train_batch_begin(self, batch, logs=None):
        if not self.layers or not self.ramp:
            return
        step = int(self.model.optimizer.iterations.numpy())
        self.coefficient = dann_ramp(step / self.ramp_steps, self.max_coefficient)
        for layer in self.layers:
            layer.set_coefficient(self.coefficient)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.layers:
            logs["grl_coefficient"] = self.coefficient  # TensorBoard and the history pick it up


def all_finite(logs: dict) -> bool:
    return all(math.isfinite(float(v)) for v in logs.values())


class CheckpointsWithNanGuard(tf.keras.callbacks.Callback):
    """Saves a checkpoint after every epoch (`train.steps_per_epoch` steps) and the best one by validation AUC.

    A non-finite loss stops training at once and nothing more is saved, so the last checkpoint on disk
    is the last good state. `stopped_on_nan` tells the caller.
    """

    def __init__(self, manager: tf.train.CheckpointManager, best: tf.train.CheckpointManager, monitor: str = "val_auc",
                 best_value: float = -math.inf):
        super().__init__()
        self.manager = manager
        self.best = best
        self.monitor = monitor
        self.best_value = best_value
        self.stopped_on_nan = None  # (epoch, batch) where the loss went non-finite

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs.get("total_loss", 0.0))):
            self.stopped_on_nan = (self.epoch, batch)
            log.error("non-finite loss at epoch %d, batch %d: stopping; the last checkpoint (%s) is intact",
                      self.epoch + 1, batch + 1, self.manager.latest_checkpoint)
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.stopped_on_nan or not all_finite(logs or {}):
            self.stopped_on_nan = self.stopped_on_nan or (epoch, -1)
            self.model.stop_training = True
            return
        path = self.manager.save(checkpoint_number=epoch + 1)
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best_value:
            self.best_value = float(value)
            self.best.save(checkpoint_number=epoch + 1)
            log.info("epoch %d: %s %.4f, the best so far (saved with %s)", epoch + 1, self.monitor, value, path)


class HistoryFile(tf.keras.callbacks.Callback):
    """Appends every epoch's logs as a JSON line (kept across resumed runs)."""

    def __init__(self, path: str, steps_per_epoch: int):
        super().__init__()
        self.path = path
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "step": (epoch + 1) * self.steps_per_epoch,
                  **{k: float(v) for k, v in (logs or {}).items()}}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_history(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
