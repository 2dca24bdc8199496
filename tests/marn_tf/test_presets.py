"""Registered presets: what each sets, the order presets and overrides apply in, and unknown names."""
import pytest
import yaml

from marn_tf import presets
from marn_tf.config import Config
from marn_tf.config_loader import ConfigError
from marn_tf.model_config import VARIANTS

MINIMAL = {"inputs": {"events": {"path": "e.jsonl"}, "items": {"path": "i.csv"}},
           "split": {"train_end": "2026-01-10", "valid_end": "2026-01-12"}}


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    return str(path)


def test_the_demo_and_every_ladder_rung_are_registered():
    assert list(presets.PRESETS) == ["demo", *VARIANTS]
    for variant in VARIANTS:
        assert presets.get(variant).overrides == (f"model.variant={variant}",)
        assert variant in presets.get(variant).description


def test_the_demo_preset_holds_the_demo_budgets(config_path):
    config = Config.load(config_path, presets=["demo"])
    assert (config.train.steps_per_epoch, config.train.epochs, config.train.validation_steps,
            config.train.early_stopping_patience) == (40, 6, 10, 2)
    assert config.run.ladder == list(VARIANTS) and config.run.seeds == [1, 2]


def test_presets_apply_in_order_then_the_overrides(config_path):
    config = Config.load(config_path, ["train.epochs=3"], presets=["demo", "din"])
    assert (config.model.variant, config.model.fusion, config.train.epochs, config.train.steps_per_epoch) == (
        "din", "raw_concat", 3, 40)
    assert Config.load(config_path, presets=["din", "man"]).model.variant == "man"  # the later preset wins
    # A rung preset with a --set of another structure is the usual clash, naming the keys: the preset set variant.
    with pytest.raises(ConfigError, match=r"variant 'din' is .* but discriminators is 'single'"):
        Config.load(config_path, ["model.discriminators=single"], presets=["din"])
    # ... while --set variant after a rung preset simply replaces it.
    assert Config.load(config_path, ["model.variant=maan"], presets=["din"]).model.discriminators == "single"


def test_a_preset_wins_over_the_file_as_set_does(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "model": {"variant": "concat"}, "train": {"epochs": 9}}))
    config = Config.load(str(path), presets=["man", "demo"])
    assert (config.model.variant, config.train.epochs) == ("man", 6)


def test_an_unknown_preset_is_an_error_listing_the_registered_ones(config_path):
    with pytest.raises(ConfigError, match=r"unknown preset 'dien'; registered presets: concat, demo, din, maan, "
                                          r"man, marn \(`marn presets` describes them\)"):
        Config.load(config_path, presets=["din", "dien"])


def test_register_refuses_a_second_preset_of_a_name_and_malformed_overrides():
    with pytest.raises(ValueError, match="preset 'din' is already registered"):
        presets.register("din", "again", ["model.variant=din"])
    with pytest.raises(ValueError, match="override 'epochs=3' must look like section.key=value"):
        presets.register("short", "shorter", ["epochs=3"])
    assert "short" not in presets.PRESETS


def test_describe_lists_each_preset_with_its_description_and_overrides():
    text = presets.describe()
    for preset in presets.PRESETS.values():
        assert f"{preset.name}: {preset.description}" in text
        assert all(f"--set {override}" in text for override in preset.overrides)
