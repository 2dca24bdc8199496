"""Callbacks: the NaN guard keeps the last good checkpoint; the GRL ramp follows the optimizer's step."""
import math

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.gradient_reversal import GradientReversal, dann_ramp
from marn_tf.training.callbacks import CheckpointsWithNanGuard, AdversarialRamp


def regression(poison_batch=None, batches=6):
    x = np.ones((batches * 4, 2), np.float32)
    y = np.ones((batches * 4, 1), np.float32)
    if poison_batch is not None:
        x[poison_batch * 4] = np.inf  # one bad example: the loss of that batch is not finite
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


class Model(tf.keras.Model):
    """A one-layer model that reports its loss as `total_loss`, as MarnModel does."""

    def __init__(self):
        super().__init__()
        self.dense = tf.keras.layers.Dense(1)
        self.tracker = tf.keras.metrics.Mean("total_loss")

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((self(x) - y) ** 2)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, self.trainable_variables), self.trainable_variables))
        self.tracker.update_state(loss)
        return {"total_loss": self.tracker.result()}


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    model = Model()
    model.compile(optimizer=tf.keras.optimizers.legacy.SGD(0.01))
    checkpoint = tf.train.Checkpoint(model=model)
    guard = CheckpointsWithNanGuard(tf.train.CheckpointManager(checkpoint, str(tmp_path / "c"), 5),
                                    tf.train.CheckpointManager(checkpoint, str(tmp_path / "b"), 1), monitor="total_loss")
    data = regression(poison_batch=4).repeat()
    model.fit(data, steps_per_epoch=3, epochs=4, callbacks=[guard], verbose=0)  # batch 4 is in epoch 2
    assert guard.stopped_on_nan == (1, 1)
    assert guard.manager.checkpoints == [str(tmp_path / "c" / "ckpt-1")]
    restored = Model()
    restored(np.ones((1, 2), np.float32))
    tf.train.Checkpoint(model=restored).restore(guard.manager.latest_checkpoint).expect_partial()
    assert all(np.isfinite(w).all() for w in restored.get_weights())
    assert not all(np.isfinite(w).all() for w in model.get_weights())  # what was not saved


def test_ramp_follows_the_step_counter():
    layer = GradientReversal(0.0)
    model = Model()
    model.compile(optimizer=tf.keras.optimizers.legacy.SGD(0.01))
    ramp = AdversarialRamp([layer], ramp_steps=10, max_coefficient=0.8)
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(layer.current_coefficient)

    model.fit(regression(), epochs=1, callbacks=[ramp, Record()], verbose=0)
    expected = [dann_ramp(step / 10, 0.8) for step in range(6)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert seen[0] == 0.0 and seen == sorted(seen)
    assert math.isclose(dann_ramp(1.0, 0.8), 0.8 * (2 / (1 + math.exp(-10)) - 1))


def test_no_ramp_holds_the_coefficient():
    layer = GradientReversal(0.3)
    callback = AdversarialRamp([layer], ramp_steps=10, max_coefficient=0.3, ramp=False)
    callback.set_model(Model())
    callback.on_train_batch_begin(0)
    assert layer.current_coefficient == pytest.approx(0.3)


def test_early_stopping_state_of_a_checkpoint_from_before_it_was_saved_comes_from_the_history():
    from marn_tf.training.callbacks import TrainingState

    state = TrainingState()
    history = [{"epoch": 1, "val_auc": 0.6}, {"epoch": 2, "val_auc": 0.7}, {"epoch": 3, "val_auc": 0.7},
               {"epoch": 4, "val_auc": 0.65}, {"epoch": 5, "val_auc": 0.9}]  # epoch 5: after the checkpoint resumed
    state.set_from_history(history, epochs=4, monitor="val_auc")
    assert (state.best_value.numpy(), state.best_epoch.numpy(), state.wait.numpy()) == (0.7, 2, 2)


def test_a_resumed_run_drops_the_history_of_epochs_its_checkpoint_does_not_hold(tmp_path):
    from marn_tf.training.callbacks import keep_history_until, read_history

    path = str(tmp_path / "history.jsonl")
    (tmp_path / "history.jsonl").write_text("".join(f'{{"epoch": {e}, "loss": 0.{e}}}\n' for e in (1, 2, 3)))
    keep_history_until(path, 2)  # killed after epoch 3's line, before its checkpoint
    assert [h["epoch"] for h in read_history(path)] == [1, 2]
    keep_history_until(path, 2)  # nothing beyond: unchanged
    assert [h["epoch"] for h in read_history(path)] == [1, 2]
