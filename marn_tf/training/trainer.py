"""A training run: `train(config, data_dir, output_dir)` (what `marn train` calls).

Output directory:

    run_config.yaml          the config the run used (a resumed run must match it)
    checkpoints/ckpt-N       after every epoch of `train.steps_per_epoch` steps: model, optimizers, step
    best/ckpt-N              the epoch with the best validation AUC (what evaluate and export load)
    history.jsonl            one line of metrics per epoch
    tensorboard/             losses, AUC, D1/Ds accuracy, mean modality weights, lambda_grl
    training_summary.json    how the run ended

Re-running with the same output directory resumes from the last checkpoint (after a crash or a kill),
at the epoch it had reached, with the early-stopping state saved in that checkpoint. The checkpoint to resume
is the newest `ckpt-N` on disk that reads back whole: a damaged or outdated `checkpoints/checkpoint` state file
is rewritten to name it (TensorFlow alone would start again from step 0 over the newer checkpoints); a newest
checkpoint that cannot be read, or holds NaN or infinite values, stops the run with what to do. Everything that
can be checked before training is: the schema against the config, the splits' files, the item table against
the vocabulary.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import yaml

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError
from marn_tf.data.input import make_dataset, split_files
from marn_tf.data.item_table import load_item_table
from marn_tf.data.parquet_input import make_parquet_dataset, parquet_files
from marn_tf.models.marn_model import MarnModel
from marn_tf.models.network import Network, build_network
from marn_tf.schema import Schema, SchemaError
from marn_tf.training import callbacks as C
from marn_tf.training.strategy import is_chief, make_strategy, task_name
from marn_tf.training.weight_average import WeightAverage

log = logging.getLogger(__name__)
RUN_CONFIG = "run_config.yaml"


@dataclasses.dataclass
class TrainResult:
    status: str  # "completed", "early_stopped" or "nan"
    steps: int
    epochs: int
    best_val_auc: Optional[float]
    best_checkpoint: Optional[str]
    seconds: float
    examples_per_second: float
    resumed_from_step: int
    # status "nan": the variables that held NaN or infinite values while the loss was finite (else empty)
    non_finite_variables: list[str] = dataclasses.field(default_factory=list)

    def failure(self) -> str:
        """What went wrong and what to do, for status "nan"."""
        if self.non_finite_variables:
            shown = ", ".join(self.non_finite_variables[:5]) + (" ..." if len(self.non_finite_variables) > 5 else "")
            return (f"NaN or infinite values appeared in the weights ({shown}) while the loss stayed finite; the "
                    "last good checkpoint is kept. Look for non-finite values in the data (the preprocessed item "
                    "table, the features), then resume with the same command")
        return ("the loss became NaN or infinite; the last good checkpoint is kept. Lower train.learning_rate or the "
                "model.lambda_* weights, then resume with the same command")


def check_data(config: Config, data_dir: str) -> Schema:
    """Fails before training, with what to fix, when the data does not fit the config."""
    schema = Schema.load(data_dir)
    if schema.sequence_length != config.sequence.max_length:
        raise SchemaError(f"the data in {data_dir} has sequences of {schema.sequence_length} items, the config says "
                          f"sequence.max_length={config.sequence.max_length}: re-run `marn preprocess` or fix the config")
    for split in ("train", "validation"):
        if config.train.source == "parquet":
            parquet_files(data_dir, split)
        else:
            split_files(data_dir, schema, split)
    return schema


def read_split(config: Config, data_dir: str, schema: Schema, split: str, batch_size: int, **options):
    """`(features, label)` batches of a split from the configured source (TFRecords or Parquet)."""
    if config.train.source == "parquet":
        options.pop("deterministic", None)  # one reader thread: always in file order before shuffling
        return make_parquet_dataset(data_dir, schema, split, batch_size, **options)
    return make_dataset(data_dir, schema, split, batch_size, **options)


def load_network(config: Config, schema: Schema, data_dir: str) -> Network:
    """The network of `config`, its item table filled from `data_dir` (raises if they do not match)."""
    network = build_network(schema, config.model, data_dir)
    network.item_tower.set_table(load_item_table(data_dir, schema))
    return network


def restore_run(run_dir: str, data_dir: str, checkpoint: Optional[str] = None):
    """(config, schema, network, checkpoint path) of a run, with the weights of `checkpoint` (default: the best,
    or the latest when the run has no validation result yet). What evaluation and export load."""
    config_path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.exists(config_path):
        raise SchemaError(f"{run_dir} is not a training run (no {RUN_CONFIG}): run `marn train` first")
    config = Config.load(config_path)
    schema = check_data(config, data_dir)
    network = load_network(config, schema, data_dir)
    # The files, not the state files: a damaged state file must not silently switch to another checkpoint.
    checkpoint = checkpoint or _newest(os.path.join(run_dir, "best")) or _newest(os.path.join(run_dir, "checkpoints"))
    if checkpoint is None:
        raise SchemaError(f"{run_dir} has no checkpoint yet: train it first")
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise SchemaError(f"no checkpoint {checkpoint} (expected {checkpoint}.index): name one of "
                          f"{run_dir}/best/ckpt-N or {run_dir}/checkpoints/ckpt-N")
    _check_readable(checkpoint)
    tf.train.Checkpoint(core=network.core).restore(checkpoint).expect_partial()
    _refuse_non_finite(network, checkpoint)
    log.info("restored %s", checkpoint)
    return config, schema, network, checkpoint


def _newest(directory: str) -> Optional[str]:
    numbers = checkpoint_numbers(directory)
    return os.path.join(directory, f"ckpt-{numbers[0]}") if numbers else None


def checkpoint_numbers(directory: str) -> list[int]:
    """N of every `ckpt-N.index` in `directory`, newest first."""
    names = (os.path.basename(p)[len("ckpt-"):-len(".index")]
             for p in tf.io.gfile.glob(os.path.join(directory, "ckpt-*.index")))
    return sorted((int(n) for n in names if n.isdigit()), reverse=True)


def _check_readable(prefix: str) -> None:
    """Reads every tensor of checkpoint `prefix` (their checksums are verified): a damaged one stops the run."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError) as err:
        raise SchemaError(f"checkpoint {prefix} cannot be read ({str(err).strip().splitlines()[0]}): marn does not "
                          f"train or evaluate over it. Move its files ({os.path.basename(prefix)}.*) out of "
                          f"{os.path.dirname(prefix)} to use the one before, or train into another --output") from err


