"""Shared fixtures. Importing marn_tf first selects Keras 2 for every test process."""
import os

import hypothesis  # noqa: F401  (imported up front: its pytest plugin otherwise imports it in the terminal summary,
# after TensorFlow's threads ran, where CPython 3.11.7 has been seen to fail compiling it with
# "AST constructor recursion depth mismatch")
import marn_tf  # noqa: F401  (must precede any TensorFlow import)
import pytest
import tensorflow as tf

# Two logical CPU devices, so MirroredStrategy runs 2 replicas in tests (before TF initialises its runtime).
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)

from marn_tf.config import Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base_config(tmp_path, **sections) -> Config:
    """A config over files under tmp_path (events.jsonl, items.jsonl, users.jsonl by default)."""
    data = {
        "inputs": {"events": {"path": str(tmp_path / "events.jsonl")},
                   "items": {"path": str(tmp_path / "items.jsonl")}},
        "items": {"image_dim": 3, "statistics": ["sales_count"], "max_title_tokens": 4},
        "events": {"context": ["query"]},
        "sequence": {"max_length": 3},
        "vocabulary": {"min_count": 1},
        "split": {"train_end": "2026-01-03", "valid_end": "2026-01-04"},
        "pipeline": {"num_shards": 1},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return Config.from_dict(data)


@pytest.fixture
def make_config(tmp_path):
    return lambda **sections: base_config(tmp_path, **sections)


def prepare(base, users: int, items: int, days: int, overrides=()):
    """Synthetic data through the real Beam job: (config, pipeline output directory, schema)."""
    from marn_tf.schema import Schema
    from marn_tf.pipelines import preprocess
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate

    generate(GeneratorOptions(output=str(base / "raw"), users=users, items=items, days=days, image_dim=8,
                              bad_record_rate=0.0), progress=False)
    config = Config.load(str(base / "raw" / "config.yaml"), list(overrides))
    preprocess.run(config, str(base / "out"))
    return config, str(base / "out"), Schema.load(str(base / "out"))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """A small pipeline output shared by the model and training tests (seconds to build)."""
    return prepare(tmp_path_factory.mktemp("prepared"), users=40, items=150, days=8,
                   overrides=["sequence.max_length=8", "model.units=8", "model.common_units=8", "model.gru_units=8",
                              "model.hidden_units=[16]", "model.discriminator_hidden=[8]", "train.batch_size=32"])
