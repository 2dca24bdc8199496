"""Callbacks: the NaN guard keeps the last good checkpoint, at the bad batch or at the end of its epoch."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.training.callbacks import CheckpointsWithNanGuard, StopOnNonFiniteLoss


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


@pytest.mark.parametrize("batch_check, stopped_at", [(True, (1, 1)), (False, (1, -1))])
def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, batch_check, stopped_at):
    model = Model()
    model.compile(optimizer=tf.keras.optimizers.legacy.SGD(0.01))
    checkpoint = tf.train.Checkpoint(model=model)
    guard = CheckpointsWithNanGuard(tf.train.CheckpointManager(checkpoint, str(tmp_path / "c"), 5),
                                    tf.train.CheckpointManager(checkpoint, str(tmp_path / "b"), 1), monitor="total_loss")
    data = regression(poison_batch=4).repeat()
    # batch 4 is in epoch 2; without the batch-level check (ParameterServerStrategy) the epoch's end stops it
    callbacks = [guard, StopOnNonFiniteLoss(guard)] if batch_check else [guard]
    model.fit(data, steps_per_epoch=3, epochs=4, callbacks=callbacks, verbose=0)
    assert guard.stopped_on_nan == stopped_at
    assert guard.manager.checkpoints == [str(tmp_path / "c" / "ckpt-1")]
    restored = Model()
    restored(np.ones((1, 2), np.float32))
    tf.train.Checkpoint(model=restored).restore(guard.manager.latest_checkpoint).expect_partial()
    assert all(np.isfinite(w).all() for w in restored.get_weights())
    assert not all(np.isfinite(w).all() for w in model.get_weights())  # what was not saved


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


def test_a_resumed_run_removes_the_best_checkpoints_of_epochs_it_trains_again(tmp_path):
    """Killed after saving epoch 3's best checkpoint, before its periodic one, a run resumes from epoch 2: best/ goes
    back to the best up to epoch 2 (what that checkpoint's state names), not epoch 3's, which the retrained epoch
    may not match."""
    from marn_tf.training.training_run import keep_best_until

    value = tf.Variable(0.0)
    best = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), str(tmp_path), max_to_keep=2)
    for epoch in (1, 3):
        value.assign(float(epoch))
        best.save(checkpoint_number=epoch)

    keep_best_until(str(tmp_path), 2)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"]
    reopened = tf.train.CheckpointManager(tf.train.Checkpoint(value=value), str(tmp_path), max_to_keep=2)
    assert reopened.latest_checkpoint == str(tmp_path / "ckpt-1")
    tf.train.Checkpoint(value=value).restore(reopened.latest_checkpoint)
    assert float(value.numpy()) == 1.0
    keep_best_until(str(tmp_path), 0)  # resumed from no checkpoint: no best is left, nor a state file naming one
    assert list(tmp_path.iterdir()) == []
