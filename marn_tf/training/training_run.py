"""Reading a training run back: what evaluation, export and the benchmarks load (`restore_run`) from the
directory `marn train` writes (`training_directory.py` names its files), with the checks that come before either.

A checkpoint is read back whole before it is used (`check_readable`), one with NaN or infinite values is
refused, one that leaves a network variable without its value is refused (`check_all_restored`), and a damaged
or outdated `checkpoints/checkpoint` state file is rewritten to name the newest checkpoint that reads back
(`recover_checkpoint_state`). The data a run was trained on is recorded (`training_data.json`: the directory,
its schema and vocabulary digests); a resume refuses other data, evaluation and export other vocabularies. The
network of a config is built here (`load_network`), so every caller builds it the same way.
"""
from __future__ import annotations

import json
import logging
import posixpath
from typing import Optional

import numpy as np
import tensorflow as tf
import yaml

from marn_tf.config import Config, move_runtime_keys
from marn_tf.config_loader import ConfigError
from marn_tf.data.input import make_dataset, split_files
from marn_tf.data.item_table import load_item_table
from marn_tf.data.parquet_input import make_parquet_dataset, parquet_files
from marn_tf.model_config import EARLIER_DEFAULTS, LATER_KEYS
from marn_tf.models.network import Network, build_network
from marn_tf.schema import Schema, SchemaError, data_digests
from marn_tf.storage import files
from marn_tf.training.callbacks import non_finite
from marn_tf.training.training_directory import (BEST, CHECKPOINTS, RUN_CONFIG, TrainingDirectory, checkpoint_numbers,
                                                 claim)

log = logging.getLogger(__name__)


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
    if config.train.learning_rate_decay_passes and not schema.split_examples.get("train"):
        raise SchemaError(f"train.learning_rate_decay_passes needs the number of training examples, which the schema in "
                          f"{data_dir} does not give (split_examples: made by an older `marn preprocess`): re-run "
                          "`marn preprocess`, or set train.learning_rate_decay_passes=0")
    return schema


def read_split(config: Config, data_dir: str, schema: Schema, split: str, batch_size: int, **options):
    """`(features, label)` batches of a split from the configured source (TFRecords or Parquet)."""
    if config.train.source == "parquet":
        options.pop("deterministic", None)  # one reader thread: always in file order before shuffling
        return make_parquet_dataset(data_dir, schema, split, batch_size, **options)
    return make_dataset(data_dir, schema, split, batch_size, **options)


def load_network(config: Config, schema: Schema, data_dir: str) -> Network:
    """The network of `config`, its item table filled from `data_dir` (raises if they do not match). With a schema
    whose examples carry the items' content, the network reads it from them and loads no table."""
    network = build_network(schema, config.model, data_dir)
    if not schema.content_in_examples:
        network.item_tower.set_table(load_item_table(data_dir, schema))
    return network


def restore_run(run_dir: str, data_dir: str, checkpoint: Optional[str] = None):
    """(config, schema, network, checkpoint path) of a run, with the weights of `checkpoint` (default: the best,
    or the latest when the run has no validation result yet). What evaluation and export load.

    The network reads the item table, also for a run trained on examples that carry the items' content (the table
    holds the same values): the schema returned is then `without_content_features()`, what requests carry."""
    run = TrainingDirectory(run_dir)
    if not files.exists(run.config_file):
        raise SchemaError(f"{run_dir} is not a training run (no {RUN_CONFIG}): run `marn train` first")
    config = Config.load_run(run.config_file)
    schema = check_data(config, data_dir)
    check_vocabularies(run, data_dir, schema)
    schema = schema.without_content_features()
    network = load_network(config, schema, data_dir)
    checkpoint = checkpoint or run.checkpoint_to_load()
    if checkpoint is None:
        raise SchemaError(f"{run_dir} has no checkpoint yet: train it first")
    if not tf.io.gfile.exists(checkpoint + ".index"):
        raise SchemaError(f"no checkpoint {checkpoint} (expected {checkpoint}.index): name one of "
                          f"{run_dir}/best/ckpt-N or {run_dir}/checkpoints/ckpt-N")
    check_readable(checkpoint)
    # expect_partial: the optimizers and the training state in the file are not read here
    status = restore_checked(tf.train.Checkpoint(core=network.core), checkpoint).expect_partial()
    check_all_restored(status, network, checkpoint)
    refuse_non_finite(network, checkpoint)
    log.info("restored %s", checkpoint)
    return config, schema, network, checkpoint


