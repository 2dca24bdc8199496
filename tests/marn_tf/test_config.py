"""Config loading: defaults, overrides, the model's structure keys, and errors that name the key to fix."""
import dataclasses
import os
import typing

import pytest
import yaml

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError
from marn_tf.model_config import ModelConfig

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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
    ({"pipeline": {"max_dead_letter_rate": 2}}, r"config key 'pipeline.max_dead_letter_rate' is 2.0: it must be a number in \[0, 1\]"),
    ({"pipeline": {"item_content": "features"}}, r"pipeline: item_content is 'features': use one of table, examples"),
    ({"items": {"image_pca_dim": 64}}, r"items: image_pca_dim is 64: it must be between 1 and image_dim - 1 \(63\)"),
    ({"items": {"image": None, "image_pca_dim": 8}}, r"needs items.image set"),
    ({"vocabulary": {"min_count": 0}}, r"config key 'vocabulary.min_count' is 0: it must be a positive integer"),
    ({"users": {"features": "gender"}}, r"'users.features' must be a list"),
    ({"model": {"variant": "dien"}}, r"model: variant 'dien' is not one of din, concat, man, maan, marn"),
    ({"model": {"units": 0}}, r"config key 'model.units' is 0: it must be a positive integer \(a width\)"),
    ({"model": {"modality_dropout": 1.0}}, r"'model.modality_dropout' is 1.0: it must be a number in \[0, 1\)"),
    ({"model": {"attention_cost": -0.01}}, r"'model.attention_cost' is -0.01: it must be a number >= 0"),
    ({"model": {"invariant_residual": "sum"}}, r"model: invariant_residual 'sum' is not one of add, gated"),
    ({"train": {"weight_averaging": 1.0}}, r"'train.weight_averaging' is 1.0: it must be a number in \[0, 1\)"),
    ({"train": {"learning_rate_decay_passes": -1}}, r"'train.learning_rate_decay_passes' is -1.0: it must be a number >= 0"),
    ({"runtime": {"strategy": "horovod"}}, r"runtime: strategy 'horovod' is not one of auto, default, mirrored"),
    ({"runtime": {"xla": True}}, r"runtime.xla needs static shapes.*set model.deduplicate_items=false"),
    ({"train": {"xla": True}, "runtime": {"xla": False}}, r"train.xla and runtime.xla are both set"),
    ({"runtime": {"min_shard_bytes": 0}}, r"'runtime.min_shard_bytes' is 0: it must be a positive integer"),
    # parameter servers: asynchronous updates, inexact validation, no shared loss scale
    ({"runtime": {"strategy": "parameter_server"}, "train": {"deterministic": True, "validation_steps": 5}},
     r"updates the weights asynchronously.*set train.deterministic=false"),
    ({"runtime": {"strategy": "parameter_server"}}, r"set train.validation_steps"),
    ({"runtime": {"strategy": "parameter_server", "mixed_precision": "mixed_float16"}, "train": {"validation_steps": 5}},
     r"parameter_server does not support mixed_float16"),
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
    with pytest.raises(ConfigError, match=r"model.lambda_adv is 0.5, but model.discriminators is 'none' \(no "
                                          r"invariant part or discriminator\), so it would change nothing: remove it"):
        model.check_settings_used()
    with pytest.raises(ConfigError, match=r"model.cross_layers is 3, but model.head is 'mlp'"):
        load(tmp_path, MINIMAL, ["model.cross_layers=3"]).model.check_settings_used()
    load(tmp_path, MINIMAL, ["model.cross_layers=3", "model.head=dcn"]).model.check_settings_used()
    with pytest.raises(ConfigError, match=r"model.lambda_align is 0.0, but model.discriminators is 'single' \(no D0"):
        load(tmp_path, MINIMAL, ["model.variant=maan", "model.lambda_align=0"]).model.check_settings_used()
    with pytest.raises(ConfigError, match=r"model.attention_gate is 'scalar', but model.fusion is 'concat' \(no "
                                          r"modality attention\)"):
        load(tmp_path, MINIMAL, ["model.fusion=concat", "model.discriminators=none",
                                 "model.attention_gate=scalar"]).model.check_settings_used()
    with pytest.raises(ConfigError, match=r"model.gru_units is 8, but model.sequence_encoder is 'none'"):
        load(tmp_path, MINIMAL, ["model.sequence_encoder=none", "model.gru_units=8"]).model.check_settings_used()


