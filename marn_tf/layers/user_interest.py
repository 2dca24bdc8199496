"""The user-interest network: behaviour items (rep_i with their property e^p) -> one interest vector.

    "gru" (default):  h_t = GRU(x_1..x_t);  u = sum_t w_t h_t with w = TargetAttention(q, h)
    "augru":          h_t as above; a_t = TargetAttention weights; u = AUGRU(h, a) final state (DIEN)
    "none" (DIN):     u = sum_t w_t x_t with w = TargetAttention(q, x)

q is the candidate's vector, projected to the key width. Positions past the sequence length are
masked everywhere: the GRUs skip them and the attention gives them weight 0.

At inference the GRU runs once per distinct behaviour sequence of the batch (`deduplicate`): a ranking
request scores many candidates for one user, and every one of them carries the same sequence. The GRU
states do not depend on the candidate, so this changes the cost, not the result. Training batches are
shuffled and rarely repeat a sequence, so they skip the search.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from marn_tf.layers.augru import AUGRUCell
from marn_tf.layers.target_attention import TargetAttention

ENCODERS = ("gru", "augru", "none")


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class UserInterest(tf.keras.layers.Layer):
    """GRU (or AUGRU, or none) over the behaviour sequence, pooled by target attention.

    Args:
      sequence_encoder: "gru", "augru" or "none".
      units: GRU width (ignored for "none").
      attention_hidden, attention_normalize: `TargetAttention` options ("augru" always normalises with softmax).
      deduplicate: at inference, run the GRU once per distinct sequence (False: every row, for XLA's static
        shapes).
      unroll: unroll the GRU over the (static) sequence length instead of a while loop: about twice as fast
        to train on CPU at length 50, for a larger graph.

    Inputs: `query` [batch, dq], `sequence` [batch, L, dx], `mask` [batch, L].
    Outputs: `interest` [batch, units] ([batch, dx] for "none") and the attention `weights` [batch, L].
    """

    def __init__(self, sequence_encoder: str = "gru", units: int = 64, attention_hidden: Sequence[int] = (80, 40),
                 attention_normalize: str = "none", deduplicate: bool = True, unroll: bool = False, **kwargs):
        super().__init__(**kwargs)
        if sequence_encoder not in ENCODERS:
            raise ValueError(f"sequence_encoder must be one of {ENCODERS}, got {sequence_encoder!r}")
        self.sequence_encoder = sequence_encoder
        self.units = units
        self.attention_hidden = list(attention_hidden)
        self.attention_normalize = attention_normalize
        self.deduplicate = deduplicate
        self.unroll = unroll
        if sequence_encoder != "none":
            self.gru = tf.keras.layers.GRU(units, return_sequences=True, unroll=unroll, name="interest_extractor")
        if sequence_encoder == "augru":
            self.augru = tf.keras.layers.RNN(AUGRUCell(units), name="interest_evolution")
        normalize = "softmax" if sequence_encoder == "augru" else attention_normalize
        self.attention = TargetAttention(self.attention_hidden, normalize=normalize, name="target_attention")

    def build(self, input_shape):
        query_shape, sequence_shape, _ = input_shape
        width = self.units if self.sequence_encoder != "none" else int(sequence_shape[-1])
        self.query_projection = tf.keras.layers.Dense(width, name="query_projection")
        super().build(input_shape)

    def call(self, inputs, training=None):
        query, sequence, mask = inputs
        present = tf.cast(mask, tf.bool)
        if self.sequence_encoder == "none":
            keys, rows = sequence, None
        elif self.deduplicate and not training:
            keys, rows = self._gru_once_per_sequence(sequence, mask, present)
        else:
            keys, rows = self.gru(sequence, mask=present), None
        pooled, weights = self.attention([self.query_projection(query), keys, mask] + ([rows] if rows is not None else []))
        if self.sequence_encoder != "augru":
            return pooled, weights
        if rows is not None:
            keys = tf.gather(keys, rows)
        scored = tf.concat([keys, tf.cast(weights, keys.dtype)[:, :, tf.newaxis]], axis=-1)
        return self.augru(scored, mask=present), weights

    def _gru_once_per_sequence(self, sequence, mask, present):
        """(GRU states of the distinct sequences [rows, L, units], each batch row's index into them [batch])."""
        batch = tf.shape(sequence)[0]
        rows = tf.reshape(sequence, [batch, -1])
        # Group rows by a 64-bit fingerprint of the sequence and its mask (far cheaper than comparing rows),
        # then check the grouping: rows grouped together must be equal, else every row runs.
        key = tf.stack([tf.bitcast(tf.fingerprint(rows), tf.int64), tf.bitcast(tf.fingerprint(present), tf.int64)], 1)
        _, position = tf.unique(tf.bitcast(tf.fingerprint(key), tf.int64))
        first = tf.math.unsorted_segment_min(tf.range(batch), position, tf.reduce_max(position) + 1)
        representative = tf.gather(first, position)
        exact = tf.logical_and(tf.reduce_all(tf.equal(rows, tf.gather(rows, representative))),
                               tf.reduce_all(tf.equal(present, tf.gather(present, representative))))
        return tf.cond(exact,
                       lambda: (self.gru(tf.gather(sequence, first), mask=tf.gather(present, first)), position),
                       # a fingerprint collision: every row
                       lambda: (self.gru(sequence, mask=present), tf.range(batch, dtype=position.dtype)))

    def get_config(self) -> dict:
        return {**super().get_config(), "sequence_encoder": self.sequence_encoder, "units": self.units,
                "attention_hidden": self.attention_hidden, "attention_normalize": self.attention_normalize,
                "deduplicate": self.deduplicate, "unroll": self.unroll}
