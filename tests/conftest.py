"""Shared fixtures. Importing marn_tf first selects Keras 2 for every test process."""
import os

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
