"""`marn export` keeps a `models.config` it did not write: its model's entry is merged in, every other model with
its version policy and labels (and the file's comments) stays; a file it cannot add to is refused. Through the
real command line."""
import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2 as pb

from marn_tf import cli
from tests.test_no_data_loss import listing

USERS = """# the ranking models: edited by hand
model_config_list: {
  config {
    name: 'ranker'  # the current ranker }
    base_path: "/models/ranker"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 3 versions: 4 } }
    version_labels { key: "stable" value: 3 }
    version_labels { key: "canary" value: 4 }
  }
}
"""


def _configs(path) -> list:
    return list(text_format.Parse(path.read_text(), pb.ModelServerConfig()).model_config_list.config)


def _export(run, data, base) -> list:
    return ["export", "--run", str(run), "--data", data, "--output", str(base), "--warmup-batch-sizes", ""]


def test_export_merges_its_model_into_a_models_config_it_did_not_write(prepared, trained_run, tmp_path):
    """The user's models, their version policies and labels, and the file's comments stay; the exported model is
    added once (a second export leaves the file as it is)."""
    _, data, _ = prepared
    base = tmp_path / "base"
    base.mkdir()
    config = base / "models.config"
    config.write_text(USERS)
    (theirs,) = _configs(config)
    assert cli.main(_export(trained_run, data, base)) == 0
    merged = config.read_text()
    assert merged.startswith(USERS[:USERS.rindex("}")])  # every byte before the list's closing brace
    ranker, marn = _configs(config)
    assert ranker == theirs and list(ranker.model_version_policy.specific.versions) == [3, 4]
    assert dict(ranker.version_labels) == {"stable": 3, "canary": 4}
    assert (marn.name, marn.base_path, marn.model_platform) == ("marn", "/models/marn", "tensorflow")
    assert cli.main(_export(trained_run, data, base)) == 0
    assert config.read_text() == merged and sorted(os.listdir(base / "marn")) == ["1", "2"]


def test_export_refuses_a_models_config_it_cannot_add_to(prepared, trained_run, tmp_path, capsys):
    """A models.config that is no ModelServerConfig text proto, or one that configures its models otherwise, is
    refused before anything is exported, naming the file; nothing under the base directory changes."""
    _, data, _ = prepared
    base = tmp_path / "base"
    base.mkdir()
    config = base / "models.config"
    for text, says in (("model_config_list { config { name: 'ranker' }", "is not a TF Serving model config"),
                       ("custom_model_config { type_url: 'x' }", "configures its models with custom_model_config")):
        config.write_text(text)
        before = listing(base)
        assert cli.main(_export(trained_run, data, base)) == 2
        err = capsys.readouterr().err
        assert f"error: {config} " in err and says in err and "never overwrites" in err
        assert listing(base) == before
