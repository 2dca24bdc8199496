"""The `run:` section's `export` key: true, false or best, from a YAML file or a --set override; anything else
fails when the config is read, naming the key and the values it takes."""
import pytest
import yaml

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError, apply_overrides, to_dict
from marn_tf.run_config import RunConfig
from tests.testing import base_config


@pytest.mark.parametrize("text, expected", [("true", True), ("false", False), ("best", "best"), ("yes", True)])
def test_run_export_takes_true_false_and_best(tmp_path, text, expected):
    export = base_config(tmp_path, run={"export": yaml.safe_load(text)}).run.export
    assert export == expected and type(export) is type(expected)


def test_run_export_defaults_to_the_main_model(tmp_path):
    assert base_config(tmp_path).run.export is True


def test_a_set_override_and_the_resolved_config_give_best_back(tmp_path):
    config = Config.from_dict(apply_overrides(to_dict(base_config(tmp_path)), ["run.export=best"]))
    assert config.run.export == "best"
    assert Config.from_dict(yaml.safe_load(yaml.safe_dump(to_dict(config)))).run.export == "best"


@pytest.mark.parametrize("value", ["bst", "main", "true", 1, 0, None, ["best"]])
def test_any_other_export_value_fails_naming_the_key_and_the_values_it_takes(tmp_path, value):
    with pytest.raises(ConfigError, match=r"'run\.export' must be true \(.*\), false \(.*\) or best \(.*\), got"):
        base_config(tmp_path, run={"export": value})


def test_export_best_without_a_ladder_fails_when_the_config_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"'run\.export' is best, .* run\.ladder is empty"):
        base_config(tmp_path, run={"export": "best", "ladder": []})
    assert RunConfig(ladder=[], export=True).export is True