def _refuse_non_finite(network: Network, prefix: str) -> None:
    """After restoring `prefix`: one written before the weights were checked may hold NaN or infinite values."""
    _raise_if_non_finite(prefix, C.non_finite(network.core.variables))


def _refuse_non_finite_slots(prefix: str) -> None:
    """On resume, after the weights: the optimizer's slots, which a restore creates only at the first step, are
    read from the file. Named by their checkpoint keys."""
    reader = tf.train.load_checkpoint(prefix)
    _raise_if_non_finite(prefix, sorted(name.replace("/.ATTRIBUTES/VARIABLE_VALUE", "")
                                        for name, dtype in reader.get_variable_to_dtype_map().items()
                                        if dtype.is_floating and not np.all(np.isfinite(reader.get_tensor(name)))))


def _raise_if_non_finite(prefix: str, bad: list[str]) -> None:
    if bad:
        raise SchemaError(f"checkpoint {prefix} holds NaN or infinite values in {', '.join(bad[:10])}"
                          f"{f' and {len(bad) - 10} more' if len(bad) > 10 else ''}: move its files "
                          f"({os.path.basename(prefix)}.*) out of {os.path.dirname(prefix)} to use the one before, "
                          "or train into another --output")


def recover_checkpoint_state(directory: str) -> None:
    """Makes the state file `directory/checkpoint` name the newest checkpoint there, once it is known to read back
    whole. A state file that is damaged, empty, missing or behind the files made TensorFlow start again
    from an older checkpoint (or step 0) and overwrite the newer ones; this rewrites it, or stops the run."""
    state_path = os.path.join(directory, "checkpoint")
    numbers = checkpoint_numbers(directory)
    if not numbers:
        if tf.io.gfile.exists(state_path):
            raise SchemaError(f"{state_path} exists but {directory} has no checkpoint (no ckpt-N.index): marn will "
                              "not start again from step 0 over it. Train into another --output, or move "
                              f"{directory} aside to start this run again")
        return
    newest = os.path.join(directory, f"ckpt-{numbers[0]}")
    _check_readable(newest)
    try:
        state = tf.train.get_checkpoint_state(directory)
        named = state.model_checkpoint_path if state else None
    except (ValueError, UnicodeDecodeError, tf.errors.OpError):  # an empty file, bytes that are not text
        named = None
    if named == newest:
        return
    log.warning("%s %s; resuming from %s, the newest checkpoint there (it reads back whole)", state_path,
                f"names {named}" if named else "is damaged or missing", newest)
    # What CheckpointManager writes (relative paths, an atomic replace); the v1 function writes absolute paths.
    tf.__internal__.train.update_checkpoint_state(directory, os.path.basename(newest),
                                                  [f"ckpt-{n}" for n in sorted(numbers)], save_relative_paths=True)