def test_a_ladder_rung_keeps_what_it_reads_and_resets_the_rest(tmp_path):
    marn = load(tmp_path, MINIMAL, ["model.lambda_adv=0.5", "model.attention_gate=scalar", "model.dropout=0.1"]).model
    marn.check_settings_used()
    man = marn.for_variant("man")
    assert (man.variant, man.attention_gate, man.dropout, man.lambda_adv) == ("man", "scalar", 0.1, 3.0)
    din = marn.for_variant("din")
    assert (din.attention_gate, din.dropout, din.lambda_adv) == ("vector", 0.1, 3.0)
    assert (din.fusion, din.discriminators, din.sequence_encoder) == ("raw_concat", "none", "none")
    for rung in (man, din, marn.for_variant("marn")):
        rung.check_settings_used()
    assert marn.for_variant("marn") == marn
    # A rung with a GRU keeps the model's AUGRU; DIN has no encoder; from DIN, a GRU rung gets the GRU.
    augru = load(tmp_path, MINIMAL, ["model.sequence_encoder=augru"]).model
    assert [augru.for_variant(v).sequence_encoder for v in ("din", "concat", "man")] == ["none", "augru", "augru"]
    assert din.for_variant("maan").sequence_encoder == "gru" and din.for_variant("marn") == ModelConfig(dropout=0.1)
    custom = load(tmp_path, MINIMAL, ["model.fusion=raw_concat", "model.discriminators=none"]).model
    assert custom.variant == "custom" and custom.for_variant("man") == ModelConfig(variant="man")


RUNG_STRUCTURES = {"din": ("raw_concat", "none", "none"), "concat": ("concat", "none", "gru"),
                   "man": ("attention", "none", "gru"), "maan": ("attention", "single", "gru"),
                   "marn": ("attention", "double", "gru")}


def structure(model):
    return model.variant, (model.fusion, model.discriminators, model.sequence_encoder)


@pytest.mark.parametrize("variant", RUNG_STRUCTURES)
def test_a_variant_alone_sets_its_structure_and_its_keys_alone_name_it(tmp_path, variant):
    fusion, discriminators, encoder = RUNG_STRUCTURES[variant]
    by_name = load(tmp_path, MINIMAL, [f"model.variant={variant}"])
    assert structure(by_name.model) == (variant, RUNG_STRUCTURES[variant])
    assert (by_name.model.sequence_encoder != "none") == (variant != "din")
    by_keys = load(tmp_path, MINIMAL, [f"model.fusion={fusion}", f"model.discriminators={discriminators}",
                                       f"model.sequence_encoder={encoder}"])
    assert by_keys == by_name
    both = load(tmp_path, MINIMAL, [f"model.variant={variant}", f"model.fusion={fusion}",
                                    f"model.discriminators={discriminators}", f"model.sequence_encoder={encoder}"])
    assert both == by_name
    written = by_name.to_dict()["model"]  # all four resolved, and read back as the same model
    assert (written["variant"], written["fusion"], written["discriminators"], written["sequence_encoder"]) == (
        variant, fusion, discriminators, encoder)
    assert Config.from_dict(by_name.to_dict()) == by_name


