"""Training runs: early errors, kill-and-resume, multi-worker, and that MARN learns on the embedded data."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from marn_tf.config_loader import ConfigError
from marn_tf.schema import SchemaError
from marn_tf.training.trainer import train
from tests.testing import REPO, with_model, with_train

pytestmark = pytest.mark.integration


def quick(config, **train):
    return with_train(config, **{"steps_per_epoch": 3, "epochs": 2, "validation_steps": 1, **train})


def weights(prefix) -> dict:
    """The network's variables in checkpoint `prefix`, by checkpoint key."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_dtype_map() if name.startswith("core/")}


def assert_same_weights(a, b):
    """Checkpoints `a` and `b` hold the same network weights."""
    import numpy as np

    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=0, atol=1e-6, err_msg=name)


def test_mistakes_fail_before_training(prepared, tmp_path):
    config, data, schema = prepared
    longer = dataclasses.replace(config, sequence=dataclasses.replace(config.sequence, max_length=5))
    with pytest.raises(SchemaError, match="has sequences of 8 items, the config says sequence.max_length=5"):
        train(longer, data, str(tmp_path / "a"))
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(os.path.join(data, "schema.json"), empty)
    with pytest.raises(SchemaError, match="no TFRecords match"):
        train(config, str(empty), str(tmp_path / "b"))
    other = tmp_path / "other"
    shutil.copytree(data, other)
    vocabulary = other / "vocab" / "item_id.txt"
    items = vocabulary.read_text().splitlines()
    vocabulary.write_text("\n".join([items[1], items[0]] + items[2:]) + "\n")
    with pytest.raises(SchemaError, match="come from different runs"):
        train(config, str(other), str(tmp_path / "c"))
    older = tmp_path / "older"  # a schema from before split_examples: the decay cannot know a pass's length
    shutil.copytree(data, older)
    fields = json.loads((older / "schema.json").read_text())
    del fields["split_examples"]
    (older / "schema.json").write_text(json.dumps(fields))
    with pytest.raises(SchemaError, match="learning_rate_decay_passes needs the number of training examples"):
        train(config, str(older), str(tmp_path / "d"))  # the default decays
    train(quick(config, learning_rate_decay_passes=0), str(older), str(tmp_path / "e"))  # without it, it trains


def test_a_run_directory_resumes_only_its_own_config(prepared, tmp_path):
    config, data, _ = prepared
    first = str(tmp_path / "run")
    result = train(quick(config), data, first)
    assert result.status == "completed" and result.steps == 6
    again = train(quick(config), data, first)  # nothing left to do
    assert again.resumed_from_step == 6 and again.steps == 6
    wider = dataclasses.replace(config, model=dataclasses.replace(config.model, units=16))
    with pytest.raises(ConfigError, match=r"different config \(model.units\)"):
        train(quick(wider), data, first)
    # a run saved before keys were added resumes: it was trained as those keys' earlier values say
    earlier = dataclasses.replace(config, model=dataclasses.replace(config.model, raw_path=False, raw_interest=False))
    older = tmp_path / "older"
    train(quick(earlier), data, str(older))
    saved = older / "run_config.yaml"
    written = yaml.safe_load(saved.read_text())
    del written["model"]["raw_interest"], written["model"]["raw_path"]
    saved.write_text(yaml.safe_dump(written))
    assert train(quick(earlier), data, str(older)).resumed_from_step == 6
    with pytest.raises(ConfigError, match=r"different config \(model.raw_interest, model.raw_path\)"):
        train(quick(config), data, str(older))  # today's defaults are not what it was trained with
    # a key the model does not read changes nothing: din saved when raw_path's default was false resumes
    din = quick(dataclasses.replace(config, model=config.model.for_variant("din")))
    train(din, data, str(tmp_path / "din"))
    saved = tmp_path / "din" / "run_config.yaml"
    written = yaml.safe_load(saved.read_text())
    written["model"]["raw_path"] = False
    saved.write_text(yaml.safe_dump(written))
    assert train(din, data, str(tmp_path / "din")).resumed_from_step == 6