def _check_resume(config: Config, output_dir: str) -> None:
    path = os.path.join(output_dir, RUN_CONFIG)
    wanted = {k: config.to_dict()[k] for k in ("model", "train")}
    if os.path.exists(path):
        with open(path) as f:
            previous = yaml.safe_load(f)
        had = {k: previous.get(k) for k in ("model", "train")}
        if had != wanted:
            changed = [f"{s}.{k}" for s in had for k in set(had[s] or {}) | set(wanted[s])
                       if (had[s] or {}).get(k) != wanted[s].get(k)]
            raise ConfigError(f"{output_dir} holds a run with a different config ({', '.join(sorted(changed))}): "
                              "use another --output, or the same settings to resume it")
    else:
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "w") as f:
            yaml.safe_dump(config.to_dict(), f, sort_keys=False)


def indexed(dataset: tf.data.Dataset, network: Network) -> tf.data.Dataset:
    """Strings -> vocabulary indices in the input pipeline, in parallel and outside the compiled step."""
    lookup = network.lookup
    names = lookup.input_names  # metadata (request id, timestamp) stays behind
    return dataset.map(lambda features, label: (lookup({k: features[k] for k in names}), label),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def train(config: Config, data_dir: str, output_dir: str, strategy: Optional[tf.distribute.Strategy] = None,
          progress: Optional[bool] = None) -> TrainResult:
    config.model.check_settings_used()
    train_config = config.train
    schema = check_data(config, data_dir)
    chief = is_chief()
    if chief:
        _check_resume(config, output_dir)
    tf.keras.utils.set_random_seed(train_config.seed)
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.keras.mixed_precision.set_global_policy(train_config.mixed_precision)
    strategy = strategy or make_strategy(train_config.strategy, train_config.tpu)

    with strategy.scope():
        network = load_network(config, schema, data_dir)
        model = MarnModel(network.core, config.model, train_config.update, network.modalities)
        optimizer = model.make_optimizer(train_config)
        if train_config.mixed_precision == "mixed_float16":
            optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, jit_compile=train_config.xla)
        if train_config.weight_averaging:
            model.weight_average = WeightAverage(model.model_variables, train_config.weight_averaging)

    # Non-chief workers of a multi-worker run save too (collectively), into their own scratch directory.
    checkpoint_dir = output_dir if chief else os.path.join(output_dir, "workers", task_name())
    state = C.TrainingState()
    checkpoint = tf.train.Checkpoint(core=network.core, optimizer=optimizer, training_state=state,
                                     **({"weight_average": model.weight_average} if model.weight_average else {}))
    for directory in ("checkpoints", "best"):
        recover_checkpoint_state(os.path.join(checkpoint_dir, directory))
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(checkpoint_dir, "checkpoints"),
                                         max_to_keep=train_config.keep_checkpoints)
    best = tf.train.CheckpointManager(tf.train.Checkpoint(core=network.core), os.path.join(checkpoint_dir, "best"),
                                      max_to_keep=1)
    initial_epoch = 0
    history_path = os.path.join(output_dir, "history.jsonl")
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        _refuse_non_finite(network, manager.latest_checkpoint)
        _refuse_non_finite_slots(manager.latest_checkpoint)
        initial_epoch = int(manager.latest_checkpoint.rsplit("-", 1)[1])
        if chief:
            C.keep_history_until(history_path, initial_epoch)
        if not int(state.best_epoch.numpy()):  # a checkpoint from before the state was saved with it
            state.set_from_history(C.read_history(history_path), initial_epoch, "val_auc")
        log.info("resuming from %s (epoch %d, step %d)", manager.latest_checkpoint, initial_epoch,
                 initial_epoch * train_config.steps_per_epoch)

    # The data order is seeded and reproducible in every run (the same seed, the same batches);
    # `train.deterministic` adds op determinism on top.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_data = indexed(read_split(config, data_dir, schema, "train", train_config.batch_size, repeat=True,
                                    shuffle_buffer=train_config.shuffle_buffer, deterministic=True,
                                    seed=train_config.seed), network).with_options(options)
    validation_data = indexed(read_split(config, data_dir, schema, "validation", train_config.batch_size,
                                         drop_remainder=train_config.xla), network).with_options(options)

    guard = C.CheckpointsWithNanGuard(manager, best, state=state, patience=train_config.early_stopping_patience,
                                      weight_average=model.weight_average)
    callbacks = [C.AdversarialRamp([network.item_tower.encoder.discriminator]
                                   if config.model.discriminators != "none" else [], config.model.adversarial_ramp_steps,
                                   config.model.grl_coefficient, config.model.grl_ramp)]
    if model.weight_average:
        callbacks.append(C.AveragedWeightsForValidation(model.weight_average))
    if chief:  # the history line before the checkpoint (see HistoryFile)
        callbacks += [C.HistoryFile(history_path, train_config.steps_per_epoch),
                      tf.keras.callbacks.TensorBoard(os.path.join(output_dir, "tensorboard"))]
    callbacks.append(guard)
    if progress is None:
        progress = sys.stdout.isatty()
    start = time.time()
    # A run that had stopped early stays stopped, as it would have without the interruption.
    epochs = initial_epoch if guard.patience_exhausted else train_config.epochs
    history = model.fit(train_data, epochs=epochs, initial_epoch=initial_epoch,
                        steps_per_epoch=train_config.steps_per_epoch, validation_data=validation_data,
                        validation_steps=train_config.validation_steps, callbacks=callbacks,
                        verbose=1 if progress else 2)
    seconds = time.time() - start
    epochs_run = len(history.history.get("total_loss", []))
    steps = int(optimizer.iterations.numpy())
    status = "nan" if guard.stopped_on_nan else (
        "early_stopped" if initial_epoch + epochs_run < train_config.epochs else "completed")
    new_steps = steps - initial_epoch * train_config.steps_per_epoch
    result = TrainResult(status, steps, initial_epoch + epochs_run, guard.best_value, best.latest_checkpoint,
                         round(seconds, 2), round(new_steps * train_config.batch_size / max(seconds, 1e-9), 1),
                         initial_epoch * train_config.steps_per_epoch, guard.non_finite_variables)
    if chief:
        with open(os.path.join(output_dir, "training_summary.json"), "w") as f:
            json.dump(dataclasses.asdict(result), f, indent=2)
    return result