def checkpoint_reader(prefix: str):
    """A reader of the checkpoint `prefix` itself. (`tf.train.load_checkpoint` first asks whether the path is a
    directory, and a file system that calls every prefix of a name a directory, as ram:// does, sends it looking
    for a state file there.)"""
    return tf.compat.v1.train.NewCheckpointReader(prefix)


def check_readable(prefix: str) -> None:
    """Reads every tensor of checkpoint `prefix` (their checksums are verified): a damaged one stops the run."""
    try:
        reader = checkpoint_reader(prefix)
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError) as err:
        raise SchemaError(f"checkpoint {prefix} cannot be read ({str(err).strip().splitlines()[0]}): marn does not "
                          f"train or evaluate over it. Move its files ({posixpath.basename(prefix)}.*) out of "
                          f"{posixpath.dirname(prefix)} to use the one before, or train into another --output") from err


def refuse_non_finite(network: Network, prefix: str) -> None:
    """After restoring `prefix`: one written before the weights were checked may hold NaN or infinite values."""
    _raise_if_non_finite(prefix, non_finite(network.core.variables))


def refuse_non_finite_slots(prefix: str) -> None:
    """On resume, after the weights: the optimizer's slots, which a restore creates only at the first step, are
    read from the file. Named by their checkpoint keys."""
    reader = checkpoint_reader(prefix)
    _raise_if_non_finite(prefix, sorted(name.replace("/.ATTRIBUTES/VARIABLE_VALUE", "")
                                        for name, dtype in reader.get_variable_to_dtype_map().items()
                                        if dtype.is_floating and not np.all(np.isfinite(reader.get_tensor(name)))))


def _raise_if_non_finite(prefix: str, bad: list[str]) -> None:
    if bad:
        raise SchemaError(f"checkpoint {prefix} holds NaN or infinite values in {', '.join(bad[:10])}"
                          f"{f' and {len(bad) - 10} more' if len(bad) > 10 else ''}: move its files "
                          f"({posixpath.basename(prefix)}.*) out of {posixpath.dirname(prefix)} to use the one before, "
                          "or train into another --output")


def recover_checkpoint_state(directory: str) -> None:
    """Makes the state file `directory/checkpoint` name the newest checkpoint there, once it is known to read back
    whole. A state file that is damaged, empty, missing or behind the files made TensorFlow start again
    from an older checkpoint (or step 0) and overwrite the newer ones; this rewrites it, or stops the run."""
    state_path = files.join(directory, "checkpoint")
    numbers = checkpoint_numbers(directory)
    if not numbers:
        if tf.io.gfile.exists(state_path):
            raise SchemaError(f"{state_path} exists but {directory} has no checkpoint (no ckpt-N.index): marn will "
                              "not start again from step 0 over it. Train into another --output, or move "
                              f"{directory} aside to start this run again")
        return
    newest = files.join(directory, f"ckpt-{numbers[0]}")
    check_readable(newest)
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
    tf.__internal__.train.update_checkpoint_state(directory, posixpath.basename(newest),
                                                  [f"ckpt-{n}" for n in sorted(numbers)], save_relative_paths=True)


