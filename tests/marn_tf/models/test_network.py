"""The network built from the schema: every variant, raw requests with unknown ids, schema mistakes."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from marn_tf.config_loader import ConfigError
from marn_tf.data.input import make_dataset
from marn_tf.evaluation.floor import floor_scores
from marn_tf.model_config import VARIANTS
from marn_tf.schema import SchemaError
from marn_tf.training.training_run import load_network
from tests.testing import with_model

pytestmark = pytest.mark.integration


def batch(prepared, size=16):
    config, data, schema = prepared
    features, label = next(iter(make_dataset(data, schema, "train", size, shuffle=False)))
    return features, label


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_from_the_schema(prepared, variant):
    config, data, schema = prepared
    config = dataclasses.replace(config, model=config.model.for_variant(variant))
    network = load_network(config, schema, data)
    out = network.full(batch(prepared)[0])
    assert out["probability"].shape == (16,) and np.all((out["probability"].numpy() > 0) & (out["probability"] < 1))
    assert network.modalities == ["id", "image", "text", "statistic"]
    assert out["modality_weights"].shape == (16, 4)
    assert (out["d1_loss"].numpy() > 0) == (variant in ("maan", "marn"))


@pytest.mark.parametrize("encoder", ["gru", "augru"])
def test_a_ranking_request_encodes_its_sequence_once_with_the_same_scores(prepared, encoder):
    config, data, schema = prepared
    features, _ = batch(prepared, size=256)
    histories = [tuple(h) for h in features["hist_item_id"].numpy().tolist()]
    distinct = [histories.index(h) for h in dict.fromkeys(histories)][:4]
    assert len(distinct) == 4
    # One user's sequence with 192 candidates of the batch, then rows of three other sequences.
    rows = [distinct[0]] * 192 + [distinct[1], distinct[2], distinct[1], distinct[3]] * 16
    request = {k: (v if k == "item_id" else tf.gather(v, rows)) for k, v in features.items()}
    once = load_network(with_model(config, sequence_encoder=encoder), schema, data)
    every_row = load_network(with_model(config, sequence_encoder=encoder, deduplicate_sequences=False), schema, data)
    every_row.core.set_weights(once.core.get_weights())
    first, _ = once.inference.get_layer("distinct_sequences")(
        [once.lookup(request)[f.name] for f in schema.features_with_tags("behaviour")])
    assert len(first) == 4
    assert "distinct_sequences" not in [layer.name for layer in every_row.inference.layers]
    want = every_row.full(request, training=False)["probability"].numpy()
    np.testing.assert_allclose(once.full(request, training=False)["probability"].numpy(), want, rtol=1e-5, atol=1e-6)


def test_unknown_ids_map_to_the_oov_item(prepared):
    config, data, schema = prepared
    network = load_network(config, schema, data)
    features = dict(batch(prepared)[0])
    features["item_id"] = tf.constant(["never-seen"] * 16)
    indexed = network.lookup({k: features[k] for k in network.lookup.input_names})
    assert np.all(indexed["item_id"].numpy() == 0)
    out = network.full(features)
    assert np.all(out["candidate_index"].numpy() == 0) and np.all(np.isfinite(out["probability"].numpy()))
    assert np.all(out["modality_mask"].numpy()[:, 1:] == 0)  # the OOV item has no content


def test_hashed_user_ids_need_no_vocabulary_and_new_ids_are_not_all_oov(prepared):
    config, data, schema = prepared
    features = dict(batch(prepared)[0])
    features["user_id"] = tf.constant([f"user-first-seen-at-serving-{i}" for i in range(16)])
    looked_up = load_network(config, schema, data)
    hashed = load_network(with_model(config, hash_buckets={"user_id": 64}), schema, data)
    assert np.all(looked_up.lookup(features)["user_id"].numpy() == 0)  # every new id is the OOV row
    buckets = hashed.lookup(features)["user_id"].numpy()
    assert len(set(buckets.tolist())) > 8 and buckets.min() >= 0 and buckets.max() < 64
    np.testing.assert_array_equal(buckets, hashed.lookup(features)["user_id"].numpy())  # stable
    embedding = hashed.core.get_layer("user_context").embeddings["user_id"]
    assert embedding.input_dim == 64
    assert np.all(np.isfinite(hashed.full(features)["probability"].numpy()))


@pytest.mark.parametrize("name", ["item_id", "hist_item_id", "position", "no_such_feature"])
def test_only_string_user_and_context_features_can_be_hashed(prepared, name):
    config, data, schema = prepared
    with pytest.raises(ConfigError, match=f"model.hash_buckets names '{name}'.*hashable here: .*user_id"):
        load_network(with_model(config, hash_buckets={name: 64}), schema, data)


def test_schema_without_a_candidate_key_fails(prepared):
    config, data, schema = prepared
    broken = dataclasses.replace(schema, features=[f for f in schema.features if f.name != "item_id"])
    with pytest.raises(SchemaError, match="exactly one candidate item key feature"):
        load_network(config, broken, data)


def test_rate_offset_adds_the_floors_logits_to_the_deep_part(prepared):
    config, data, schema = prepared
    with_offset = with_model(config, rate_offset=True)
    network = load_network(with_offset, schema, data)
    features = batch(prepared)[0]
    rates = [f.name for f in schema.features_with_tags("rate")]
    assert rates
    network.core.get_layer("rate_offset").rate_weights.assign(tf.zeros(len(rates)))
    deep = network.full(features)["logit"].numpy()
    network.core.get_layer("rate_offset").rate_weights.assign(tf.ones(len(rates)))
    floor = floor_scores({name: features[name].numpy() for name in rates})
    np.testing.assert_allclose(network.full(features)["logit"].numpy() - deep, floor, rtol=1e-4, atol=1e-4)


# A value other than the default for every key some model does not read (ModelConfig.unused_keys).
NOT_DEFAULT = {
    "units": 16, "normalize_modalities": False, "gru_units": 16, "gru_unroll": False,
    "attention_gate": "scalar", "attention_normalize": "softmax", "attention_context": "item", "attention_bias": 1.0,
    "attention_unit_scale": True, "attention_cost": 0.1,
    "common_units": 16, "discriminator_hidden": [4], "lambda_adv": 0.5, "adversarial_objective": "reversal",
    "adversarial_margin": 0.3, "share_discriminator": True, "grl_coefficient": 0.5, "grl_ramp": False,
    "adversarial_ramp_steps": 7, "invariant_residual": "gated", "lambda_d0": 0.5, "lambda_s": 0.5,
    "lambda_align": 0.5, "alignment_items": 4, "alignment_temperature": 0.5, "importance_weighting": "scale",
    "importance_floor": 0.3, "normalize_importance": False, "cross_layers": 3, "raw_path": False,
    "raw_interest": False, "raw_units": 16,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_keys_a_variant_does_not_read_change_nothing_in_it(prepared, variant):
    """What `check_settings_used` refuses and `for_variant` resets is truly unused: the same weights, outputs
    and loss weights whatever those keys hold."""
    from marn_tf.tasks.marn_task import loss_weights

    config, data, schema = prepared
    model = config.model.for_variant(variant)
    unused = list(model.unused_keys())
    changed = dataclasses.replace(model, **{key: NOT_DEFAULT[key] for key in unused})
    assert {key for key in unused if getattr(changed, key) != getattr(model, key)} == set(unused)
    networks = [load_network(dataclasses.replace(config, model=m), schema, data) for m in (model, changed)]
    weights = networks[0].core.get_weights()
    assert [w.shape for w in networks[1].core.get_weights()] == [w.shape for w in weights]
    networks[1].core.set_weights(weights)
    features = batch(prepared)[0]
    first, second = (n.full(features, training=False) for n in networks)
    for key in ("probability", "modality_weights", "importance", "d1_loss", "ds_loss"):
        np.testing.assert_allclose(second[key].numpy(), first[key].numpy(), rtol=1e-6, atol=1e-7, err_msg=key)
    assert loss_weights(changed) == loss_weights(model)


@pytest.mark.parametrize("variant, lambda_s, probe", [("maan", 0.0, True), ("marn", 0.0, True),
                                                     ("marn", 0.1, False)])
def test_ds_is_built_as_a_probe_exactly_where_the_loss_trains_it_as_one(prepared, variant, lambda_s, probe):
    """The network's Ds and the task's loss weight follow one rule: a probe at weight 1 (maan, or marn at lambda_s
    0), else the specific projections' adversary at weight lambda_s."""
    from marn_tf.tasks.marn_task import DS_PROBE_WEIGHT, loss_weights

    config, data, schema = prepared
    model = dataclasses.replace(config.model.for_variant(variant), **({"lambda_s": lambda_s} if lambda_s else {}))
    network = load_network(dataclasses.replace(config, model=model), schema, data)
    assert network.item_tower.encoder.discriminator.specific_probe == probe
    assert loss_weights(model)["ds_loss"] == (DS_PROBE_WEIGHT if probe else lambda_s)


