"""Config loading: defaults, overrides, and errors that name the key to fix."""
import pytest
import yaml

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError

MINIMAL = {"inputs": {"events": {"path": "e.jsonl"}, "items": {"path": "i.csv"}},
           "split": {"train_end": "2026-01-10", "valid_end": "2026-01-12"}}


def load(tmp_path, data, overrides=()):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return Config.load(str(path), overrides)


def test_minimal_config_gets_documented_defaults(tmp_path):
    c = load(tmp_path, MINIMAL)
    assert c.sequence.max_length == 50 and c.vocabulary.min_count == 2 and c.items.image_dim == 64
    assert c.events.behaviour_types == ["click", "cart", "purchase"] and c.inputs.users is None
    assert c.split.boundaries == (None, 1768003200, 1768176000)


def test_yaml_dates_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inputs: {events: {path: e}, items: {path: i}}\nsplit: {train_end: 2026-01-10, "
                    "valid_end: 2026-01-12T06:00:00}\n")
    c = Config.load(str(path))
    assert c.split.train_end == "2026-01-10"
    assert Config.from_dict(c.to_dict()) == c


def test_overrides_are_typed(tmp_path):
    c = load(tmp_path, MINIMAL, ["sequence.max_length=30", "events.behaviour_types=[click]",
                                 "inputs.users.path=u.parquet"])
    assert c.sequence.max_length == 30 and c.events.behaviour_types == ["click"]
    assert c.inputs.users.path == "u.parquet"
    with pytest.raises(ConfigError, match="'sequence.max_length' must be int, got 'long'"):
        load(tmp_path, MINIMAL, ["sequence.max_length=long"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load(tmp_path, MINIMAL, ["sequence.max_length"])


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    # PyYAML (YAML 1.1) reads 3e-4 as a string; a config writes rates that way.
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + "train: {learning_rate: 3e-4}\n")
    assert Config.load(str(path)).train.learning_rate == 3e-4
    c = load(tmp_path, MINIMAL, ["train.discriminator_learning_rate=1E-5", "model.lambda_adv=2e0"])
    assert c.train.discriminator_learning_rate == 1e-5 and c.model.lambda_adv == 2.0
    with pytest.raises(ConfigError, match="'train.learning_rate' must be float, got '3e-4x'"):
        load(tmp_path, MINIMAL, ["train.learning_rate=3e-4x"])


@pytest.mark.parametrize("change,message", [
    ({"sequence": {"max_lenght": 20}}, r"unknown config key 'sequence.max_lenght'; keys allowed here: max_length"),
    ({"split": {"train_end": "2026-01-10"}}, r"missing required config key 'split.valid_end'"),
    ({"split": {"train_end": "2026-01-12", "valid_end": "2026-01-10"}}, r"split: .*train_end < valid_end"),
    ({"split": {"train_end": "soon", "valid_end": "2026-01-10"}}, r"split: train_end: 'soon' is not an ISO-8601"),
    ({"items": {"image_dim": "64"}}, r"'items.image_dim' must be int"),
    ({"items": {"category_field": "color"}}, r"items: category_field 'color' must be one of id_fields"),
    ({"inputs": {"events": {"path": "e", "format": "xml"}, "items": {"path": "i"}}},
     r"inputs.events: format 'xml' is not one of"),
    ({"events": {"behaviour_types": ["impression"]}}, r"events: impression_type must not also be a behaviour"),
    ({"pipeline": {"max_dead_letter_rate": 2}}, r"pipeline: max_dead_letter_rate must be between 0 and 1"),
    ({"vocabulary": {"min_count": 0}}, r"vocabulary: min_count must be >= 1"),
    ({"users": {"features": "gender"}}, r"'users.features' must be a list"),
    ({"model": {"variant": "dien"}}, r"model: variant 'dien' is not one of din, concat, man, maan, marn"),
    ({"model": {"units": 0}}, r"model: units must be positive"),
    ({"model": {"modality_dropout": 1.0}}, r"model: modality_dropout must be in \[0, 1\)"),
    ({"model": {"invariant_residual": "sum"}}, r"model: invariant_residual 'sum' is not one of add, gated"),
    ({"train": {"weight_averaging": 1.0}}, r"train: weight_averaging must be in \[0, 1\)"),
    ({"runtime": {"strategy": "horovod"}}, r"runtime: strategy 'horovod' is not one of auto, default, mirrored"),
    ({"runtime": {"xla": True}}, r"runtime.xla needs static shapes.*set model.deduplicate_items=false"),
    ({"train": {"xla": True}, "runtime": {"xla": False}}, r"train.xla and runtime.xla are both set"),
])
def test_mistakes_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, {**MINIMAL, **change})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        Config.load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("inputs: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(str(bad))


def test_alternating_updates_refuse_float16_loss_scaling(tmp_path):
    with pytest.raises(ConfigError, match="train.update=alternating does not support mixed_float16"):
        load(tmp_path, {**MINIMAL, "train": {"update": "alternating"}, "runtime": {"mixed_precision": "mixed_float16"}})


def test_runtime_keys_of_an_older_config_under_train_still_load(tmp_path, caplog):
    """Configs and run directories written before the runtime: section had its keys under train:."""
    old = load(tmp_path, {**MINIMAL, "train": {"strategy": "mirrored", "epochs": 4}}, ["train.xla=false"])
    assert (old.runtime.strategy, old.runtime.xla, old.train.epochs) == ("mirrored", False, 4)
    assert "train.strategy, train.xla moved to the runtime: section" in caplog.text
    assert Config.from_dict({**MINIMAL, "train": {"tpu": "grpc://t:8470"}}).runtime.tpu == "grpc://t:8470"


def test_a_key_the_model_does_not_read_is_an_error_that_says_why(tmp_path):
    for variant in ("din", "concat", "man", "maan", "marn"):
        load(tmp_path, MINIMAL, [f"model.variant={variant}"]).model.check_settings_used()  # defaults: fine
    model = load(tmp_path, MINIMAL, ["model.variant=man", "model.lambda_adv=0.5", "model.attention_gate=scalar"]).model
    with pytest.raises(ConfigError, match=r"model.lambda_adv is 0.5, but model.variant 'man' has no invariant part "
                                          r"or discriminator, so it would change nothing: remove it"):
        model.check_settings_used()
    with pytest.raises(ConfigError, match=r"model.cross_layers is 3, but model.head is 'mlp'"):
        load(tmp_path, MINIMAL, ["model.cross_layers=3"]).model.check_settings_used()
    load(tmp_path, MINIMAL, ["model.cross_layers=3", "model.head=dcn"]).model.check_settings_used()
    with pytest.raises(ConfigError, match=r"model.lambda_align is 0.0, but model.variant 'maan' has no D0"):
        load(tmp_path, MINIMAL, ["model.variant=maan", "model.lambda_align=0"]).model.check_settings_used()


def test_a_ladder_rung_keeps_what_it_reads_and_resets_the_rest(tmp_path):
    marn = load(tmp_path, MINIMAL, ["model.lambda_adv=0.5", "model.attention_gate=scalar", "model.dropout=0.1"]).model
    marn.check_settings_used()
    man = marn.for_variant("man")
    assert (man.variant, man.attention_gate, man.dropout, man.lambda_adv) == ("man", "scalar", 0.1, 3.0)
    din = marn.for_variant("din")
    assert (din.attention_gate, din.dropout, din.lambda_adv) == ("vector", 0.1, 3.0)
    for rung in (man, din, marn.for_variant("marn")):
        rung.check_settings_used()
    assert marn.for_variant("marn") == marn