def check_resume(config: Config, output_dir: str, data_dir: str, schema: Schema) -> None:
    """Before anything is built or written: a run directory that holds a run is resumed only with the same config
    and data of the same schema and vocabularies (`record_run` records them). A config file that is missing beside
    checkpoints, or cannot be read, stops the run: rewriting it with the new config would resume those checkpoints
    under settings nobody checked. Writes nothing."""
    run = TrainingDirectory(output_dir)
    sections = ("model", "train", "runtime")
    wanted = {k: config.to_dict()[k] for k in sections}
    saved = _read_run_file(run.config_file, output_dir, run.read_config)
    checkpoints = run.checkpoint_numbers(CHECKPOINTS) or run.checkpoint_numbers(BEST)
    if saved is None and checkpoints:
        raise ConfigError(f"{run.config_file} is missing but {output_dir} holds checkpoints: marn does not resume "
                          "them under a config it cannot compare: put back the run_config.yaml this run was trained "
                          "with, or train into another --output")
    if saved is not None:
        if not isinstance(saved, dict):
            raise ConfigError(f"{run.config_file} is not a config (YAML {type(saved).__name__}): put back the "
                              "run_config.yaml this run was trained with, or train into another --output")
        previous = move_runtime_keys(saved)
        had = {k: previous.get(k) or {} for k in sections}
        # a key added after the run was saved: the run was trained with its value from then; a key this model
        # does not read changes nothing, whatever either side holds
        had["model"] = {**LATER_KEYS, **EARLIER_DEFAULTS, **had["model"]}
        unused = config.model.unused_keys()
        had["model"], wanted["model"] = ({k: v for k, v in side["model"].items() if k not in unused}
                                         for side in (had, wanted))
        if had != wanted:
            changed = [f"{s}.{k}" for s in had for k in set(had[s] or {}) | set(wanted[s])
                       if (had[s] or {}).get(k) != wanted[s].get(k)]
            raise ConfigError(f"{output_dir} holds a run with a different config ({', '.join(sorted(changed))}): "
                              "use another --output, or the same settings to resume it")
    recorded = read_data_record(run)
    if recorded is not None:
        digests = data_digests(data_dir, schema)
        for key in ("schema", "vocabularies"):
            if recorded[key] != digests[key]:
                raise ConfigError(
                    f"{output_dir} was trained on data with {key} digest {recorded[key]} ({recorded['data']}); "
                    f"--data {data_dir} has {key} digest {digests[key]}: resume it with the data it was trained on, "
                    "or train into another --output")
        if files.normal_path(data_dir) != recorded["data"]:
            log.info("resuming %s on %s: the data it was trained on (%s) with the same schema and vocabularies",
                     output_dir, data_dir, recorded["data"])


def record_run(config: Config, output_dir: str, data_dir: str, schema: Schema) -> None:
    """After `check_resume`, once the network and its inputs are built, before the first step: a new run records its
    ownership marker, config (`run_config.yaml`) and data (`training_data.json`). Not before: a config that fails only when the
    network is built would otherwise claim the directory, and the corrected command would be refused as a
    different config."""
    run = TrainingDirectory(output_dir)
    claim(output_dir)
    if read_data_record(run) is None:
        if files.exists(run.config_file):  # a run from before the record: from now on its data is checked
            log.warning("%s has no %s: recording %s as its data", output_dir, posixpath.basename(run.data_record),
                        data_dir)
        files.write_text(run.data_record, json.dumps({"data": files.normal_path(data_dir),
                                                      **data_digests(data_dir, schema)}, indent=2))
    if not files.exists(run.config_file):
        run.write_config(config.to_dict())


def read_data_record(run: TrainingDirectory) -> Optional[dict]:
    """The run's `training_data.json` ({"data", "schema", "vocabularies"}); None when the run has none (one trained
    before the record was written). Raises ConfigError when it cannot be read."""
    def read():
        text = files.read_text(run.data_record)
        return None if text is None else json.loads(text)

    record = _read_run_file(run.data_record, run.path, read)
    if record is not None and not (isinstance(record, dict) and {"data", "schema", "vocabularies"} <= set(record)):
        raise ConfigError(f"{run.data_record} is damaged (no data, schema and vocabularies entries): put back the file "
                          "this run wrote, or train into another --output")
    return record


def _read_run_file(path: str, run_dir: str, read):
    """`read()`, or a ConfigError naming `path` and what to do when the file is there but cannot be read."""
    try:
        return read()
    except (OSError, ValueError, yaml.YAMLError) as err:  # JSON's and YAML's parse errors, a failed read
        raise ConfigError(f"{path} cannot be read ({str(err).strip().splitlines()[0]}): marn does not resume or "
                          f"load {run_dir} without it: put back the file this run wrote, or train into another "
                          "--output") from err