def marn(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "marn_tf.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_killed_run_resumes_to_completion(prepared, tmp_path):
    """`marn train` killed (SIGKILL) after its first checkpoint and run again ends with the weights of an
    uninterrupted run: it resumed the restored state at the same place in the data."""
    from marn_tf.config import Config

    config, data, _ = prepared
    run = tmp_path / "run"
    # reproducible to the bit: op determinism, and no dropout, whose masks a resumed run draws afresh
    settings = ["train.steps_per_epoch=4", "train.epochs=3", "train.validation_steps=1", "train.deterministic=true",
                "model.dropout=0.0"]
    args = ["train", "--config", str(tmp_path / "config.yaml"), "--data", data, "--output", str(run),
            *[a for setting in settings for a in ("--set", setting)], "--no-progress"]
    import yaml
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    first = marn(*args)
    deadline = time.time() + 240
    while not (run / "checkpoints" / "checkpoint").exists():
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = marn(*args)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    assert "resuming from" in output
    summary = json.loads((run / "training_summary.json").read_text())
    assert summary["steps"] == 12 and summary["status"] == "completed"
    assert summary["resumed_from_step"] in (4, 8)
    epochs = [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]

    whole = tmp_path / "whole"
    train(Config.load(str(tmp_path / "config.yaml"), settings), data, str(whole))
    assert_same_weights(run / "checkpoints" / "ckpt-3", whole / "checkpoints" / "ckpt-3")


def test_a_run_ends_when_its_learning_rates_reach_zero(prepared, tmp_path):
    """With the decay ending in epoch 2 of 4, the run trains 2 epochs and reports itself completed."""
    config, data, schema = prepared
    passes = 4.5 * 32 / schema.split_examples["train"]  # 5 steps of 32
    result = train(quick(config, batch_size=32, epochs=4, learning_rate_decay_passes=passes), data,
                   str(tmp_path / "run"))
    assert (result.status, result.epochs, result.steps) == ("completed", 2, 6)
    assert len((tmp_path / "run" / "history.jsonl").read_text().splitlines()) == 2


def test_two_local_workers_train_together_and_resume_from_the_chiefs_checkpoint(prepared, tmp_path):
    """Two MultiWorkerMirrored workers make one cluster. When the chief lost its last checkpoint (killed before
    saving it) while the other worker kept its own copy, both resume from the chief's checkpoint and end with the
    same weights (each had restored its own: they diverged, or waited on each other for ever)."""
    config, data, _ = prepared
    import yaml
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    run = tmp_path / "run"
    command = [sys.executable, os.path.join(REPO, "scripts", "multi_worker_local.py"), "--workers", "2", "--timeout",
               "300", "--", "--config", str(tmp_path / "config.yaml"), "--data", data, "--output", str(run),
               "--set", "train.steps_per_epoch=3", "--set", "train.epochs=2", "--set", "train.validation_steps=1"]

    def cluster_run():
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        logs = [(run / f"worker-{i}.log").read_text() for i in range(2)]
        assert result.returncode == 0, result.stdout + "\n".join(log[-3000:] for log in logs)
        return logs, json.loads((run / "training_summary.json").read_text())

    logs, summary = cluster_run()
    assert all("with 2 replica(s)" in log for log in logs)  # one cluster, not two single-worker runs
    assert summary["steps"] == 6 and summary["status"] == "completed"
    scratch = run / "workers" / "worker-1" / "checkpoints"
    assert_same_weights(run / "checkpoints" / "ckpt-2", scratch / "ckpt-2")

    for path in (run / "checkpoints").glob("ckpt-2.*"):
        path.unlink()
    assert (scratch / "ckpt-2.index").exists()
    logs, summary = cluster_run()
    assert all("resuming from" in log and "/run/checkpoints/ckpt-1" in log for log in logs)
    assert summary["resumed_from_step"] == 3 and summary["steps"] == 6
    assert_same_weights(run / "checkpoints" / "ckpt-2", scratch / "ckpt-2")


STEP_CHECK = """
import pytest, tensorflow as tf
from marn_tf.schema import SchemaError
from marn_tf.training.trainer import check_same_step
tf.config.set_logical_device_configuration(tf.config.list_physical_devices("CPU")[0],
                                          [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    step = tf.Variable(6, dtype=tf.int64)
check_same_step(strategy, step)
step.values[1].assign(3)  # as a worker that restored an older checkpoint
with pytest.raises(SchemaError, match=r"the replicas resumed at different steps \\(6, 3\\): every worker restores"):
    check_same_step(strategy, step)
print("step check ok")
"""


def test_replicas_that_resumed_at_different_steps_stop_with_the_same_error():
    """The step check of a multi-worker resume: replicas that restored the same step go on; replicas that restored
    different ones raise, naming the steps, instead of training apart. In a process of its own: collectives of
    another strategy built earlier in one process share instance keys with this one's."""
    done = subprocess.run([sys.executable, "-c", STEP_CHECK], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "step check ok" in done.stdout, done.stderr[-3000:]


def test_trains_from_parquet(prepared, tmp_path):
    from marn_tf.data.input import make_dataset
    from marn_tf.data.parquet_input import write_parquet_split

    config, data, schema = prepared
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for split in ("train", "validation"):
        shutil.rmtree(copy / split)  # only Parquet is left to read
        write_parquet_split(str(copy), split, make_dataset(data, schema, split, 64, shuffle=False,
                                                           drop_remainder=False), schema)
    result = train(quick(config, source="parquet"), str(copy), str(tmp_path / "run"))
    assert result.status == "completed" and result.steps == 6


@pytest.fixture
def reset_precision():
    import tensorflow as tf

    yield
    tf.keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_losses_and_outputs_float32(prepared, tmp_path, precision, reset_precision):
    import tensorflow as tf

    from marn_tf.training.training_run import load_network

    config, data, schema = prepared
    result = train(dataclasses.replace(quick(config, epochs=1), runtime=dataclasses.replace(
        config.runtime, mixed_precision=precision)), data, str(tmp_path))
    assert result.status == "completed"
    network = load_network(config, schema, data)  # built under the policy the run left set
    assert network.core.get_layer("mlp_0").compute_dtype == precision.split("_")[1]
    features, _ = next(iter(make_dataset_for(prepared)))
    out = network.core({k: features[k] for k in network.core.input_names})
    assert out["logit"].dtype == tf.float32 and out["d1_loss"].dtype == tf.float32


def make_dataset_for(prepared):
    from marn_tf.data.input import make_dataset
    from marn_tf.training.training_run import indexed, load_network

    config, data, schema = prepared
    return indexed(make_dataset(data, schema, "train", 16), load_network(config, schema, data)).take(1)


def validation_log_loss(config, data, run) -> float:
    """Mean click log loss on the validation split of the run's best checkpoint, or (run None) untrained."""
    import tensorflow as tf

    from marn_tf.data.input import make_dataset
    from marn_tf.training.training_run import check_data, indexed, load_network, restore_run

    if run is None:
        tf.keras.utils.set_random_seed(config.train.seed)
        schema = check_data(config, data)
        network = load_network(config, schema, data)
    else:
        _, schema, network, _ = restore_run(str(run), data)
    losses = [tf.keras.backend.binary_crossentropy(tf.cast(labels, tf.float32),
                                                   network.inference(features, training=False)["probability"])
              for features, labels in indexed(make_dataset(data, schema, "validation", 256, shuffle=False,
                                                           drop_remainder=False), network)]
    return float(tf.reduce_mean(tf.concat(losses, 0)))


def test_a_local_parameter_server_cluster_trains_resumes_and_exports(prepared, tmp_path):
    """chief + 2 workers + 2 ps processes: the embeddings split over /job:ps, the loss falls, a run that lost its
    last checkpoint resumes from the one before, and the sharded checkpoint exports to the unsharded serving model."""
    config, data, _ = prepared
    config = with_model(config, rate_offset=False)  # with the offset, the untrained network starts near the floor
    import yaml
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    run = tmp_path / "run"
    command = [sys.executable, os.path.join(REPO, "scripts", "multi_worker_local.py"), "--workers", "2", "--ps", "2",
               "--timeout", "300", "--", "--config", str(tmp_path / "config.yaml"), "--data", data, "--output", str(run),
               "--set", "train.steps_per_epoch=6", "--set", "train.epochs=2", "--set", "train.validation_steps=4",
               "--set", "train.learning_rate=0.003", "--set", "runtime.min_shard_bytes=1024"]

    def cluster_run():
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        chief = (run / "chief-0.log").read_text()
        assert result.returncode == 0, result.stdout + chief[-5000:]
        return chief, json.loads((run / "training_summary.json").read_text())

    chief, summary = cluster_run()
    placement = next(line for line in chief.splitlines() if "parameter servers hold" in line)
    assert "/job:ps/replica:0/task:0" in placement and "/job:ps/replica:0/task:1" in placement
    assert "modality_embeddings/item_id/embeddings" in placement.split("split by rows")[1]
    assert summary["steps"] == 12 and summary["status"] == "completed"
    # The loss falls: the trained weights against the same network untrained, on the whole validation split.
    # (The epochs' own validation figures are inexact under parameter servers: workers share the batches.)
    trained, untrained = validation_log_loss(config, data, run), validation_log_loss(config, data, None)
    assert trained < untrained - 0.05

    for path in (run / "checkpoints").glob("ckpt-2.*"):  # as if the chief died before epoch 2's checkpoint
        path.unlink()
    chief, summary = cluster_run()
    assert "resuming from" in chief and summary["resumed_from_step"] == 6 and summary["steps"] == 12

    export = subprocess.run([sys.executable, "-m", "marn_tf.cli", "export", "--run", str(run), "--data", data,
                             "--output", str(tmp_path / "models")], cwd=REPO, capture_output=True, text=True)
    assert export.returncode == 0, export.stdout + export.stderr[-3000:]
    check = subprocess.run([sys.executable, "-m", "marn_tf.cli", "check-export", "--model",
                            str(tmp_path / "models" / "marn" / "1"), "--run", str(run), "--data", data, "--quiet"],
                           cwd=REPO, capture_output=True, text=True)
    assert check.returncode == 0 and "all checks passed" in check.stdout, check.stdout + check.stderr[-3000:]


def test_a_config_that_fails_building_the_network_claims_no_run_directory(prepared, tmp_path, capsys):
    """`marn train` with a config mistake found only when the network is built (a hashed feature the data lacks)
    exits 2 and writes no run_config.yaml or training_data.json, so the corrected command trains into the same
    --output instead of being refused as a different config."""
    from marn_tf import cli

    config, data, _ = prepared
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    output = tmp_path / "run"
    command = ["train", "--config", str(path), "--data", data, "--output", str(output), "--no-progress",
               "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.validation_steps=1"]
    assert cli.main(command + ["--set", "model.hash_buckets={no_such_feature: 100}"]) == 2
    assert "model.hash_buckets names 'no_such_feature'" in capsys.readouterr().err
    assert not (output / "run_config.yaml").exists() and not (output / "training_data.json").exists()
    assert cli.main(command) == 0
    assert "training completed after 2 steps" in capsys.readouterr().out
    assert (output / "run_config.yaml").exists() and (output / "training_data.json").exists()
