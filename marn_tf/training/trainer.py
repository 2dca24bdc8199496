"""The fit loop: `train(config, data_dir, output_dir)` (what `marn train` calls). What the output directory holds is
`training_directory.py` (local or on any file system: gs://, ...); how a run is read back, `training_run.py`.

Re-running with the same output directory resumes from the last checkpoint (after a crash or a kill),
at the epoch it had reached, with the early-stopping state saved in that checkpoint, and at the same place in the
seeded data stream: the batches trained before are read and skipped, so a resumed run trains on the batches an
uninterrupted one would. The checkpoint to resume is the newest `ckpt-N` on disk that reads back whole: a damaged
or outdated `checkpoints/checkpoint` state file is rewritten to name it (TensorFlow alone would start again from
step 0 over the newer checkpoints); a newest checkpoint that cannot be read, holds NaN or infinite values, or
lacks a variable of the network, stops the run with what to do. Every worker of a multi-worker run restores the
chief's checkpoint, and they check that they resumed at the same step. Everything that can be checked before
training is: the schema against the config, the splits' files, the item table against the vocabulary, and on
resume the config and the data against those the run was trained with.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
import time
from typing import Optional

import tensorflow as tf

from marn_tf.config import Config
from marn_tf.schema import SchemaError
from marn_tf.storage.locks import lock
from marn_tf.training import callbacks as C
from marn_tf.training.strategy import (is_chief, make_strategy, placement_summary, serve_cluster_task, serves_only,
                                       task_name)
from marn_tf.training.task import CtrTask
from marn_tf.training.training_directory import BEST, CHECKPOINTS, COMMAND, TrainingDirectory, check_claimable
from marn_tf.training.training_run import (check_all_restored, check_readable, check_resume, keep_best_until,
                                           record_run, recover_checkpoint_state, refuse_non_finite,
                                           refuse_non_finite_slots, restore_checked)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainResult:
    status: str  # "completed" (train.epochs, or to the end of the decay: CtrTask.epochs_to_run), "early_stopped", "nan"
    steps: int
    epochs: int
    best_val_auc: Optional[float]
    best_checkpoint: Optional[str]
    seconds: float
    examples_per_second: float
    resumed_from_step: int
    # status "nan": the variables that held NaN or infinite values while the loss was finite, or the non-trainable
    # ones (the item table) that did when it was not (else empty)
    non_finite_variables: list[str] = dataclasses.field(default_factory=list)

    def failure(self) -> str:
        """What went wrong and what to do, for status "nan"."""
        if self.non_finite_variables:
            shown = ", ".join(self.non_finite_variables[:5]) + (" ..." if len(self.non_finite_variables) > 5 else "")
            return (f"NaN or infinite values are in the weights ({shown}); the last good checkpoint is kept. Look for "
                    "non-finite values in the data (the preprocessed item table, the features), then resume with the "
                    "same command")
        return ("the loss became NaN or infinite; the last good checkpoint is kept. Lower train.learning_rate or the "
                "model.lambda_* weights, then resume with the same command")


def train(config: Config, data_dir: str, output_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
          progress: Optional[bool] = None) -> TrainResult:
    """Trains (or resumes) the run in `output_dir`. Its chief refuses a directory another marn command owns and
    holds the directory's lock while it trains: a second `marn train` on it fails at once, naming the holder."""
    config.model.check_settings_used()
    if serves_only(config.runtime.strategy):
        serve_cluster_task()  # a parameter-server cluster's worker or ps task: the chief runs the training
    if not is_chief():  # the other workers write only their scratch directory, while the chief holds the lock
        return _train(config, data_dir, output_dir, strategy, progress, chief=False)
    check_claimable(output_dir)
    with lock(output_dir, COMMAND):
        return _train(config, data_dir, output_dir, strategy, progress, chief=True)