def check_vocabularies(run: TrainingDirectory, data_dir: str, schema: Schema) -> None:
    """Evaluating or exporting with `data_dir`: its vocabularies must be those the run was trained with, else every
    id would be read as another item or user. A run trained before the record was written is not checked."""
    recorded = read_data_record(run)
    if recorded is None:
        log.warning("%s has no %s: the vocabularies of %s are not checked against the training data", run.path,
                    posixpath.basename(run.data_record), data_dir)
        return
    digest = data_digests(data_dir, schema)["vocabularies"]
    if digest != recorded["vocabularies"]:
        raise SchemaError(f"--data {data_dir} has other vocabularies (digest {digest}) than the data {run.path} was "
                          f"trained on ({recorded['data']}, digest {recorded['vocabularies']}): its ids would map to "
                          "other rows of the model. Pass the data the run was trained on as --data")


def restore_checked(checkpoint: tf.train.Checkpoint, prefix: str):
    """`checkpoint.restore(prefix)`, where a variable saved with another shape than the network's (a layer's width
    changed since training) stops with an error naming it instead of TensorFlow's."""
    try:
        return checkpoint.restore(prefix)
    except ValueError as err:
        if "incompatible tensor" not in str(err):
            raise
        raise SchemaError(f"checkpoint {prefix} does not fit the network built from the run's config "
                          f"({str(err).strip().splitlines()[0]}): the network was changed since training. Use the "
                          "marn version that trained the run, or train it again") from err


def check_all_restored(status, network: Network, checkpoint: str) -> None:
    """After restoring `checkpoint` into `network.core`: every variable got its value from the file, else a layer
    renamed or added since training would silently keep its fresh initial weights. The item table is filled from
    the data, not the checkpoint (a run trained on examples that carried the items' content saved none)."""
    # TensorFlow keeps the objects it matched to the file in the status (its own assert_existing_objects_matched
    # reads the same map, but names no variable usefully).
    matched = {id(obj) for obj in status._checkpoint.object_by_proto_id.values()}  # noqa: SLF001
    table = {id(v) for v in getattr(network.item_tower, "table", {}).values()}
    missing = sorted(v.name for v in network.core.variables if id(v) not in matched and id(v) not in table)
    if missing:
        raise SchemaError(f"checkpoint {checkpoint} has no value for {', '.join(missing[:10])}"
                          f"{f' and {len(missing) - 10} more' if len(missing) > 10 else ''}: the network built from "
                          "the run's config is not the one that was trained (a layer renamed or added since). Use the "
                          "marn version that trained the run, or train it again")


def keep_best_until(directory: str, epochs: int) -> None:
    """On resume from the checkpoint of epoch `epochs`: removes the best checkpoints (`directory`, best/) of later
    epochs. The best checkpoint is saved before the periodic one of its epoch, so a kill between them leaves one
    that the resumed run trains again; what stays is the best up to `epochs`, what the resumed state records."""
    later = [n for n in checkpoint_numbers(directory) if n > epochs]
    if not later:
        return
    log.warning("%s: removing ckpt-%s, saved for epoch(s) that the resumed checkpoint does not hold; they are "
                "trained again", directory, ", ckpt-".join(str(n) for n in sorted(later)))
    for number in later:
        for path in tf.io.gfile.glob(files.join(directory, f"ckpt-{number}.*")):
            tf.io.gfile.remove(path)
    kept = checkpoint_numbers(directory)
    if kept:
        tf.__internal__.train.update_checkpoint_state(directory, f"ckpt-{kept[0]}",
                                                      [f"ckpt-{n}" for n in sorted(kept)], save_relative_paths=True)
    elif tf.io.gfile.exists(files.join(directory, "checkpoint")):
        tf.io.gfile.remove(files.join(directory, "checkpoint"))


def indexed(dataset: tf.data.Dataset, network: Network) -> tf.data.Dataset:
    """Strings -> vocabulary indices in the input pipeline, in parallel and outside the compiled step."""
    lookup = network.lookup
    names = lookup.input_names  # metadata (request id, timestamp) stays behind
    return dataset.map(lambda features, label: (lookup({k: features[k] for k in names}), label),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
