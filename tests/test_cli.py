"""The `marn` command line: help that explains, errors that say what to fix, a working preprocess."""
import json
import subprocess
import sys

import pytest

from marn_tf import cli


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "generate-data" in out and "preprocess" in out
    assert all(command in out for command in ("run", "demo", "train", "evaluate", "export", "check-export", "score"))


def test_export_mistakes_exit_2_with_what_to_fix(tmp_path, capsys):
    assert cli.main(["export", "--run", str(tmp_path), "--data", str(tmp_path), "--output", str(tmp_path / "e")]) == 2
    assert "is not a training run" in capsys.readouterr().err
    assert cli.main(["check-export", "--model", str(tmp_path)]) == 2
    assert "not a SavedModel version directory" in capsys.readouterr().err


def test_preprocess_help_explains_beam_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["preprocess", "--help"])
    out = capsys.readouterr().out
    assert "--runner=DataflowRunner" in out and "FnApiRunner" in out and "--set KEY=VALUE" in out


def test_config_mistake_exits_2_naming_the_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("inputs: {events: {path: e}, items: {path: i}}\nsplit: {train_end: 2026-01-02, "
                      "valid_end: 2026-01-03}\nsequence: {max_len: 3}\n")
    assert cli.main(["preprocess", "--config", str(config), "--output", str(tmp_path / "o")]) == 2
    assert "unknown config key 'sequence.max_len'" in capsys.readouterr().err


def test_unknown_flags_are_refused_outside_preprocess(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate-data", "--output", "x", "--runner=DataflowRunner"])
    assert "unrecognized arguments: --runner=DataflowRunner" in capsys.readouterr().err


@pytest.mark.integration
def test_generate_then_preprocess_from_the_shell(tmp_path):
    """What the README's first command runs, on a small dataset, in fresh processes."""
    raw, out = tmp_path / "raw", tmp_path / "prep"
    marn = [sys.executable, "-m", "marn_tf.cli"]
    subprocess.run(marn + ["generate-data", "--output", str(raw), "--users", "40", "--items", "300", "--days", "8",
                           "--quiet"], check=True, capture_output=True)
    done = subprocess.run(marn + ["preprocess", "--config", str(raw / "config.yaml"), "--output", str(out),
                                  "--workers", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Records in = accepted + dead-lettered" in done.stdout
    report = json.loads((out / "report.json").read_text())
    generated = json.loads((raw / "world.json").read_text())["counts"]
    assert report["sources"]["events"]["in"] == generated["events"] + generated["bad_events"]
    assert all(s["balanced"] for s in report["sources"].values())
    assert report["splits"]["train"]["examples"] > 0 and report["splits"]["test"]["examples"] > 0


def test_run_and_demo_help_explain_the_stages(capsys):
    for command in ("run", "demo"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "skip" in out and "report.html" in out and "--set KEY=VALUE" in out


def test_demo_config_mistake_exits_2_before_generating_anything(tmp_path, capsys):
    assert cli.main(["demo", "--output", str(tmp_path / "demo"), "--set", "run.seeds=[1, 1]"]) == 2
    assert "ladder and seeds must not repeat a value" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