def test_the_keys_alone_default_to_marn_and_name_the_rung_they_make_or_custom(tmp_path):
    assert structure(load(tmp_path, MINIMAL).model) == ("marn", ("attention", "double", "gru"))
    assert structure(load(tmp_path, MINIMAL, ["model.discriminators=none"]).model)[0] == "man"
    # AUGRU in a GRU rung's place is still that rung, as `variant: marn` with `sequence_encoder: augru` always was.
    assert structure(load(tmp_path, MINIMAL, ["model.sequence_encoder=augru"]).model) == (
        "marn", ("attention", "double", "augru"))
    assert structure(load(tmp_path, MINIMAL, ["model.variant=maan", "model.sequence_encoder=augru"]).model) == (
        "maan", ("attention", "single", "augru"))
    custom = load(tmp_path, MINIMAL, ["model.fusion=raw_concat", "model.discriminators=none"]).model
    assert structure(custom) == ("custom", ("raw_concat", "none", "gru"))  # DIN's items with a GRU: no rung
    assert structure(load(tmp_path, MINIMAL, ["model.sequence_encoder=none"]).model) == (
        "custom", ("attention", "double", "none"))
    # What to_dict writes for a custom structure reads back as the same model; `variant: custom` reads as unset.
    assert Config.from_dict(load(tmp_path, MINIMAL, ["model.sequence_encoder=none"]).to_dict()).model.variant == "custom"
    assert structure(load(tmp_path, MINIMAL, ["model.variant=custom", "model.discriminators=single"]).model)[0] == "maan"


@pytest.mark.parametrize("overrides, message", [
    (["model.variant=man", "model.discriminators=single"],
     r"model: variant 'man' is fusion 'attention', discriminators 'none', sequence_encoder 'gru', but discriminators "
     r"is 'single': set one or the other, not both: remove model.discriminators to build man, or remove "
     r"model.variant to build the keys' structure \(maan\)"),
    (["model.variant=din", "model.sequence_encoder=augru"],
     r"variant 'din' is .* but sequence_encoder is 'augru': .* remove model.sequence_encoder to build din"),
    (["model.variant=marn", "model.fusion=concat", "model.discriminators=none"],
     r"but fusion is 'concat', discriminators is 'none': .* remove model.fusion, model.discriminators to build marn, "
     r"or remove model.variant to build the keys' structure \(concat\)"),
    (["model.variant=concat", "model.sequence_encoder=none"], r"but sequence_encoder is 'none'"),
])
def test_a_variant_and_keys_that_disagree_are_an_error_naming_the_keys(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, MINIMAL, overrides)


@pytest.mark.parametrize("overrides, message", [
    (["model.fusion=concat", "model.discriminators=single"],
     r"model: discriminators 'single' need fusion 'attention' .*, not 'concat': set model.fusion=attention, or "
     r"model.discriminators=none"),
    (["model.fusion=raw_concat", "model.discriminators=double", "model.sequence_encoder=none"], r"not 'raw_concat'"),
    (["model.fusion=concat"], r"discriminators 'double' \(unset: marn's\) need fusion 'attention'"),
    (["model.fusion=sum"], r"model: fusion 'sum' is not one of raw_concat, concat, attention"),
    (["model.discriminators=triple"], r"model: discriminators 'triple' is not one of none, single, double"),
    (["model.sequence_encoder=lstm"], r"model: sequence_encoder 'lstm' is not one of none, gru, augru"),
])
def test_a_structure_the_network_cannot_build_is_an_error_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, MINIMAL, overrides)


# The model: section as a run saved it before the structure keys existed (the run_config.yaml of a din run of
# benchmarks/quality.py, the keys at their defaults shortened to a few).
OLD_SAVED_DIN = """
model:
  variant: din
  units: 64
  attention_gate: vector
  lambda_adv: 3.0
  invariant_residual: add
  modality_dropout: 0.0
  sequence_encoder: gru
  gru_units: 64
  gru_unroll: true
  head: mlp
  dropout: 0.2
"""


