"""A tiny trained run (two checkpoints) exported once for the export tests, and the loaded SavedModel."""
import pytest
import tensorflow as tf

from marn_tf.training.trainer import train
from tests.testing import with_train


@pytest.fixture(scope="session")
def trained_run(prepared, tmp_path_factory):
    config, data, _ = prepared
    directory = tmp_path_factory.mktemp("export_run")
    train(with_train(config, steps_per_epoch=4, epochs=2, validation_steps=1, early_stopping_patience=0), data,
          str(directory))
    return directory


@pytest.fixture(scope="session")
def exported(prepared, trained_run, tmp_path_factory):
    """(ExportResult, base directory) of version 1 of model "marn"."""
    from marn_tf.export.saved_model import export_model

    _, data, _ = prepared
    base = tmp_path_factory.mktemp("export_base")
    return export_model(str(trained_run), data, str(base), warmup_batch_sizes=(1, 5)), base


@pytest.fixture(scope="session")
def loaded(exported):
    return tf.saved_model.load(exported[0].path)