@pytest.mark.parametrize("variant", ["din", "marn"])
def test_training_and_inference_paths_give_the_same_scores(prepared, variant):
    """The training graph (every row its own sequence), the inference graph (each distinct sequence once) and the
    export's frozen graph (item representations precomputed) are built apart from the same layers: with the random
    parts off (dropout), they must score alike."""
    config, data, schema = prepared
    model = dataclasses.replace(config.model.for_variant(variant), dropout=0.0, modality_dropout=0.0)
    network = load_network(dataclasses.replace(config, model=model), schema, data)
    features, _ = batch(prepared, size=64)
    indexed = network.lookup(features)
    first, _ = network.inference.get_layer("distinct_sequences")(
        [indexed[f.name] for f in schema.features_with_tags("behaviour")])
    assert len(first) < 64  # impressions of one request share their sequence: inference really deduplicates
    assert "distinct_sequences" not in [layer.name for layer in network.core.layers]
    training = network.core(indexed, training=True)["probability"].numpy()
    np.testing.assert_allclose(network.full(features, training=False)["probability"].numpy(), training,
                               rtol=1e-5, atol=1e-6)
    frozen = network.frozen()
    assert "precomputed_item_tower" in [layer.name for layer in frozen.inference.layers]
    np.testing.assert_allclose(frozen.full(features)["probability"].numpy(), training, rtol=1e-5, atol=1e-6)
    # Every layer but the item tower is shared: a change of weights reaches the frozen graph too.
    network.core.get_layer("logit").bias.assign_add([1.0])
    np.testing.assert_allclose(frozen.full(features)["logit"].numpy(), network.core(indexed)["logit"].numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["din", "marn"])
def test_every_variable_of_the_network_has_a_name_of_its_own(prepared, variant):
    """Reports that name variables (the non-finite variables of a diverged step, TensorBoard) can tell every
    variable apart: no two share a name, two target attentions' inner layers included."""
    import collections

    config, data, schema = prepared
    network = load_network(dataclasses.replace(config, model=config.model.for_variant(variant)), schema, data)
    network.full(batch(prepared)[0])
    counts = collections.Counter(v.name for v in network.core.variables)
    assert [name for name, n in counts.items() if n > 1] == []
