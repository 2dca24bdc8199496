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
from marn_tf.models.marn_model import MarnModel
from marn_tf.models.network import Network
from marn_tf.schema import Schema
from marn_tf.data.input import split_files
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
        self.schema: Schema = check_data(config, data_dir)

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

    def build_inputs(self, split: str, network: Network) -> tf.data.Dataset:
        """Indexed `(features, label)` batches: "train" repeats, shuffled in a seeded order (the same seed, the same
        batches); "validation" is read once, whole batches only under XLA's static shapes."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        train = self.config.train
        if split == "train":
            if self.schema.content_in_examples and train.source == "tfrecord":
                self._log_shuffle_memory()
            data = read_split(self.config, self.data_dir, self.schema, split, train.batch_size, repeat=True,
                              shuffle_buffer=train.shuffle_buffer, deterministic=True, seed=train.seed)
        else:
            # Under ParameterServerStrategy every worker reads its own copy for `train.validation_steps` batches in
            # all, so it repeats (inexact evaluation: Keras' exact one does not take the model's own metrics).
            data = read_split(self.config, self.data_dir, self.schema, split, train.batch_size,
                              drop_remainder=self.config.runtime.xla,
                              repeat=self.config.runtime.strategy == "parameter_server")
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return indexed(data, network).with_options(options)

    def _log_shuffle_memory(self) -> None:
        """Says what the shuffle buffer holds when the examples carry their items' content: `train.shuffle_buffer`
        serialized examples, ~14x larger than with the item table on the embedded data (benchmarks/README.md,
        "Scale-out"), so the default buffer can take GBs."""
        first = next(iter(tf.data.TFRecordDataset(split_files(self.data_dir, self.schema, "train")[:1],
                                                  compression_type="GZIP").take(1)))
        size, buffer = len(first.numpy()), self.config.train.shuffle_buffer
        log.info("the examples carry their items' content (%.1f KB each): the shuffle buffer of %d examples holds "
                 "up to %.2f GB; lower train.shuffle_buffer if memory is short", size / 1024, buffer,
                 size * buffer / 2**30)
