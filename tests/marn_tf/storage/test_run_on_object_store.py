"""A whole model lifecycle off local disk: the data, the training run, its evaluation and the export all under a
URL, on a file system that TensorFlow and Beam both reach (`ram://`, standing in for gs:// here)."""
import json
import uuid

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.evaluation.evaluate import evaluate
from marn_tf.export.check import check_export
from marn_tf.export.saved_model import export_model, versions
from marn_tf.storage import files
from marn_tf.training.trainer import train
from marn_tf.training.training_directory import TrainingDirectory
from tests.marn_tf.storage import ram_filesystem  # noqa: F401 -- registers ram:// with Beam
from tests.testing import with_train

pytestmark = pytest.mark.integration


def copy_tree(local: str, url: str) -> None:
    for directory, _, names in tf.io.gfile.walk(local):
        for name in names:
            target = url + directory[len(local):] + "/" + name
            tf.io.gfile.makedirs(target.rsplit("/", 1)[0])
            tf.io.gfile.copy(f"{directory}/{name}", target)


def test_train_evaluate_and_export_under_a_url(prepared):
    config, local_data, _ = prepared
    root = f"ram://bucket-{uuid.uuid4().hex[:8]}"
    data, run_dir, base = f"{root}/data", f"{root}/runs/marn", f"{root}/serving"
    copy_tree(str(local_data), data)
    config = with_train(config, steps_per_epoch=3, epochs=2, validation_steps=2)

    result = train(config, data, run_dir, progress=False)
    run = TrainingDirectory(run_dir)
    assert result.status == "completed" and result.best_checkpoint.startswith(run_dir + "/best/")
    assert run.checkpoint_numbers() == [2, 1] and run.read_config()["model"]["variant"] == config.model.variant
    assert [h["epoch"] for h in map(json.loads, files.read_text(run.history).splitlines())] == [1, 2]
    assert json.loads(files.read_text(run.summary))["status"] == "completed"
    assert tf.io.gfile.glob(f"{run.tensorboard}/train/events.out.tfevents.*")
    # Resuming reads the saved config and checkpoints back from the URL: nothing left to train.
    assert train(config, data, run_dir, progress=False).steps == 6

    evaluation = evaluate(run_dir, data, "test", max_batches=2)
    written = json.loads(files.read_text(f"{run.evaluation('test')}/evaluation.json"))
    assert written["auc"] == evaluation["auc"] and files.exists(f"{run.evaluation('test')}/slices.png")

    exported = export_model(run_dir, data, base, warmup_batch_sizes=(1, 4))
    assert exported.path == f"{base}/marn/1" and versions(f"{base}/marn") == [1]
    assert not [name for name in files.entries(f"{base}/marn") if name.startswith(".staging")]
    assert 'base_path: "/models/marn"' in files.read_text(f"{base}/models.config")
    report = check_export(exported.path, examples=32)
    # saved_model_cli runs in another process, which has its own (empty) ram://; on gs:// it reads the export.
    in_process = [c for c in report.checks if "saved_model_cli" not in c.name]  # signatures, warmup, 4 comparisons
    assert len(in_process) == 6 and all(c.passed for c in in_process), [str(c) for c in report.checks]
    loaded = tf.saved_model.load(exported.path)
    out = loaded.signatures["item_representations"](item_id=tf.constant(["never-seen"]))
    assert np.all(np.isfinite(out["representation"].numpy()))
