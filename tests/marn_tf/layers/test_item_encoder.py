"""The item encoder for every rung of the ablation ladder: outputs, masks, modality dropout."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.item_encoder import AUXILIARY_OUTPUTS, ItemEncoder
from tests.testing import EMBEDDING_CONFIG, assert_config_round_trip, assert_gradients_reach, item_content

LADDER = [("raw_concat", "none"), ("concat", "none"), ("attention", "none"), ("attention", "single"),
          ("attention", "double")]
OCCURRENCES = tf.constant([1.0, 2.0, 1.0])


def encoder(fusion, discriminators, **kwargs):
    return ItemEncoder(EMBEDDING_CONFIG, fusion, discriminators, units=8, common_units=6, discriminator_hidden=[5],
                       **kwargs)


@pytest.mark.parametrize("fusion,discriminators", LADDER)
def test_every_variant(fusion, discriminators):
    out = encoder(fusion, discriminators)([item_content([1, 2, 3]), OCCURRENCES])
    width = 3 * 4 + 6 + 6 + 5 if fusion == "raw_concat" else 8
    assert out["representation"].shape == (3, width)
    assert out["modality_weights"].shape == out["importance"].shape == out["modality_mask"].shape == (3, 4)
    weights, mask = out["modality_weights"].numpy(), out["modality_mask"].numpy()
    assert np.all(weights[mask == 0] == 0)  # a missing modality gets no weight
    if discriminators == "none":
        assert all(out[k].numpy() == 0 for k in AUXILIARY_OUTPUTS)
    else:
        assert out["d1_loss"].numpy() > 0 and (out["d0_loss"].numpy() > 0) == (discriminators == "double")


def test_missing_modality_content_is_ignored():
    layer = encoder("attention", "double")
    items = item_content([1, 2, 3])
    out = layer([items, OCCURRENCES])
    noisy = dict(items, image=items["image"] + 100.0 * (1 - tf.cast(items["has_image"], tf.float32))[:, None])
    changed = layer([noisy, OCCURRENCES])
    np.testing.assert_allclose(changed["representation"].numpy(), out["representation"].numpy(), rtol=1e-5, atol=1e-6)


def test_modality_dropout_only_in_training_and_never_all():
    layer = encoder("attention", "none", modality_dropout=0.9)
    items = item_content([1, 1, 1] * 1, has_image=(1, 1, 1), title_length=(1, 1, 1), sales=(1, 1, 1))
    tf.random.set_seed(0)
    trained = [layer([items, OCCURRENCES], training=True)["modality_mask"].numpy() for _ in range(20)]
    assert all(m.sum(axis=1).min() >= 1 for m in trained)
    assert np.mean(np.concatenate(trained)) < 0.5
    np.testing.assert_array_equal(layer([items, OCCURRENCES], training=False)["modality_mask"].numpy(), 1)


def test_discriminators_need_attention():
    with pytest.raises(ValueError, match="discriminators need fusion='attention'"):
        encoder("concat", "double")


@pytest.mark.parametrize("fusion,discriminators", [LADDER[1], LADDER[4]])
def test_config_round_trip(fusion, discriminators):
    assert_config_round_trip(encoder(fusion, discriminators), [item_content([1, 2, 3]), OCCURRENCES])


def test_gated_invariant_residual_starts_closed_and_opens():
    items = item_content([1, 2, 3])
    gated = encoder("attention", "double", invariant_residual="gated")
    out = gated([items, OCCURRENCES])
    vectors = gated.modality_vectors(items)
    attended, _ = gated.attention([vectors["specific"], vectors["mask"]])
    np.testing.assert_allclose(out["representation"].numpy(), attended.numpy(), rtol=1e-6)  # γ = 0: MAN's s alone
    invariant = gated.discriminator([vectors["invariant"], vectors["specific"], vectors["mask"], OCCURRENCES])
    gated.invariant_gate.assign(tf.ones_like(gated.invariant_gate))
    opened = gated([items, OCCURRENCES])["representation"].numpy()
    np.testing.assert_allclose(opened - attended.numpy(), invariant["invariant"].numpy(), rtol=1e-5, atol=1e-6)
    assert_config_round_trip(encoder("attention", "double", invariant_residual="gated"), [items, OCCURRENCES])
    with pytest.raises(ValueError, match="invariant_residual must be one of"):
        encoder("attention", "double", invariant_residual="sum")


def test_attended_invariant_part_takes_a_share_of_the_softmax():
    items = item_content([1, 2, 3])
    softmax = {"attention_gate": "scalar", "attention_normalize": "softmax"}
    added = encoder("attention", "double", **softmax)([items, OCCURRENCES])["modality_weights"].numpy()
    np.testing.assert_allclose(added.sum(axis=1), 1.0, rtol=1e-5)  # the s^m share everything
    layer = encoder("attention", "double", invariant_residual="attended", **softmax)
    attended = layer([items, OCCURRENCES])["modality_weights"].numpy()
    assert attended.shape == (3, 4) and np.all((attended.sum(axis=1) > 0) & (attended.sum(axis=1) < 1 - 1e-4))
    assert_config_round_trip(layer, [items, OCCURRENCES])


@pytest.mark.parametrize("fusion,discriminators", LADDER)
def test_every_weight_of_every_rung_trains(fusion, discriminators):
    tf.keras.utils.set_random_seed(0)
    wide_cnn = dict(EMBEDDING_CONFIG, text_filters=16)  # (2 ReLU filters can all be dead on the two titles)
    layer = ItemEncoder(wide_cnn, fusion, discriminators, units=8, common_units=6, discriminator_hidden=[5])
    assert_gradients_reach(layer, [item_content([1, 2, 3]), OCCURRENCES])



RAW_WIDTH = 3 * 4 + 6 + 6 + 5  # the test embeddings' concatenation


def raw_concatenation(layer, items):
    vectors = layer.modality_vectors(items)
    return tf.concat([e * vectors["mask"][:, m:m + 1] for m, e in enumerate(vectors["embeddings"])], -1).numpy()


@pytest.mark.parametrize("fusion,discriminators", LADDER[1:])
def test_raw_path_starts_as_dins_representation_and_opens(fusion, discriminators):
    items = item_content([1, 2, 3])
    layer = encoder(fusion, discriminators, raw_path=True)
    out = layer([items, OCCURRENCES])["representation"].numpy()
    assert out.shape == (3, RAW_WIDTH + 8)
    np.testing.assert_allclose(out[:, :RAW_WIDTH], raw_concatenation(layer, items), rtol=1e-6)  # DIN's, as it is
    np.testing.assert_allclose(out[:, RAW_WIDTH:], 0.0)  # the gate starts closed: the rung adds nothing yet
    layer.path_gate.assign(tf.ones_like(layer.path_gate))
    assert np.abs(layer([items, OCCURRENCES])["representation"].numpy()[:, RAW_WIDTH:]).max() > 0
    assert_config_round_trip(encoder(fusion, discriminators, raw_path=True), [items, OCCURRENCES])


@pytest.mark.parametrize("raw_units,width", [(5, 5), (None, 8)])
def test_a_raw_path_width_maps_dins_concatenation_linearly_to_it(raw_units, width):
    items = item_content([1, 2, 3])
    layer = encoder("attention", "double", raw_path=True, raw_units=raw_units)
    out = layer([items, OCCURRENCES])["representation"].numpy()
    assert out.shape == (3, width + 8)  # None: the width `units`
    # the base: a linear map of DIN's concatenation, computed once per item
    np.testing.assert_allclose(out[:, :width], raw_concatenation(layer, items) @ layer.raw_projection.kernel.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert_config_round_trip(encoder("attention", "double", raw_path=True, raw_units=raw_units), [items, OCCURRENCES])


def test_with_the_raw_path_the_games_losses_move_the_projections_but_not_the_embeddings():
    items = item_content([1, 2, 3])
    for raw_path, reach_embeddings in ((False, True), (True, False)):
        layer = encoder("attention", "double", raw_path=raw_path)
        layer([items, OCCURRENCES])
        with tf.GradientTape() as tape:
            out = layer([items, OCCURRENCES], training=True)
            game = out["confusion_loss"] + out["d1_loss"] + out["alignment_loss"]
        embedding_weights = layer.embeddings.trainable_weights
        projection_weights = [w for w in layer.projection.trainable_weights if "invariant" in w.name]
        grads = tape.gradient(game, embedding_weights + projection_weights)
        reached = [g is not None and float(tf.reduce_max(tf.abs(tf.convert_to_tensor(g)))) > 0 for g in grads]
        assert any(reached[:len(embedding_weights)]) == reach_embeddings
        assert any(reached[len(embedding_weights):])
