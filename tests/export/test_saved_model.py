"""`marn export` and `marn check-export`: the version layout, the contract checks, and bad requests."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.export.check import check_export
from marn_tf.export.request_features import serialize_request
from marn_tf.export.saved_model import export_model
from marn_tf.export.warmup import read_warmup
from marn_tf import cli
from marn_tf.config_loader import ConfigError

pytestmark = pytest.mark.integration


def test_version_directory_layout(exported, prepared):
    result, base = exported
    _, data, schema = prepared
    version = base / "marn" / "1"
    assert result.path == str(version) and result.version == 1
    assets = {p.name for p in (version / "assets").iterdir()}
    assert "schema.json" in assets and "item_id.txt" in assets and "user_id.txt" in assets
    assert json.loads((version / "assets" / "schema.json").read_text()) == schema.to_dict()
    warmup = read_warmup(str(version / "assets.extra" / "tf_serving_warmup_requests"))
    sizes = [(r.predict_log.request.model_spec.signature_name,
              tf.make_ndarray(next(iter(r.predict_log.request.inputs.values()))).shape[0]) for r in warmup]
    assert sizes == [("serving_default", 1), ("serving_default", 5), ("predict", 1), ("predict_raw", 1),
                     ("item_representations", 5)]
    example = tf.train.Example.FromString(tf.make_ndarray(warmup[0].predict_log.request.inputs["examples"])[0])
    assert "label" not in example.features.feature and "item_id" in example.features.feature
    config = (base / "models.config").read_text()
    assert 'name: "marn"' in config and 'base_path: "/models/marn"' in config
    assert not [p for p in (base / "marn").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_versions_increase_and_an_existing_version_is_refused(exported, prepared, trained_run):
    result, base = exported
    _, data, _ = prepared
    with pytest.raises(ConfigError, match="already exists"):
        export_model(str(trained_run), data, str(base), version=1, warmup_batch_sizes=())
    second = export_model(str(trained_run), data, str(base), warmup_batch_sizes=())
    assert second.version == 2 and os.path.isdir(second.path)


def test_check_export_passes_in_a_fresh_process(exported):
    run = subprocess.run([sys.executable, "-m", "marn_tf.cli", "check-export", "--model", exported[0].path,
                          "--examples", "64"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("[PASS]") == 7 and "[FAIL]" not in run.stdout
    assert "signature_def['serving_default']" in run.stdout  # saved_model_cli's listing


def test_check_export_fails_against_another_checkpoint(exported, trained_run, tmp_path):
    result, _ = exported
    exported_epoch = int(result.checkpoint.rsplit("-", 1)[1])  # best/ckpt-N: the weights of epoch N
    other = next(str(trained_run / "checkpoints" / f"ckpt-{n}") for n in (1, 2) if n != exported_epoch)
    copy = tmp_path / "1"
    shutil.copytree(result.path, copy)
    info_path = copy / "assets.extra" / "export_info.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "checkpoint": os.path.abspath(other)}))
    report = check_export(str(copy), examples=32)
    failed = [c.name for c in report.checks if not c.passed]
    assert not report.passed and "serving_default matches the checkpoint" in failed


def test_check_export_finds_the_checkpoint_in_a_moved_run(prepared, trained_run, tmp_path):
    """An export records where its run was; once the run has moved (another machine, another mount), check-export
    given the new place finds the same checkpoint there, and without it cannot find the run."""
    _, data, _ = prepared
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # the shared run stays where the other tests read it
    result = export_model(str(run), data, str(tmp_path / "base"), warmup_batch_sizes=(1,))
    moved = tmp_path / "moved_run"
    shutil.move(str(run), str(moved))
    assert not run.exists()
    report = check_export(result.path, run_dir=str(moved), examples=16)
    assert report.passed, [c for c in report.checks if not c.passed]
    assert not check_export(result.path, examples=16).passed  # the recorded place is gone


def test_export_and_evaluate_refuse_data_with_other_vocabularies(prepared, trained_run, tmp_path):
    """--data whose vocabularies differ from the training data's maps ids to other rows of the model: export and
    evaluate refuse it, naming both digests, before writing anything; a copy of the training data is taken."""
    from marn_tf.evaluation.evaluate import evaluate
    from marn_tf.schema import Schema, SchemaError, data_digests

    _, data, _ = prepared
    other = tmp_path / "other"
    shutil.copytree(data, other)
    vocabulary = other / "vocab" / "user_id.txt"
    users = vocabulary.read_text().splitlines()
    vocabulary.write_text("\n".join([users[1], users[0]] + users[2:]) + "\n")  # two users swap their rows
    trained, given = (data_digests(d, Schema.load(d))["vocabularies"] for d in (data, str(other)))
    assert trained != given
    for command in (lambda: export_model(str(trained_run), str(other), str(tmp_path / "base"), warmup_batch_sizes=()),
                    lambda: evaluate(str(trained_run), str(other), "validation", str(tmp_path / "evaluation"))):
        with pytest.raises(SchemaError, match=rf"has other vocabularies \(digest {given}\).*digest {trained}\)"):
            command()
    assert not (tmp_path / "base").exists() and not (tmp_path / "evaluation").exists()
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    assert export_model(str(trained_run), str(copy), str(tmp_path / "base"), warmup_batch_sizes=()).version == 1


def test_check_export_names_a_wrong_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a SavedModel version directory"):
        check_export(str(tmp_path))


def _probability(loaded, examples):
    return loaded.signatures["serving_default"](examples=tf.constant(examples))["probability"].numpy()


def test_unknown_ids_score_as_out_of_vocabulary(loaded, prepared):
    _, _, schema = prepared
    request = {"item_id": "never-seen-1", "user_id": "nobody", "hist_item_id": ["never-seen-2"]}
    same = {"item_id": "never-seen-3", "user_id": "nobody-else", "hist_item_id": ["never-seen-4"]}
    got = _probability(loaded, [serialize_request(schema, r) for r in (request, same)])
    assert np.all(np.isfinite(got)) and got[0] == pytest.approx(got[1], abs=1e-6)
    items = loaded.signatures["item_representations"](item_id=tf.constant(["never-seen", "also-unknown"]))
    np.testing.assert_allclose(items["representation"][0], items["representation"][1], atol=1e-6)


def test_a_missing_optional_feature_gets_its_default(loaded, prepared):
    _, _, schema = prepared
    explicit = serialize_request(schema, {"item_id": "x"})  # every default written out
    bare = tf.train.Example()
    bare.features.feature["item_id"].bytes_list.value.append(b"x")
    got = _probability(loaded, [explicit, bare.SerializeToString()])
    assert got[0] == pytest.approx(got[1], abs=1e-7)


def _with(example, name, feature):
    changed = tf.train.Example()
    changed.CopyFrom(example)
    changed.features.feature[name].CopyFrom(feature)
    return changed.SerializeToString()


@pytest.mark.parametrize("case, message", [
    ("wrong_type", "hist_item_id"),
    ("wrong_length", "hist_event_type"),
    ("missing_candidate", "item_id"),
    ("not_an_example", "parse"),
])
def test_malformed_requests_fail_naming_the_feature(loaded, prepared, case, message):
    _, _, schema = prepared
    good = tf.train.Example.FromString(serialize_request(schema, {"item_id": "x"}))
    if case == "wrong_type":
        request = _with(good, "hist_item_id", tf.train.Feature(int64_list=tf.train.Int64List(value=[1] * 8)))
    elif case == "wrong_length":
        request = _with(good, "hist_event_type", tf.train.Feature(int64_list=tf.train.Int64List(value=[1, 2, 3])))
    elif case == "missing_candidate":
        bare = tf.train.Example()
        bare.CopyFrom(good)
        del bare.features.feature["item_id"]
        request = bare.SerializeToString()
    else:
        request = b"not a protocol buffer"
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _probability(loaded, [request])


def _damage(version, case: str) -> None:
    if case == "missing_variables":
        shutil.rmtree(version / "variables")
    elif case == "missing_vocabulary_asset":
        (version / "assets" / "item_id.txt").unlink()
    elif case == "missing_schema_asset":
        (version / "assets" / "schema.json").unlink()
    elif case == "truncated_warmup":
        warmup = version / "assets.extra" / "tf_serving_warmup_requests"
        warmup.write_bytes(warmup.read_bytes()[:len(warmup.read_bytes()) // 2])
    else:
        (version / "assets.extra" / "export_info.json").write_text('{"model_name": "marn", ')


@pytest.mark.parametrize("case, failed, why", [
    ("missing_variables", "load the SavedModel", "variables"),
    ("missing_vocabulary_asset", "load the SavedModel", "item_id.txt"),
    ("missing_schema_asset", "read the schema asset", "schema.json"),
    ("truncated_warmup", "warmup requests replay", "truncated record"),
    ("broken_export_info", "read assets.extra/export_info.json", "cannot be read as JSON"),
])
def test_check_export_on_a_damaged_export_prints_fail_lines_not_a_traceback(exported, tmp_path, capsys, case, failed,
                                                                           why):
    version = tmp_path / "1"
    shutil.copytree(exported[0].path, version)
    _damage(version, case)
    # In process: an exception escaping the CLI (the traceback a user would see) fails the test by itself.
    code = cli.main(["check-export", "--model", str(version), "--quiet", "--examples", "8"])
    out = capsys.readouterr().out
    assert code == 1, out
    fail_lines = [line for line in out.splitlines() if line.startswith("[FAIL]")]
    assert any(line.startswith(f"[FAIL] {failed}: ") and why in line for line in fail_lines), out
    assert all(len(line) < 400 for line in fail_lines)


def test_a_staging_directory_left_by_a_killed_export_is_removed_by_the_next(prepared, trained_run, tmp_path):
    _, data, _ = prepared
    model_dir = tmp_path / "base" / "marn"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, signal, marn_tf\n"
        "from marn_tf.storage import ownership\n"
        f"with ownership.temporary_directory({str(model_dir)!r}, '.staging-1-', 'marn export') as d:\n"
        "    open(os.path.join(d, 'saved_model.pb'), 'w').write('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n")], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    (left,) = [p.name for p in model_dir.iterdir()]
    (model_dir / ".staging-9-not-marn").mkdir()  # no marker: nothing proves marn wrote it, so it stays
    result = export_model(str(trained_run), data, str(tmp_path / "base"), warmup_batch_sizes=())
    assert sorted(p.name for p in model_dir.iterdir()) == [".staging-9-not-marn", "1"] and left.startswith(".staging-1-")
    assert result.version == 1