def test_a_config_saved_before_the_structure_keys_loads_as_the_same_model(tmp_path):
    path = tmp_path / "run_config.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + OLD_SAVED_DIN)
    din = Config.load(str(path)).model
    assert din == ModelConfig(variant="din")  # `sequence_encoder: gru` beside din always meant no encoder
    assert structure(din) == ("din", ("raw_concat", "none", "none")) and din.sequence_encoder == "none"
    din.check_settings_used()
    # Other rungs saved their sequence encoder, AUGRU included, and read it as before.
    for variant in ("concat", "man", "maan", "marn"):
        path.write_text(yaml.safe_dump(MINIMAL) + OLD_SAVED_DIN.replace("din", variant).replace("gru\n", "augru\n"))
        model = Config.load(str(path)).model
        assert structure(model) == (variant, RUNG_STRUCTURES[variant][:2] + ("augru",))
        assert model == ModelConfig(variant=variant, sequence_encoder="augru")


def test_a_run_saved_before_raw_path_existed_restores_without_it(tmp_path):
    """A key whose default changed after runs were saved without it: the run loads with the value it was trained
    with, while a config file that leaves it out takes today's default."""
    path = tmp_path / "run_config.yaml"
    path.write_text(yaml.safe_dump(MINIMAL) + OLD_SAVED_DIN.replace("din", "marn"))
    assert Config.load_run(str(path)).model.raw_path is False
    Config.load_run(str(path)).model.check_settings_used()  # raw_units, unread without the path, restores as None
    assert Config.load(str(path)).model.raw_path is ModelConfig().raw_path
    path.write_text(yaml.safe_dump(MINIMAL) + OLD_SAVED_DIN.replace("din", "marn") + "  raw_path: true\n")
    assert Config.load_run(str(path)).model.raw_path is True
    # saved with the raw path before its width was a key: R mapped the concatenation to `units` columns
    assert Config.load_run(str(path)).model.raw_units is None
    assert Config.load(str(path)).model.raw_units == ModelConfig().raw_units == 0


def test_digests_of_earlier_runs_stay_the_same(tmp_path):
    """benchmarks/quality.py names its cached runs by a digest of the resolved model/train config, and `marn run`
    skips a trained stage by one: the model as it was written before the structure keys, so runs trained before
    them are reused. The names are the ones benchmarks/quality.py gave those runs."""
    import argparse
    import sys

    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    import quality

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL))
    # those runs had a constant learning rate (train.learning_rate_decay_passes=0), no raw path, no raw interest,
    # no rate offset and Ds's loss at weight 0.1
    constant = ["train.learning_rate_decay_passes=0", "model.raw_path=false", "model.raw_interest=false",
                "model.rate_offset=false", "model.lambda_s=0.1"]
    args = argparse.Namespace(config=str(path), batch_size=1024, steps_per_eval=40, max_evals=8, patience=2,
                              set=constant, runs="runs")
    names = [os.path.basename(quality.run_dir(args, quality.run_config(args, variant, 1))) for variant in
             ("din", "concat", "man", "maan", "marn")]
    assert names == ["din-seed1-f8c8c9f697", "concat-seed1-bec47570e5", "man-seed1-cb6020c62a",
                     "maan-seed1-6ade7a28a8", "marn-seed1-cdc8ee46e8"]
    # lambda_s, 0 by default now: a rung that does not read it keeps its runs, marn trains new ones
    args.set = constant[:-1]
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "maan", 1))) == "maan-seed1-6ade7a28a8"
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "marn", 1))) != "marn-seed1-cdc8ee46e8"
    args.set = []  # the decay, on by default now, trains other runs
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "din", 1))) != "din-seed1-f8c8c9f697"
    # din reads no raw_path, so turning it on renames every rung but din
    args.set = ["train.learning_rate_decay_passes=0", "model.raw_path=true", "model.rate_offset=false"]
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "din", 1))) == "din-seed1-f8c8c9f697"
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "marn", 1))) != "marn-seed1-cdc8ee46e8"
    # --set model.sequence_encoder=augru: din reuses its runs (it reads no encoder), the GRU rungs hash the AUGRU.
    args.set = constant + ["model.sequence_encoder=augru"]
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "din", 1))) == "din-seed1-f8c8c9f697"
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "man", 1))) != "man-seed1-cb6020c62a"
    # keys added later (attention_cost, ...) rename a run only when set; concat reads no attention key
    args.set = constant + ["model.attention_cost=0.01"]
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "concat", 1))) == "concat-seed1-bec47570e5"
    assert os.path.basename(quality.run_dir(args, quality.run_config(args, "man", 1))) != "man-seed1-cb6020c62a"
    din = ModelConfig(variant="din").digest_dict()
    assert "fusion" not in din and "discriminators" not in din and din["sequence_encoder"] == "gru"
    custom = ModelConfig(sequence_encoder="none").digest_dict()  # no earlier run had it: every key hashed
    assert (custom["variant"], custom["fusion"], custom["sequence_encoder"]) == ("custom", "attention", "none")


