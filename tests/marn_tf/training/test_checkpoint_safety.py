"""Resuming a run: from its newest checkpoint whatever its state file says, never over newer checkpoints, at the
same place in the data, only with the config and the data it was trained with; it stops early where an
uninterrupted run would; the best checkpoint is never behind what the run reports; a checkpoint that lacks a
variable of the network is refused; and non-finite weights fail training even when the loss stays finite."""
import hashlib
import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marn_tf import cli
from marn_tf.config_loader import ConfigError
from marn_tf.schema import SchemaError
from marn_tf.training.trainer import train
from marn_tf.training.training_directory import RUN_CONFIG, TrainingDirectory
from tests.marn_tf.training.test_trainer import assert_same_weights, quick, weights
from tests.testing import with_model

pytestmark = pytest.mark.integration


def listing(directory) -> dict:
    """Every file under `directory`: (size, modification time, content digest)."""
    found = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, directory)] = (os.path.getsize(path), os.stat(path).st_mtime_ns,
                                                           hashlib.sha256(f.read()).hexdigest())
    return found


def steady(config, **train):
    """`quick` reproducible to the bit: op determinism, and no dropout (whose masks a resumed run draws afresh), so
    that a resumed run can be compared weight for weight with an uninterrupted one."""
    return quick(with_model(config, dropout=0.0), deterministic=True, **{"epochs": 3, "validation_steps": 3, **train})


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """A finished `steady` run of 3 epochs: checkpoints/ckpt-1, ckpt-2, ckpt-3."""
    config, data, _ = prepared
    run = tmp_path_factory.mktemp("trained") / "run"
    result = train(steady(config), data, str(run))
    assert result.status == "completed" and result.steps == 9
    return run


def as_if_killed_after(run, epoch: int) -> None:
    """Leaves in `run` what a kill after epoch `epoch`'s checkpoint, before the next one's, leaves on disk: the
    checkpoints up to it (named by the state files), the history lines up to it, no summary."""
    for directory in ("checkpoints", "best"):
        later = [p for p in (run / directory).glob("ckpt-*") if int(p.name.split(".")[0][5:]) > epoch]
        for path in later:
            path.unlink()
        kept = sorted({int(p.name.split(".")[0][5:]) for p in (run / directory).glob("ckpt-*.index")})
        if kept:
            (run / directory / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{kept[-1]}"\n' + "".join(
                f'all_model_checkpoint_paths: "ckpt-{n}"\n' for n in kept))
        else:
            (run / directory / "checkpoint").unlink()
    rows = (run / "history.jsonl").read_text().splitlines()
    (run / "history.jsonl").write_text("".join(row + "\n" for row in rows[:epoch]))
    (run / "training_summary.json").unlink()


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_a_resumed_run_trains_on_the_batches_an_uninterrupted_one_would(prepared, trained, tmp_path):
    """Killed after epoch 1 and resumed, a run ends with the weights and validation figures of the uninterrupted
    run: it goes on in the seeded data stream where it stopped, instead of training its first batches again."""
    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    as_if_killed_after(run, 1)

    resumed = train(steady(config), data, str(run))

    assert (resumed.resumed_from_step, resumed.steps, resumed.status) == (3, 9, "completed")
    assert_same_weights(run / "checkpoints" / "ckpt-3", trained / "checkpoints" / "ckpt-3")
    assert [row["val_auc"] for row in history(run)] == [row["val_auc"] for row in history(trained)]


STATE = "checkpoints/checkpoint"


