"""The `train:` and `runtime:` sections of the config: the training run (optimizers, budget, validation,
checkpoints) and where it executes (devices, precision, compiler), with the checks across sections."""
from __future__ import annotations

import dataclasses
from typing import Optional

from marn_tf.config_loader import ConfigError, check_choice, check_range
from marn_tf.model_config import ModelConfig

UPDATES = ("joint", "alternating")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "parameter_server", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
SOURCES = ("tfrecord", "parquet")
OPTIMIZERS = ("adam", "adagrad", "sgd")
SEED_LIMIT = 2**32 - 1  # the largest seed NumPy takes (train.seed seeds Python, NumPy and TensorFlow)


@dataclasses.dataclass
class TrainConfig:
    """The training run: optimizers, budget, validation, checkpoints."""
    batch_size: int = 1024  # global batch, split across replicas
    optimizer: str = "adam"  # of the model and of the discriminators: "adam", "adagrad" or "sgd"
    learning_rate: float = 1e-3  # of the model's optimizer (everything but the discriminators)
    discriminator_learning_rate: float = 1e-3  # of the discriminators' optimizer (D0, D1 and Ds)
    update: str = "joint"  # "joint": one step on L; "alternating": discriminators, then the rest
    steps_per_epoch: int = 100  # a checkpoint and a validation pass after every epoch: often enough to catch
    # the best point, which on the embedded data (and on a public ratings set) comes within about one pass
    epochs: int = 10  # at most: early stopping may end the run sooner
    validation_steps: Optional[int] = None  # batches per validation pass; null: the whole validation split
    early_stopping_patience: int = 3  # epochs without a better validation AUC; 0 disables it
    seed: int = 1  # seeds Python, NumPy, TensorFlow and the input order
    deterministic: bool = False  # op determinism (slower); the input order is always seeded by `seed`
    shuffle_buffer: int = 100_000  # examples in the training input's shuffle buffer
    source: str = "tfrecord"  # or "parquet": files of the same features under <data>/<split>/*.parquet
    keep_checkpoints: int = 3  # periodic checkpoints kept (the best ones are kept apart)
    weight_averaging: float = 0.0  # decay of a moving average of the weights that validation, the best checkpoint,
    # evaluation and export use (training/weight_average.py); 0: off
    learning_rate_decay_passes: float = 2.5  # > 0: both learning rates decay along a cosine to 0 over this many passes
    # over the training split (the schema counts its examples); training ends with the epoch that reaches 0;
    # 0: constant. 2.5 raised or held validation AUC for every rung and settles MARN's game; 1.5 cost MARN 0.006
    # (docs/experiments.md)

    def digest_dict(self) -> dict:
        """The plain-data form for digests that name earlier runs (`marn run`'s stages, benchmarks/quality.py): keys
        added later are left out while they are off, so runs made before them stay reusable."""
        data = dataclasses.asdict(self)
        if not self.learning_rate_decay_passes:  # added 2026-11-30
            del data["learning_rate_decay_passes"]
        return data

    def __post_init__(self):
        check_choice("update", self.update, UPDATES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("source", self.source, SOURCES)
        check_range(self, ["batch_size", "steps_per_epoch", "epochs", "keep_checkpoints", "shuffle_buffer",
                           "validation_steps"], 1, integer=True)
        check_range(self, ["learning_rate", "discriminator_learning_rate"], 0, low_open=True)
        check_range(self, ["weight_averaging"], 0, 1, high_open=True,
                    meaning="the decay of the weights' moving average, 0 for off")
        check_range(self, ["early_stopping_patience"], 0, integer=True, meaning="0 disables it")
        check_range(self, ["learning_rate_decay_passes"], 0, meaning="0: a constant learning rate")
        check_range(self, ["seed"], 0, SEED_LIMIT, integer=True, meaning="what NumPy's seed takes")


@dataclasses.dataclass
class RuntimeConfig:
    """Where and how a run executes (TF Model Garden's `runtime`): the devices, the precision and the compiler.
    Apart from `train:` so that the same training recipe runs on a laptop, a GPU box or a TPU pod."""
    strategy: str = "auto"  # auto: mirrored over the visible GPUs, else "default"; the others: docs/scale_out.md
    tpu: str = ""  # TPU address for strategy "tpu" ("" = the local TPU / from the environment)
    mixed_precision: str = "float32"  # or "mixed_float16", "mixed_bfloat16": Keras's mixed precision
    xla: bool = False  # jit_compile the train step (needs model.deduplicate_items/sequences: false)
    # strategy "parameter_server": a variable at least twice this size is split by rows over the ps tasks
    min_shard_bytes: int = 256 << 10

    def __post_init__(self):
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("mixed_precision", self.mixed_precision, PRECISIONS)
        check_range(self, ["min_shard_bytes"], 1, integer=True)


RUNTIME_KEYS = tuple(f.name for f in dataclasses.fields(RuntimeConfig))  # in `train:` until 2026-11-30


def check_compatible(model: ModelConfig, train: TrainConfig, runtime: RuntimeConfig) -> None:
    """Cross-section checks, before any work."""
    if runtime.xla and (model.deduplicate_items or model.deduplicate_sequences):
        raise ConfigError("runtime.xla needs static shapes, and deduplicating items or sequences gives a dynamic "
                          "number of them: set model.deduplicate_items=false and model.deduplicate_sequences=false "
                          "with runtime.xla=true")
    if runtime.strategy == "parameter_server" and train.deterministic:
        raise ConfigError("runtime.strategy=parameter_server updates the weights asynchronously, from every worker as "
                          "its step ends, so no run repeats exactly: set train.deterministic=false")
    if runtime.strategy == "parameter_server" and train.validation_steps is None:
        raise ConfigError("runtime.strategy=parameter_server validates on train.validation_steps batches spread over "
                          "the workers, not on a whole split: set train.validation_steps (e.g. 50), and evaluate the "
                          "best checkpoint with `marn evaluate` for the figure on the whole split")
    if runtime.strategy == "parameter_server" and runtime.mixed_precision == "mixed_float16":
        raise ConfigError("runtime.strategy=parameter_server does not support mixed_float16: the loss scale would be "
                          "one variable that asynchronous workers raise and lower in turn; use "
                          "runtime.mixed_precision=mixed_bfloat16 or float32")
    if train.update == "alternating" and runtime.mixed_precision == "mixed_float16":
        raise ConfigError("train.update=alternating does not support mixed_float16 loss scaling: use "
                          "runtime.mixed_precision=mixed_bfloat16")