def test_catalog_counters_read_after_the_training_window_starts_are_refused(make_config):
    """items.statistics_as_of later than split.train_start (or train_end without a start) names the key and the
    fix; a date at or before the start, or no counters at all, is accepted."""
    split = {"train_start": "2026-01-02", "train_end": "2026-01-05", "valid_end": "2026-01-06"}
    with pytest.raises(ConfigError, match=r"items.statistics_as_of 2026-01-03 is later than split.train_start"):
        make_config(split=split, items={"statistics_as_of": "2026-01-03"})
    with pytest.raises(ConfigError, match=r"later than split.train_end"):
        make_config(split={"train_end": "2026-01-05", "valid_end": "2026-01-06"},
                    items={"statistics_as_of": "2026-01-07"})
    assert make_config(split=split, items={"statistics_as_of": "2026-01-02"}).items.statistics_as_of == "2026-01-02"
    assert make_config(split=split, items={"statistics_as_of": "2026-02-01", "statistics": []})
    with pytest.raises(ConfigError, match=r"items.statistics_as_of: 'soon' is not an ISO-8601 date"):
        make_config(split=split, items={"statistics_as_of": "soon"})


def test_click_type_must_be_a_behaviour_type(make_config):
    """events.click_type outside events.behaviour_types is refused naming both keys; null is accepted."""
    with pytest.raises(ConfigError, match=r"events.click_type 'tap' is not one of events.behaviour_types"):
        make_config(events={"click_type": "tap"})
    assert make_config(events={"click_type": None}).events.click_type is None


def test_a_config_file_that_is_not_utf8_text_is_a_config_error_naming_it(tmp_path):
    """A config file that exists but is not UTF-8 text fails as a config mistake (before any work), naming the
    file, not as a missing file."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"split:\n  train_end: \xff\xfe2026\n")
    with pytest.raises(ConfigError, match=r"config file .*config.yaml cannot be read"):
        Config.load(str(path))


def numeric_keys(cls=Config, path=""):
    """(dotted key, the value that holds one number of it) for every number a config has, found from the
    dataclasses' fields: an int or float key, an optional one, each entry of a list, each value of a mapping."""
    found = []
    for name, hint in typing.get_type_hints(cls).items():
        key = f"{path}{name}"
        hint = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if typing.get_origin(
            hint) is typing.Union else hint
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            found += numeric_keys(hint, key + ".")
        elif hint in (int, float):
            found.append((key, key, lambda v: v))
        elif origin is list and args[0] in (int, float):
            found.append((f"{key}[0]", key, lambda v: [v]))
        elif origin is dict and args[1] in (int, float):
            found.append((f"{key}.user_id", key, lambda v: {"user_id": v}))
    return found


# The one number with no range: an initial bias may be any finite number.
ANY_NUMBER = {"model.attention_bias"}
NUMERIC_KEYS = [k for k in numeric_keys() if k[0] not in ANY_NUMBER]


def override(key, value):
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