def _train(config: Config, data_dir: str, output_dir: str, strategy: Optional[tf.distribute.Strategy],
           progress: Optional[bool], chief: bool) -> TrainResult:
    train_config = config.train
    task = CtrTask(config, data_dir)
    if chief:
        check_resume(config, output_dir, data_dir, task.schema)
    tf.keras.utils.set_random_seed(train_config.seed)
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.keras.mixed_precision.set_global_policy(config.runtime.mixed_precision)
    strategy = strategy or make_strategy(config.runtime.strategy, config.runtime.tpu, config.runtime.min_shard_bytes)

    with strategy.scope():
        network = task.build_network()
        model = task.build_model(network)
        optimizer = model.optimizer
    if isinstance(strategy, tf.distribute.ParameterServerStrategy):
        log.info(placement_summary(network.core.variables))

    run = TrainingDirectory(output_dir)
    # Non-chief workers of a multi-worker run save too (collectively), into their own scratch directory; they
    # resume from the chief's checkpoints, as every worker must start from the same weights.
    saving = run if chief else run.worker(task_name())
    state = C.TrainingState()
    checkpoint = tf.train.Checkpoint(core=network.core, optimizer=optimizer, training_state=state,
                                     **({"weight_average": model.weight_average} if model.weight_average else {}))
    # The state file of the directory this worker saves into names its newest checkpoint (the chief's: the one that
    # every worker resumes from, read back whole).
    recover_checkpoint_state(saving.checkpoints(CHECKPOINTS))
    resume = run.newest_checkpoint(CHECKPOINTS)
    initial_epoch = 0
    history_path = run.history
    if resume:
        if not chief:
            check_readable(resume)
        status = restore_checked(checkpoint, resume)
        if not isinstance(strategy, tf.distribute.ParameterServerStrategy):  # there core.variables lists the shards
            check_all_restored(status, network, resume)
        refuse_non_finite(network, resume)
        refuse_non_finite_slots(resume)
        initial_epoch = int(resume.rsplit("-", 1)[1])
        if chief:
            C.keep_history_until(history_path, initial_epoch)
        if not int(state.best_epoch.numpy()):  # a checkpoint from before the state was saved with it
            state.set_from_history(C.read_history(history_path), initial_epoch, "val_auc")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        check_same_step(strategy, optimizer.iterations)
    resumed_step = int(optimizer.iterations.numpy())
    keep_best_until(saving.checkpoints(BEST), initial_epoch)
    recover_checkpoint_state(saving.checkpoints(BEST))
    manager = tf.train.CheckpointManager(checkpoint, saving.checkpoints(CHECKPOINTS),
                                         max_to_keep=train_config.keep_checkpoints)
    # The best and the best before it: a kill after saving a new best, before the periodic checkpoint of its epoch,
    # sends the resumed run back to the one before (`keep_best_until`).
    best = tf.train.CheckpointManager(tf.train.Checkpoint(core=network.core), saving.checkpoints(BEST), max_to_keep=2)

    # The data order is seeded (`CtrTask.build_inputs`); `train.deterministic` adds op determinism on top.
    train_data, validation_data = (task.build_inputs(split, network) for split in ("train", "validation"))
    if chief:  # only now: a config that fails building the network or its inputs leaves the directory unclaimed
        record_run(config, output_dir, data_dir, task.schema)
    if resumed_step:
        skipped = batches_trained(strategy, resumed_step)
        train_data = skip_batches(train_data, skipped)
        log.info("resuming from %s (epoch %d, step %d): skipping the %d batches trained before", resume,
                 initial_epoch, resumed_step, skipped)

    guard = C.CheckpointsWithNanGuard(manager, best, state=state, patience=train_config.early_stopping_patience,
                                      weight_average=model.weight_average)
    callbacks = []
    if model.weight_average:
        callbacks.append(C.AveragedWeightsForValidation(model.weight_average))
    if chief:  # the history line before the checkpoint (see HistoryFile)
        callbacks += [C.HistoryFile(history_path, train_config.steps_per_epoch),
                      tf.keras.callbacks.TensorBoard(run.tensorboard)]
    callbacks.append(guard)
    if not isinstance(strategy, tf.distribute.ParameterServerStrategy):  # batch-level hooks cannot run there
        callbacks.append(C.StopOnNonFiniteLoss(guard))
    if progress is None:
        progress = sys.stdout.isatty()
    start = time.time()
    planned = task.epochs_to_run()
    if planned < train_config.epochs:
        log.info("the learning rates reach 0 at step %d (train.learning_rate_decay_passes=%g): training stops after "
                 "epoch %d of train.epochs=%d", task.decay_steps(), train_config.learning_rate_decay_passes, planned,
                 train_config.epochs)
    # A run that had stopped early stays stopped, as it would have without the interruption.
    epochs = initial_epoch if guard.patience_exhausted else planned
    history = model.fit(train_data, epochs=epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=train_config.steps_per_epoch, validation_data=validation_data,
                        validation_steps=train_config.validation_steps, callbacks=callbacks,
                        verbose=1 if progress else 2)
    seconds = time.time() - start
    epochs_run = len(history.history.get("total_loss", []))
    steps = int(optimizer.iterations.numpy())
    status = "nan" if guard.stopped_on_nan else (
        "early_stopped" if initial_epoch + epochs_run < planned else "completed")
    new_steps = steps - resumed_step
    result = TrainResult(status, steps, initial_epoch + epochs_run, guard.best_value, best.latest_checkpoint,
                         round(seconds, 2), round(new_steps * train_config.batch_size / max(seconds, 1e-9), 1),
                         resumed_step, guard.non_finite_variables)
    if chief:
        run.write_summary(dataclasses.asdict(result))
    return result


def check_same_step(strategy: tf.distribute.Strategy, iterations: tf.Variable) -> None:
    """Before the first step of a multi-worker run: every replica restored the same step counter (`iterations`,
    read on each replica), else every worker stops with the same error, rather than train replicas that diverge or
    wait on each other for ever."""
    steps = strategy.gather(strategy.run(lambda: tf.reshape(tf.identity(iterations), [1])), axis=0)
    steps = [int(s) for s in steps.numpy()]
    if len(set(steps)) > 1:
        raise SchemaError(f"the replicas resumed at different steps ({', '.join(map(str, steps))}): every worker "
                          "restores the newest checkpoint in <output>/checkpoints, so --output must name the same "
                          "directory, readable by every worker (a shared file system, gs://...)")


def batches_trained(strategy: tf.distribute.Strategy, steps: int) -> int:
    """Batches of the training dataset that `steps` steps consumed, skipped by a resumed run. Under
    ParameterServerStrategy every worker reads its own part and the coordinator gives the steps to whichever
    worker is free: each skips an equal share, which is close to, not exactly, what it read before."""
    if isinstance(strategy, tf.distribute.ParameterServerStrategy):
        workers = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec().num_tasks("worker")
        return steps // max(workers, 1)
    return steps


def skip_batches(data, count: int):
    """`data` (a dataset, or the `DatasetCreator` of a parameter-server run's per-worker datasets) without its first
    `count` batches. With the fixed shuffle seed the rest of the stream is what an uninterrupted run reads next."""
    if isinstance(data, tf.keras.utils.experimental.DatasetCreator):
        return tf.keras.utils.experimental.DatasetCreator(lambda context: data(context).skip(count),
                                                          data.input_options)
    return data.skip(count)
