"""The CTR task: what a training run is built from, in one place (TF Model Garden's Task).

`CtrTask(config, data_dir)` checks the data against the config, then builds the network (`build_network`),
the compiled training model with its optimizers (`build_model`) and the input pipelines (`build_inputs`).
`trainer.train` runs the fit loop around them; the benchmarks and tests build their models here too, so
there is one way to make a model from a config.
"""
from __future__ import annotations

import logging
import math

import tensorflow as tf

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError
from marn_tf.models.marn_model import MarnModel
from marn_tf.models.network import Network
from marn_tf.schema import Schema
from marn_tf.data.input import sample_batches, split_files
from marn_tf.training.strategy import worker_count
from marn_tf.training.training_run import check_data, indexed, load_network, read_split
from marn_tf.training.weight_average import WeightAverage

SPLITS = ("train", "validation")
log = logging.getLogger(__name__)


class CtrTask:
    """Args:
      config: the whole config (`model:`, `train:` and `runtime:` are read here).
      data_dir: a `marn preprocess` output; checked against the config at once (raises with what to fix).
    """

    def __init__(self, config: Config, data_dir: str):
        self.config = config
        self.data_dir = data_dir
        if config.runtime.strategy == "parameter_server" and config.train.source == "parquet":
            raise ConfigError("train.source=parquet reads the files through Python in the process that builds the "
                              "input, which the workers of a parameter-server cluster cannot run: use the TFRecords "
                              "(train.source=tfrecord) with runtime.strategy=parameter_server")
        self.schema: Schema = check_data(config, data_dir)
        self.validation_examples = self._validation_examples() if config.train.validation_steps else None

    def build_network(self) -> Network:
        """The network of `config.model`, its item table filled from the data (in the current strategy's scope)."""
        return load_network(self.config, self.schema, self.data_dir)

    def build_model(self, network: Network) -> MarnModel:
        """The training model around `network`: MARN's loss, its two optimizers (loss-scaled under mixed_float16),
        compiled (with XLA when `runtime.xla`), and the weights' moving average when `train.weight_averaging`."""
        train, runtime = self.config.train, self.config.runtime
        model = MarnModel(network.core, self.config.model, train.update, network.modalities, network.inference)
        optimizer = model.make_optimizer(train, self.decay_steps())
        if runtime.mixed_precision == "mixed_float16":
            optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, jit_compile=runtime.xla)
        # the step counter exists before the first step reads it (for the adversarial ramp); created inside a
        # replica's step it would break MirroredStrategy's first call
        model.optimizer.iterations
        if train.weight_averaging:
            model.weight_average = WeightAverage(model.model_variables, train.weight_averaging)
        return model

    def decay_steps(self) -> int:
        """`train.learning_rate_decay_passes` in steps of `train.batch_size` over the training split (0: no decay)."""
        passes = self.config.train.learning_rate_decay_passes
        return math.ceil(passes * self.schema.split_examples["train"] / self.config.train.batch_size) if passes else 0

    def epochs_to_run(self) -> int:
        """`train.epochs`, or fewer when the decayed learning rates reach 0 before them: the epoch that holds the
        last step of the decay is the last that can move a weight, so the epochs after it are not run. (Not with
        `train.weight_averaging`, whose average keeps moving towards the weights after they stop.)"""
        train = self.config.train
        decay = self.decay_steps()
        if not decay or train.weight_averaging:
            return train.epochs
        return min(train.epochs, math.ceil(decay / train.steps_per_epoch))

    def build_inputs(self, split: str, network: Network):
        """Indexed `(features, label)` batches: "train" repeats, shuffled in a seeded order (the same seed, the same
        batches); "validation" is the whole split read once, whole batches only under XLA's static shapes, or with
        `train.validation_steps` a fixed sample of it (`validation_fraction`), repeated.

        Under ParameterServerStrategy a `DatasetCreator` instead: each worker reads its own part of the split, chosen
        by its index in the cluster (`read`'s `shard`), so that the workers train on different batches and one pass
        of every worker over its part is one pass over the split. The workers share an epoch's `validation_steps`
        batches as they come free (inexact: Keras' exact evaluation does not take the model's own metrics)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        train = self.config.train
        if split == "train" and self.schema.content_in_examples and train.source == "tfrecord":
            self._log_shuffle_memory()
        if self.config.runtime.strategy != "parameter_server":
            return self.read(split, network)
        workers = worker_count(self.config.runtime.strategy)

        def per_worker(input_context):
            # Keras calls this once, in the function every worker runs; the index is filled in on each worker
            index = tf.distribute.coordinator.experimental_get_current_worker_index()
            return self.read(split, network, shard=(workers, index))

        return tf.keras.utils.experimental.DatasetCreator(per_worker)

    def read(self, split: str, network: Network, shard=None) -> tf.data.Dataset:
        """`build_inputs`' batches of `split`, from part `shard=(count, index)` of it only when given (see
        `marn_tf.data.input.make_dataset`)."""
        train = self.config.train
        parts = {"shard": shard} if shard is not None else {}
        if split == "train":
            data = read_split(self.config, self.data_dir, self.schema, split, train.batch_size, repeat=True,
                              shuffle_buffer=train.shuffle_buffer, deterministic=True, seed=train.seed, **parts)
        elif train.validation_steps is None:
            data = read_split(self.config, self.data_dir, self.schema, split, train.batch_size,
                              drop_remainder=self.config.runtime.xla, **parts)
        else:
            data = read_split(self.config, self.data_dir, self.schema, split, train.batch_size, shuffle=False,
                              deterministic=True, drop_remainder=False, **parts)
            data = sample_batches(data, self.validation_fraction(), train.seed, train.batch_size)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return indexed(data, network).with_options(options)

    def validation_fraction(self) -> float:
        """The share of the validation split that `train.validation_steps` batches validate on: each pass takes
        that many batches from one fixed random sample of the split, drawn with `train.seed`, so that the best
        checkpoint is chosen on examples from across the split (its users), the same ones every epoch. A margin of
        4 standard deviations makes the sample large enough for all of them nearly always; should it fall short,
        the pass wraps around to its first examples."""
        wanted = self.config.train.validation_steps * self.config.train.batch_size
        return min(1.0, (wanted + 4 * math.sqrt(wanted) + 16) / self.validation_examples)

    def _validation_examples(self) -> int:
        """The validation split's size: from the schema, or counted for a schema that does not record it."""
        if self.schema.split_examples.get("validation"):
            return self.schema.split_examples["validation"]
        data = read_split(self.config, self.data_dir, self.schema, "validation", 8192, drop_remainder=False)
        return int(data.reduce(0, lambda count, batch: count + tf.shape(batch[1])[0]))

    def _log_shuffle_memory(self) -> None:
        """Says what the shuffle buffer holds when the examples carry their items' content: `train.shuffle_buffer`
        serialized examples, ~14x larger than with the item table on the embedded data (benchmarks/README.md),
        so the default buffer can take GBs."""
        first = next(iter(tf.data.TFRecordDataset(split_files(self.data_dir, self.schema, "train")[:1],
                                                  compression_type="GZIP").take(1)))
        size, buffer = len(first.numpy()), self.config.train.shuffle_buffer
        log.info("the examples carry their items' content (%.1f KB each): the shuffle buffer of %d examples holds "
                 "up to %.2f GB; lower train.shuffle_buffer if memory is short", size / 1024, buffer,
                 size * buffer / 2**30)