@pytest.mark.parametrize("named, key, wrap", NUMERIC_KEYS, ids=[k[0] for k in NUMERIC_KEYS])
def test_every_number_of_the_config_is_range_and_type_checked_naming_its_key(tmp_path, named, key, wrap):
    """-1 is in the range of no count, width, rate or weight of the config, and a bool or a string is no number:
    each is refused when the config is read, naming the key with its section."""
    for bad in (-1, True, "many"):
        with pytest.raises(ConfigError, match=rf"config key '{named}' (is -1|must be (int|float), got )".replace(
                "[", r"\[").replace("]", r"\]")):
            load(tmp_path, MINIMAL, [override(key, wrap(bad))])


def test_the_number_keys_are_found():
    """The walk over the fields finds every kind of number key (else the test above would check nothing)."""
    keys = {k[0] for k in numeric_keys()}
    assert {"sequence.max_length", "model.hidden_units[0]", "model.hash_buckets.user_id", "train.validation_steps",
            "run.seeds[0]", "pipeline.max_dead_letter_rate", "runtime.min_shard_bytes"} <= keys
    assert len(keys) > 50


@pytest.mark.parametrize("setting, message", [
    ("model.hidden_units=[200, 0]", r"config key 'model.hidden_units\[1\]' is 0: each must be a positive integer"),
    ("model.attention_hidden=[80, 0]", r"'model.attention_hidden\[1\]' is 0: each must be a positive integer"),
    ("model.discriminator_hidden=[0]", r"'model.discriminator_hidden\[0\]' is 0"),
    ("model.text_kernel_sizes=[2, 0]", r"'model.text_kernel_sizes\[1\]' is 0: each must be a positive integer"),
    ("model.text_kernel_sizes=[]", r"'model.text_kernel_sizes' is \[\]: name at least one kernel size"),
    ("model.cross_layers=0", r"'model.cross_layers' is 0: it must be a positive integer"),
    ("model.hash_buckets={user_id: 1}", r"'model.hash_buckets.user_id' is 1: it must be an integer >= 2"),
    ("model.alignment_temperature=0", r"'model.alignment_temperature' is 0.0: it must be a number > 0"),
    ("train.shuffle_buffer=0", r"'train.shuffle_buffer' is 0: it must be a positive integer"),
    ("train.validation_steps=0", r"'train.validation_steps' is 0: it must be a positive integer"),
    ("train.seed=4294967296", r"'train.seed' is 4294967296: it must be an integer in \[0, 4294967295\]"),
    ("sequence.max_length=0", r"'sequence.max_length' is 0: it must be a positive integer"),
    ("items.max_title_tokens=0", r"'items.max_title_tokens' is 0: it must be a positive integer"),
    ("statistics.num_buckets=2", r"'statistics.num_buckets' is 2: it must be an integer >= 3"),
    ("pipeline.max_dead_letter_rate=1.5", r"'pipeline.max_dead_letter_rate' is 1.5: it must be a number in \[0, 1\]"),
    ("run.workers=0", r"'run.workers' is 0: it must be a positive integer"),
    ("run.seeds=[1, -2]", r"'run.seeds\[1\]' is -2: each must be an integer in \[0, 4294967295\]"),
])
def test_a_zero_count_or_width_or_a_rate_out_of_range_names_the_key_and_its_range(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, MINIMAL, [setting])


def test_an_impossible_date_names_its_key_in_the_file_and_in_an_override(tmp_path):
    """YAML's own date constructor raises a bare ValueError for 2026-02-30: it is a config error naming the key."""
    path = tmp_path / "c.yaml"
    path.write_text("inputs: {events: {path: e}, items: {path: i}}\nsplit: {train_end: 2026-02-30, "
                    "valid_end: 2026-03-12}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: config key 'split.train_end' is 2026-02-30, which is no date "
                                          r"\(day is out of range for month\): write a date that exists"):
        Config.load(str(path))
    with pytest.raises(ConfigError, match=r"override 'split.valid_end' is 2026-01-12T25:00:00, which is no date"):
        load(tmp_path, MINIMAL, ["split.valid_end=2026-01-12T25:00:00"])
