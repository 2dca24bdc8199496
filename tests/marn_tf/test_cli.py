"""The `marn` command line: help that explains, errors that say what to fix, a working preprocess."""
import argparse
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
    assert all(command in out for command in ("run", "demo", "train", "evaluate", "export", "check-export", "score",
                                              "presets"))


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


VALID = "inputs: {events: {path: e}, items: {path: i}}\nsplit: {train_end: 2026-01-02, valid_end: 2026-01-03}\n"


@pytest.mark.parametrize("text, message", [
    # A second section used to replace the first silently.
    (VALID + "train: {epochs: 3}\nsequence: {max_length: 3}\ntrain: {batch_size: 8}\n",
     "config key 'train' is given twice (lines 3 and 5)"),
    (VALID + "sequence: {max_length: 3, max_length: 5}\n", "config key 'sequence.max_length' is given twice (lines 3 and 3)"),
    (VALID + "events:\n  context: [query]\n  clicked: c\n  clicked: d\n", "config key 'events.clicked' is given twice"),
    # NaN passes every range check (comparisons with it are false).
    (VALID + "train: {learning_rate: .nan}\n", "config key 'train.learning_rate' must be a finite number, got nan"),
    (VALID + "pipeline: {max_dead_letter_rate: -.inf}\n",
     "config key 'pipeline.max_dead_letter_rate' must be a finite number, got -inf"),
    # A zero width would reach a TensorFlow op; YAML's date constructor raises a bare ValueError.
    (VALID + "model: {hidden_units: [200, 0]}\n", "config key 'model.hidden_units[1]' is 0: each must be a positive"),
    (VALID.replace("2026-01-02", "2026-02-30"), "config key 'split.train_end' is 2026-02-30, which is no date"),
])
@pytest.mark.parametrize("command", ["preprocess", "train", "run"])
def test_config_mistakes_exit_2_before_any_work(tmp_path, capsys, text, message, command):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    extra = ["--data", str(tmp_path / "d")] if command == "train" else []
    assert cli.main([command, "--config", str(config), "--output", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert any(line.startswith("error: ") and message in line for line in err.splitlines()), err
    assert not (tmp_path / "o").exists()


def test_overrides_are_checked_like_the_file(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(VALID)
    for override, message in [("train.learning_rate=.inf", "'train.learning_rate' must be a finite number, got inf"),
                              ("users={features: [a], features: [b]}", "config key 'features' is given twice"),
                              ("train.epochs=[1", "the value is not valid YAML"),
                              ("split.train_end=2026-02-30", "'split.train_end' is 2026-02-30, which is no date"),
                              ("model.text_kernel_sizes=[3, 0]", "config key 'model.text_kernel_sizes[1]' is 0")]:
        assert cli.main(["preprocess", "--config", str(config), "--output", str(tmp_path / "o"), "--set", override]) == 2
        assert message in capsys.readouterr().err
    # Merge keys may restate a merged key: that is YAML's way to override it, not a duplicate.
    from marn_tf.config_loader import safe_load_unique
    assert safe_load_unique("a: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}\n", "t") == {"a": {"x": 1, "y": 2},
                                                                            "c": {"x": 3, "y": 2}}


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


def test_every_subcommand_has_its_own_handler():
    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(cli.COMMANDS) == set(subcommands)  # a new subcommand without a handler is not run as another one


def test_presets_lists_each_preset_with_its_description_and_overrides(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "demo: marn demo's short budgets" in out and "    --set train.steps_per_epoch=40" in out
    for variant in ("din", "concat", "man", "maan", "marn"):
        assert f"{variant}: ladder rung {variant}" in out and f"    --set model.variant={variant}" in out


@pytest.mark.parametrize("command", ["preprocess", "train", "run", "demo"])
def test_every_command_that_loads_a_config_takes_preset_and_explains_it(capsys, command):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--preset NAME" in out and "before --set" in out and "demo, din, concat, man, maan, marn" in out
    assert "`marn presets` shows what each sets" in out


@pytest.mark.parametrize("command", ["preprocess", "train", "run", "demo"])
def test_an_unknown_preset_exits_2_listing_the_registered_ones_before_any_work(tmp_path, capsys, command):
    config = tmp_path / "c.yaml"
    config.write_text(VALID)
    args = {"preprocess": ["--config", str(config)], "train": ["--config", str(config), "--data", str(tmp_path / "d")],
            "run": ["--config", str(config)], "demo": []}[command]
    assert cli.main([command, *args, "--output", str(tmp_path / "o"), "--preset", "din", "--preset", "dien"]) == 2
    assert "error: unknown preset 'dien'; registered presets: concat, demo, din, maan, man, marn" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["preprocess", "train", "run"])
def test_presets_apply_before_set(tmp_path, capsys, command):
    """The din preset, then a --set of another sequence encoder: the clash names the keys (so the preset applied,
    and first); the reverse order is not possible on the command line, --set always comes last."""
    config = tmp_path / "c.yaml"
    config.write_text(VALID)
    extra = ["--data", str(tmp_path / "d")] if command == "train" else []
    assert cli.main([command, "--config", str(config), "--output", str(tmp_path / "o"), *extra,
                     "--set", "model.sequence_encoder=augru", "--preset", "din"]) == 2
    err = capsys.readouterr().err
    assert "error: model: variant 'din' is fusion 'raw_concat'" in err and "but sequence_encoder is 'augru'" in err
    assert not (tmp_path / "o").exists()