def train_mirrored(config, data: str, output) -> dict:
    """`train` under MirroredStrategy over two CPU devices, in a process of its own (a process's collective ops keep
    state that a second MirroredStrategy in it trips over); returns the summary."""
    import subprocess
    import sys

    import yaml

    from tests.testing import REPO

    config_file = output.parent / f"{output.name}.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    code = ("import sys, marn_tf, tensorflow as tf\n"
            "tf.config.set_logical_device_configuration(tf.config.list_physical_devices('CPU')[0],\n"
            "                                           [tf.config.LogicalDeviceConfiguration()] * 2)\n"
            "from marn_tf.config import Config\n"
            "from marn_tf.training.trainer import train\n"
            "train(Config.load(sys.argv[1]), sys.argv[2], sys.argv[3], progress=False,\n"
            "      strategy=tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']))\n")
    run = subprocess.run([sys.executable, "-c", code, str(config_file), data, str(output)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((output / "training_summary.json").read_text())


def test_a_mirrored_run_resumes_to_the_uninterrupted_weights(prepared, tmp_path):
    """Under MirroredStrategy (two replicas) a run killed after epoch 1 and resumed ends with the uninterrupted run's
    weights: each replica goes on with its share of the same batches."""
    config, data, _ = prepared
    whole, run = tmp_path / "whole", tmp_path / "run"
    train_mirrored(steady(config, epochs=2), data, whole)
    shutil.copytree(whole, run)
    as_if_killed_after(run, 1)
    resumed = train_mirrored(steady(config, epochs=2), data, run)
    assert (resumed["resumed_from_step"], resumed["steps"]) == (3, 6)
    assert_same_weights(run / "checkpoints" / "ckpt-2", whole / "checkpoints" / "ckpt-2")


@pytest.mark.parametrize("damage", [
    lambda text: b"\xff\xfe\x00\x81 not a checkpoint state \x00",  # garbage bytes
    lambda text: text[:20],  # truncated mid-line
    lambda text: b"",  # empty
    None,  # deleted
    lambda text: b'model_checkpoint_path: "ckpt-1"\nall_model_checkpoint_paths: "ckpt-1"\n',  # behind the files
    lambda text: b'model_checkpoint_path: "ckpt-9"\n',  # names a checkpoint that is not there
], ids=["garbage", "truncated", "empty", "deleted", "behind", "missing"])
def test_a_damaged_state_file_resumes_from_the_newest_checkpoint_and_overwrites_nothing(prepared, trained, tmp_path,
                                                                                      damage):
    """Killed after epoch 2 with its state file damaged, a run resumes from ckpt-2 (TensorFlow alone started again
    at step 0 over ckpt-1 and ckpt-2), leaves them as they were and trains epoch 3 to the uninterrupted weights."""
    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    as_if_killed_after(run, 2)
    state = run / STATE
    if damage is None:
        state.unlink()
    else:
        state.write_bytes(damage(state.read_bytes()))
    before = listing(run / "checkpoints")
    before.pop("checkpoint", None)

    result = train(steady(config), data, str(run))

    assert result.resumed_from_step == 6 and result.steps == 9 and result.status == "completed"
    after = listing(run / "checkpoints")
    after.pop("checkpoint")
    assert {name: after[name] for name in before} == before
    assert_same_weights(run / "checkpoints" / "ckpt-3", trained / "checkpoints" / "ckpt-3")
    import tensorflow as tf
    assert tf.train.get_checkpoint_state(str(run / "checkpoints")).model_checkpoint_path == str(
        run / "checkpoints" / "ckpt-3")


def test_an_unreadable_newest_checkpoint_stops_the_run_and_is_kept(prepared, trained, tmp_path):
    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / STATE).write_bytes(b"garbage")
    data_file = run / "checkpoints" / "ckpt-3.data-00000-of-00001"
    content = bytearray(data_file.read_bytes())
    content[len(content) // 2] ^= 0xFF  # one flipped byte: the checksum no longer matches
    data_file.write_bytes(bytes(content))
    before = listing(run)
    with pytest.raises(SchemaError, match=r"checkpoint .*/checkpoints/ckpt-3 cannot be read .*Move its files "
                                          r"\(ckpt-3\.\*\) out of"):
        train(steady(config), data, str(run))
    assert listing(run) == before


def poisoned_copy(data: str, target) -> str:
    """The pipeline output with an infinite image component in every third item (what a raw value of 1e39,
    finite in Python, became in float32)."""
    shutil.copytree(data, target)
    (path,) = (target / "item_table").glob("*.parquet")
    table = pq.read_table(path)
    field = table.schema.field("image")
    images = table.column("image").to_pylist()
    images = [[np.inf, *image[1:]] if image and i % 3 == 0 else image for i, image in enumerate(images)]
    pq.write_table(table.set_column(table.schema.get_field_index("image"), field, pa.array(images, field.type)),
                   path)
    return str(target)


def test_non_finite_values_in_the_data_stop_training_naming_the_table(prepared, tmp_path, capsys):
    config, data, _ = prepared
    poisoned = poisoned_copy(data, tmp_path / "data")
    import yaml
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    run = tmp_path / "run"
    code = cli.main(["train", "--config", str(tmp_path / "config.yaml"), "--data", poisoned, "--output", str(run),
                     "--set", "train.steps_per_epoch=3", "--set", "train.epochs=2", "--set", "train.validation_steps=1",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    # whether the infinite component reaches the loss or only the weights, the table that holds it is named
    assert "NaN or infinite values are in" in err and "table_image" in err
    assert "Look for non-finite values in the data" in err  # the CLI's advice fits the case, not "lower the rate"
    summary = json.loads((run / "training_summary.json").read_text())
    assert summary["status"] == "nan" and summary["epochs"] == 1
    assert any("table_image" in name for name in summary["non_finite_variables"])
    assert not list((run / "checkpoints").glob("ckpt-*"))  # nothing poisoned was saved
    assert cli.main(["evaluate", "--run", str(run), "--data", poisoned, "--output", str(tmp_path / "e")]) == 2
    assert "has no checkpoint yet" in capsys.readouterr().err


def test_a_checkpoint_with_non_finite_values_is_not_resumed_or_evaluated(prepared, trained, tmp_path, capsys):
    """A checkpoint written before the weights were checked (or damaged later) is refused, naming the variables."""
    import tensorflow as tf

    from marn_tf.training.training_run import restore_run

    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    _, _, network, _ = restore_run(str(run), data, str(run / "checkpoints" / "ckpt-3"))
    kernel = network.core.get_layer("mlp_0").kernel
    kernel.assign(tf.fill(kernel.shape, np.nan))
    for directory in ("checkpoints", "best"):  # as a marn that did not check weights saved them
        tf.train.Checkpoint(core=network.core).write(str(run / directory / "ckpt-4"))
        (run / directory / "checkpoint").write_text('model_checkpoint_path: "ckpt-4"\n')
    before = listing(run)
    with pytest.raises(SchemaError, match=r"checkpoints/ckpt-4 holds NaN or infinite values in mlp_0/kernel:0: move its files"):
        train(steady(config), data, str(run))
    assert listing(run) == before
    assert cli.main(["evaluate", "--run", str(run), "--data", data, "--output", str(tmp_path / "e")]) == 2
    assert "best/ckpt-4 holds NaN or infinite values" in capsys.readouterr().err


def barely_learning(config):
    """Weights that move by about 1e-7 a step (Adam's steps are about its learning rate): too little to change the
    validation AUC, so early stopping's decisions are known in advance (the best at epoch 1, then `patience` more
    epochs), yet enough that a resumed run that restored other weights, or trained on other batches, ends with
    other weights."""
    return steady(config, learning_rate=1e-7, discriminator_learning_rate=1e-7, epochs=6, early_stopping_patience=2)


def test_early_stopping_resumes_where_it_was(prepared, tmp_path):
    """Killed after epoch 2, a run stops after epoch 3 as the uninterrupted one did (a fresh EarlyStopping trained
    to epoch 5), with the same best value and the same final weights."""
    config, data, _ = prepared
    whole = tmp_path / "whole"
    uninterrupted = train(barely_learning(config), data, str(whole))
    assert uninterrupted.status == "early_stopped" and uninterrupted.epochs == 3
    assert len({row["val_auc"] for row in history(whole)}) == 1  # what makes the decisions known in advance
    initial = weights(whole / "checkpoints" / "ckpt-1")
    assert any(np.any(initial[name] != value) for name, value in weights(whole / "checkpoints" / "ckpt-3").items())

    killed = tmp_path / "killed"
    shutil.copytree(whole, killed)
    as_if_killed_after(killed, 2)
    resumed = train(barely_learning(config), data, str(killed))
    assert resumed.resumed_from_step == 6
    assert (resumed.status, resumed.epochs, resumed.best_val_auc) == ("early_stopped", 3, uninterrupted.best_val_auc)
    assert [row["epoch"] for row in history(killed)] == [1, 2, 3]
    assert_same_weights(killed / "checkpoints" / "ckpt-3", whole / "checkpoints" / "ckpt-3")

    again = train(barely_learning(config), data, str(whole))  # the stopped run, run again: nothing more to do
    assert (again.status, again.epochs, again.steps) == ("early_stopped", 3, 9)
    assert len(history(whole)) == 3


def test_a_checkpoint_with_a_non_finite_optimizer_slot_is_not_resumed(prepared, trained, tmp_path):
    """The optimizer's slots exist only after the first step of a resumed run: they are checked in the file."""
    import tensorflow as tf

    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    reader = tf.train.load_checkpoint(str(run / "checkpoints" / "ckpt-3"))
    names = sorted(reader.get_variable_to_dtype_map())
    slot = next(n for n in names if "OPTIMIZER_SLOT" in n)  # an Adam moment of some weight
    tensors = [np.full_like(reader.get_tensor(n), np.inf) if n == slot else reader.get_tensor(n) for n in names]
    tf.raw_ops.SaveV2(prefix=str(run / "checkpoints" / "ckpt-4"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)
    (run / STATE).write_text('model_checkpoint_path: "ckpt-4"\n')
    before = listing(run)
    with pytest.raises(SchemaError, match=r"checkpoints/ckpt-4 holds NaN or infinite values in .*OPTIMIZER_SLOT"):
        train(steady(config), data, str(run))
    assert listing(run) == before


class Killed(Exception):
    """Stands for a kill at the point where it is raised."""


def test_a_kill_between_the_best_and_the_periodic_checkpoint_leaves_evaluation_on_the_reported_best(
        prepared, trained, tmp_path, monkeypatch):
    """A kill between the two saves of an epoch that improved leaves evaluate/export (the run's newest best
    checkpoint) on the best epoch of the history, and the resumed run reports the checkpoint they load, with its
    value and the uninterrupted run's weights."""
    import tensorflow as tf

    config, data, _ = prepared
    rows = history(trained)  # the same run: it saves a best checkpoint at the same epochs
    epoch = max(row["epoch"] for row in rows if row["val_auc"] > max([r["val_auc"] for r in rows[:row["epoch"] - 1]],
                                                                       default=-1.0))
    save = tf.train.CheckpointManager.save
    saves = []

    def killed_before_the_second_save(manager, *args, **kwargs):
        if kwargs.get("checkpoint_number") == epoch:
            saves.append(manager.directory)
            if len(saves) == 2:
                raise Killed
        return save(manager, *args, **kwargs)

    run = tmp_path / "run"
    monkeypatch.setattr(tf.train.CheckpointManager, "save", killed_before_the_second_save)
    with pytest.raises(Killed):
        train(steady(config), data, str(run))
    monkeypatch.undo()
    loaded = TrainingDirectory(str(run)).checkpoint_to_load()
    best_epoch = max(history(run), key=lambda row: row["val_auc"])["epoch"]
    assert loaded == str(run / "best" / f"ckpt-{best_epoch}")

    resumed = train(steady(config), data, str(run))
    summary = json.loads((run / "training_summary.json").read_text())
    loaded = TrainingDirectory(str(run)).checkpoint_to_load()
    assert summary["best_checkpoint"] == loaded and resumed.resumed_from_step == (epoch - 1) * 3
    loaded_epoch = int(loaded.rsplit("-", 1)[1])
    assert summary["best_val_auc"] == pytest.approx(history(run)[loaded_epoch - 1]["val_auc"], abs=1e-9)
    assert summary["best_val_auc"] == pytest.approx(json.loads((trained / "training_summary.json").read_text())
                                                    ["best_val_auc"], abs=1e-9)
    assert_same_weights(loaded, trained / "best" / f"ckpt-{loaded_epoch}")


@pytest.mark.parametrize("damage", ["deleted", "not yaml", "not a mapping"])
def test_a_run_whose_config_file_is_lost_or_damaged_is_not_resumed(prepared, trained, tmp_path, damage):
    """run_config.yaml beside checkpoints was silently written anew with whatever config came: now the run stops,
    naming the file and what to do, and nothing in the run changes."""
    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    path = run / "run_config.yaml"
    if damage == "deleted":
        path.unlink()
    else:
        path.write_text("model: [unclosed\n" if damage == "not yaml" else "- a list\n")
    before = listing(run)
    with pytest.raises(ConfigError, match=rf"{path} .*: put back the (run_config.yaml|file) this run"):
        train(steady(config), data, str(run))
    assert listing(run) == before


def test_a_run_resumes_only_on_data_of_its_schema_and_vocabularies(prepared, trained, tmp_path):
    """A pipeline output with another schema is refused, naming both digests; the same data in another directory
    resumes."""
    from marn_tf.schema import Schema, data_digests

    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    other = tmp_path / "other"
    shutil.copytree(data, other)
    fields = json.loads((other / "schema.json").read_text())
    fields["split_examples"]["train"] += 1  # another `marn preprocess` output: other examples
    (other / "schema.json").write_text(json.dumps(fields))
    before = listing(run)
    with pytest.raises(ConfigError) as refused:
        train(steady(config), str(other), str(run))
    recorded, given = (data_digests(d, Schema.load(d))["schema"] for d in (data, str(other)))
    assert recorded != given and recorded in str(refused.value) and given in str(refused.value)
    assert listing(run) == before

    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    assert train(steady(config), str(moved), str(run)).steps == 9


def test_a_checkpoint_without_a_variable_of_the_network_is_refused(prepared, trained, tmp_path):
    """A layer renamed since training (here: `to_common` in the checkpoint named `shared_input`) kept its fresh
    weights in evaluation, export and resumed training: now the checkpoint is refused, naming the variables."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    from marn_tf.training.training_run import restore_run

    config, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    reader = tf.train.load_checkpoint(str(trained / "checkpoints" / "ckpt-3"))
    names = sorted(reader.get_variable_to_dtype_map())
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    renamed = 0
    for node in graph.nodes:
        for child in node.children:
            if child.local_name == "to_common":
                child.local_name, renamed = "shared_input", renamed + 1
    assert renamed == 1
    tensors = [graph.SerializeToString() if n == "_CHECKPOINTABLE_OBJECT_GRAPH" else reader.get_tensor(n) for n in names]
    for directory in ("checkpoints", "best"):
        tf.raw_ops.SaveV2(prefix=str(run / directory / "ckpt-4"), tensor_names=names,
                          shape_and_slices=[""] * len(names), tensors=tensors)
    (run / STATE).write_text('model_checkpoint_path: "ckpt-4"\n')
    missing = r"ckpt-4 has no value for .*common_input_0/kernel:0.*: the network built from the run's config is not"
    with pytest.raises(SchemaError, match=missing):
        restore_run(str(run), data)
    before = listing(run)
    with pytest.raises(SchemaError, match=missing):
        train(steady(config), data, str(run))
    assert listing(run) == before


def test_a_checkpoint_whose_variable_has_another_shape_is_refused(prepared, trained, tmp_path):
    """A network whose layer width changed since training cannot take the checkpoint: evaluation and export stop
    with an error naming the variable and both shapes, and the fix, instead of TensorFlow's restore error."""
    import yaml

    from marn_tf.training.training_run import restore_run

    _, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    saved = yaml.safe_load((run / RUN_CONFIG).read_text())
    saved["model"]["common_units"] += 8
    (run / RUN_CONFIG).write_text(yaml.safe_dump(saved))
    with pytest.raises(SchemaError, match=r"does not fit the network built from the run's config \(.*shape.*\): .*"
                                          r"train it again"):
        restore_run(str(run), data)
