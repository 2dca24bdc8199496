"""Every path a run or export reads from its own metadata stays inside its own directory.

schema.json's vocabulary files, item table and split patterns are relative to the data directory; a path that
is absolute, has a scheme or `..`, or leads out through a link is refused naming it. export_info.json's
checkpoint lies inside its run."""
import json
import os
import shutil

import pytest

from marn_tf import cli
from marn_tf.schema import Schema, SchemaError

pytestmark = pytest.mark.integration


def _tampered(data: str, tmp_path, section: str, key: str, path: str) -> str:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    schema = json.loads((copy / "schema.json").read_text())
    if section == "item_table":
        schema["item_table"]["files"] = path
    else:
        schema[section][key] = path if section == "splits" else {**schema[section][key], "file": path}
    (copy / "schema.json").write_text(json.dumps(schema))
    return str(copy)


@pytest.mark.parametrize("section, key, path", [
    ("vocabularies", "item_id", "../../../../etc/passwd"),
    ("vocabularies", "user_id", "/etc/passwd"),
    ("splits", "validation", "validation/../../../*.tfrecord.gz"),
    ("item_table", None, "file:///etc/*"),
])
def test_export_refuses_a_schema_path_outside_the_data_directory(prepared, trained_run, tmp_path, capsys,
                                                                 section, key, path):
    _, data, _ = prepared
    tampered = _tampered(data, tmp_path, section, key, path)
    code = cli.main(["export", "--run", str(trained_run), "--data", tampered, "--output", str(tmp_path / "out"),
                     "--warmup-batch-sizes", ""])
    err = capsys.readouterr().err
    assert code == 2 and repr(path) in err and "is not inside the data directory" in err, err
    assert not (tmp_path / "out" / "marn").exists()


def test_a_link_out_of_the_data_directory_is_refused(prepared, tmp_path):
    _, data, _ = prepared
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    shutil.rmtree(copy / "vocab")
    os.symlink("/etc", copy / "vocab")
    with pytest.raises(SchemaError, match=r"'vocab/\w+.txt' leads out of the data directory \(to /etc/"):
        Schema.load(str(copy))


def test_check_export_refuses_a_checkpoint_outside_the_recorded_run(exported, tmp_path, capsys):
    version = tmp_path / "1"
    shutil.copytree(exported[0].path, version)
    info_path = version / "assets.extra" / "export_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "checkpoint": os.path.join(info["run"], "..", "elsewhere", "ckpt-1")}))
    code = cli.main(["check-export", "--model", str(version), "--quiet", "--examples", "4"])
    out = capsys.readouterr().out
    assert code == 1 and "[FAIL] read assets.extra/export_info.json:" in out and "is not inside the run" in out, out


def test_export_refuses_a_checkpoint_outside_its_run(prepared, trained_run, tmp_path, capsys):
    # check-export would later call such an export damaged (its checkpoint must lie inside the recorded run)
    _, data, _ = prepared
    other = tmp_path / "other_run"
    shutil.copytree(trained_run, other)
    (checkpoint,) = sorted(p.name[:-len(".index")] for p in (other / "best").glob("ckpt-*.index"))[-1:]
    code = cli.main(["export", "--run", str(trained_run), "--data", data, "--output", str(tmp_path / "out"),
                     "--checkpoint", str(other / "best" / checkpoint), "--warmup-batch-sizes", ""])
    err = capsys.readouterr().err
    assert code == 2 and "is not inside the run" in err, err
    assert not (tmp_path / "out").exists()
