"""Fixtures shared by the tests, the data ones built once per test run from the functions in tests/testing.py.
Importing marn_tf first selects Keras 2 for every test process."""
import hypothesis  # noqa: F401  (imported up front: its pytest plugin otherwise imports it in the terminal summary,
# after TensorFlow's threads ran, where CPython 3.11.7 has been seen to fail compiling it with
# "AST constructor recursion depth mismatch")
import marn_tf  # noqa: F401  (must precede any TensorFlow import)
import pytest
import tensorflow as tf

# Two logical CPU devices, so MirroredStrategy runs 2 replicas in tests (before TF initialises its runtime).
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                           [tf.config.LogicalDeviceConfiguration()] * 2)

from tests.testing import TINY_MODEL, base_config, prepare  # noqa: E402


@pytest.fixture
def make_config(tmp_path):
    return lambda **sections: base_config(tmp_path, **sections)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """A small pipeline output shared by the model and training tests (seconds to build)."""
    return prepare(tmp_path_factory.mktemp("prepared"), users=40, items=150, days=8, overrides=TINY_MODEL)


@pytest.fixture(scope="session")
def prepared_with_content(tmp_path_factory):
    """`prepared`'s data with the items' content in the examples and image vectors PCA-reduced from 8 to 4 dims."""
    return prepare(tmp_path_factory.mktemp("prepared_with_content"), users=40, items=150, days=8,
                   overrides=TINY_MODEL + ["pipeline.item_content=examples", "items.image_pca_dim=4"])
