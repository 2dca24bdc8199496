"""The object store the storage tests run on: an in-memory Beam file system, emptied around each test."""
import pytest

from tests.marn_tf.storage import memory_filesystem


@pytest.fixture
def store():
    memory_filesystem.clear()
    yield f"{memory_filesystem.SCHEME}://bucket"
    memory_filesystem.clear()
