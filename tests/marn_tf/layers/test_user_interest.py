"""User interest: GRU / AUGRU / none, masked by sequence length."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.layers.user_interest import UserInterest
from tests.marn_tf.layers.layer_checks import assert_config_round_trip

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
    loop = UserInterest("gru", units=4, attention_hidden=[8])
    unrolled = UserInterest("gru", units=4, attention_hidden=[8], unroll=True)
    want = loop([QUERY, SEQUENCE, MASK])[0]
    unrolled([QUERY, SEQUENCE, MASK])
    unrolled.set_weights(loop.get_weights())
    np.testing.assert_allclose(unrolled([QUERY, SEQUENCE, MASK])[0].numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def _request_batch():
    """A ranking request: one user's sequence with several candidates; padding that differs past the end."""
    rows = [0, 0, 1, 0, 1, 2]
    sequence = tf.gather(SEQUENCE, rows)
    mask = tf.gather(MASK, rows)
    sequence = tf.tensor_scatter_nd_update(sequence, [[4, 3]], [tf.fill([6], 7.0)])  # row 4: past its end
    query = tf.constant(RNG.normal(size=(6, 7)), tf.float32)
    return query, sequence, mask


def _counting_layers(encoder):
    """The same weights with and without deduplication, and the batch sizes the first one's GRU sees."""
    query, sequence, mask = _request_batch()
    once = UserInterest(encoder, units=4, attention_hidden=[8])
    every_row = UserInterest(encoder, units=4, attention_hidden=[8], deduplicate=False)
    once([query, sequence, mask])
    every_row([query, sequence, mask])
    every_row.set_weights(once.get_weights())

    calls = []
    original = once.gru.call
    once.gru.call = lambda inputs, **kw: calls.append(inputs.shape[0]) or original(inputs, **kw)
    return once, every_row, calls


@pytest.mark.parametrize("encoder", ["gru", "augru"])
def test_inference_runs_the_gru_once_per_sequence_with_the_same_result(encoder):
    query, sequence, mask = _request_batch()
    once, every_row, calls = _counting_layers(encoder)
    got = once([query, sequence, mask], training=False)
    want = every_row([query, sequence, mask], training=False)
    assert calls == [4]  # three distinct sequences among six rows, one with other padding (kept apart: only cost)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-6, atol=1e-6)
    calls.clear()
    once([query, sequence, mask], training=True)
    assert calls == [6]


def test_a_fingerprint_collision_falls_back_to_every_row(monkeypatch):
    query, sequence, mask = _request_batch()
    once, every_row, calls = _counting_layers("gru")
    monkeypatch.setattr(tf, "fingerprint", lambda data: tf.zeros([tf.shape(data)[0], 8], tf.uint8))
    got = once([query, sequence, mask], training=False)
    assert calls == [6]  # every row is one group by fingerprint, which the row check refutes
    np.testing.assert_allclose(got[0].numpy(), every_row([query, sequence, mask], training=False)[0].numpy(),
                               rtol=1e-6, atol=1e-6)
