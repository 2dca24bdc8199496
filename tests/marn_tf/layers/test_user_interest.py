"""User interest: GRU / AUGRU / none, masked by sequence length."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.user_interest import UserInterest
from tests.testing import assert_config_round_trip, weights_without_gradient

RNG = np.random.default_rng(0)
QUERY = tf.constant(RNG.normal(size=(3, 7)), tf.float32)
SEQUENCE = tf.constant(RNG.normal(size=(3, 5, 6)), tf.float32)
MASK = tf.sequence_mask([5, 2, 0], 5, dtype=tf.float32)


@pytest.mark.parametrize("encoder", ["gru", "augru", "none"])
def test_shapes_and_padding_is_ignored(encoder):
    layer = UserInterest(encoder, units=4, attention_hidden=[8])
    interest, weights = layer([QUERY, SEQUENCE, MASK])
    assert interest.shape == (3, 4 if encoder != "none" else 6) and weights.shape == (3, 5)
    assert np.all(weights.numpy()[MASK.numpy() == 0] == 0)
    padded = tf.where(MASK[:, :, tf.newaxis] > 0, SEQUENCE, 1e3)  # garbage after the sequence's end
    np.testing.assert_allclose(layer([QUERY, padded, MASK])[0].numpy(), interest.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(interest[2].numpy(), 0.0, atol=1e-6)  # an empty sequence: no interest


def test_unknown_encoder():
    with pytest.raises(ValueError, match="sequence_encoder must be one of"):
        UserInterest("lstm")


@pytest.mark.parametrize("encoder, unroll", [("gru", False), ("augru", False), ("gru", True)])
def test_config_round_trip(encoder, unroll):
    assert_config_round_trip(UserInterest(encoder, units=4, attention_hidden=[8], unroll=unroll),
                             [QUERY, SEQUENCE, MASK])


def test_unrolled_gru_gives_the_same_interest():
    loop = UserInterest("gru", units=4, attention_hidden=[8], unroll=False)
    unrolled = UserInterest("gru", units=4, attention_hidden=[8], unroll=True)
    want = loop([QUERY, SEQUENCE, MASK])[0]
    unrolled([QUERY, SEQUENCE, MASK])
    unrolled.set_weights(loop.get_weights())
    np.testing.assert_allclose(unrolled([QUERY, SEQUENCE, MASK])[0].numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("encoder", ["gru", "augru", "none"])
def test_sequences_given_once_per_row_give_the_same_result(encoder):
    # A ranking request: three distinct sequences for six candidates.
    rows = tf.constant([0, 0, 1, 0, 1, 2])
    query = tf.constant(RNG.normal(size=(6, 7)), tf.float32)
    layer = UserInterest(encoder, units=4, attention_hidden=[8])
    repeated = layer([query, tf.gather(SEQUENCE, rows), tf.gather(MASK, rows)])
    shared = layer([query, SEQUENCE, MASK, rows])
    for a, b in zip(shared, repeated):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("encoder", ["gru", "augru", "none"])
def test_the_encoder_and_the_attention_train(encoder):
    tf.keras.utils.set_random_seed(0)
    layer = UserInterest(encoder, units=4, attention_hidden=[8])
    # AUGRU's attention is a softmax, which cancels the score's constant: its last bias gets no gradient, by design
    assert weights_without_gradient(layer, [QUERY, SEQUENCE, MASK]) == (
        [f"{layer.name}/target_attention/activation_unit/score/bias:0"] if encoder == "augru" else [])


@pytest.mark.parametrize("encoder", ["gru", "augru"])
def test_raw_attention_starts_as_dins_pooling_and_opens_the_encoders_part(encoder):
    """With `raw_attention`, the interest is an attention pooling of the items themselves, scored over their
    projection k = P x, then the encoder's interest over k through a gate that starts at 0: untrained, the
    encoder adds nothing; with the gate open, the second part is the plain layer's output over k for the same
    weights. Padding is ignored and an empty sequence gives 0."""
    plain = UserInterest(encoder, units=4, attention_hidden=[8])
    both = UserInterest(encoder, units=4, attention_hidden=[8], raw_attention=True)
    din = UserInterest("none", attention_hidden=[8])
    both([QUERY, SEQUENCE, MASK])
    projected = both.item_projection(SEQUENCE)
    want, _ = plain([QUERY, projected, MASK])
    din([QUERY, projected, MASK])
    for part in ["gru", "attention", "query_projection"] + (["augru"] if encoder == "augru" else []):
        getattr(both, part).set_weights(getattr(plain, part).get_weights())
    din.attention.set_weights(both.item_attention.get_weights())
    din.query_projection.set_weights(both.item_query_projection.get_weights())
    interest, _ = both([QUERY, SEQUENCE, MASK])
    assert interest.shape == (3, 6 + 4)
    _, din_weights = din([QUERY, projected, MASK])
    np.testing.assert_allclose(interest[:, :6].numpy(), np.einsum("bt,btd->bd", din_weights, SEQUENCE),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(interest[:, 6:].numpy(), 0.0)
    both.encoder_gate.assign(tf.ones_like(both.encoder_gate))
    interest, _ = both([QUERY, SEQUENCE, MASK])
    np.testing.assert_allclose(interest[:, 6:].numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    padded = tf.where(MASK[:, :, tf.newaxis] > 0, SEQUENCE, 1e3)
    np.testing.assert_allclose(both([QUERY, padded, MASK])[0].numpy(), interest.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(interest[2].numpy(), 0.0, atol=1e-6)
    assert weights_without_gradient(both, [QUERY, SEQUENCE, MASK]) == (
        [f"{both.name}/target_attention/activation_unit/score/bias:0"] if encoder == "augru" else [])


def test_the_closed_gate_is_what_trains_first():
    """At the start only the gate and DIN's part get a gradient: the encoder's weights wait until the gate opens."""
    layer = UserInterest("gru", units=4, attention_hidden=[8], raw_attention=True)
    with tf.GradientTape() as tape:
        interest, _ = layer([QUERY, SEQUENCE, MASK])
        loss = tf.reduce_sum(tf.sin(interest))
    grads = dict(zip([w.name for w in layer.trainable_weights], tape.gradient(loss, layer.trainable_weights)))
    assert np.any(grads[layer.encoder_gate.name].numpy())
    assert all(not np.any(g.numpy()) for name, g in grads.items() if "interest_extractor" in name)


def test_raw_attention_shares_sequences_and_round_trips():
    rows = tf.constant([0, 0, 1, 0, 1, 2])
    query = tf.constant(RNG.normal(size=(6, 7)), tf.float32)
    layer = UserInterest("gru", units=4, attention_hidden=[8], raw_attention=True)
    repeated = layer([query, tf.gather(SEQUENCE, rows), tf.gather(MASK, rows)])[0]
    np.testing.assert_allclose(layer([query, SEQUENCE, MASK, rows])[0].numpy(), repeated.numpy(), rtol=1e-6, atol=1e-6)
    assert_config_round_trip(UserInterest("gru", units=4, attention_hidden=[8], raw_attention=True),
                             [QUERY, SEQUENCE, MASK])


def test_raw_attention_needs_an_encoder():
    with pytest.raises(ValueError, match="raw_attention adds DIN's pooling beside a GRU"):
        UserInterest("none", raw_attention=True)
