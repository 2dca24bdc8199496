"""A run is tied to the data it was trained on: every command that takes a run and --data (evaluate, export,
check-export) refuses another pipeline output whose vocabularies have the same sizes but other contents, naming
both digests. Through the real command line."""
import shutil

from marn_tf import cli
from marn_tf.schema import Schema, data_digests
from tests.test_no_data_loss import listing


def test_every_command_taking_a_run_and_data_refuses_other_data(prepared, trained_run, exported, tmp_path, capsys):
    _, data, _ = prepared
    other = tmp_path / "other"
    shutil.copytree(data, other)
    vocabulary = other / "vocab" / "item_id.txt"
    items = vocabulary.read_text().splitlines()
    vocabulary.write_text("\n".join([items[1], items[0]] + items[2:]) + "\n")  # two items swap their rows
    assert len(vocabulary.read_text().splitlines()) == len(items)  # same sizes: the schema is the same file
    trained, given = (data_digests(d, Schema.load(d))["vocabularies"] for d in (data, str(other)))
    assert trained != given
    says = f"has other vocabularies (digest {given}) than the data {trained_run} was trained on"
    before = listing(trained_run), listing(exported[1])
    for command in (["evaluate", "--run", str(trained_run), "--data", str(other), "--split", "validation",
                     "--output", str(tmp_path / "evaluation")],
                    ["export", "--run", str(trained_run), "--data", str(other), "--output", str(tmp_path / "base")]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert says in err and f"digest {trained})" in err, err
    assert cli.main(["check-export", "--model", exported[0].path, "--data", str(other), "--examples", "8",
                     "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] compare with the checkpoint: " in out and says in out and f"digest {trained})" in out, out
    assert not (tmp_path / "evaluation").exists() and not (tmp_path / "base").exists()
    assert (listing(trained_run), listing(exported[1])) == before
