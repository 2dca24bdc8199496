"""The user-interest network: behaviour items (rep_i with their property e^p) -> one interest vector.

    "gru" (default):  h_t = GRU(x_1..x_t);  u = sum_t w_t h_t with w = TargetAttention(q, h)
    "augru":          h_t as above; a_t = TargetAttention weights; u = AUGRU(h, a) final state (DIEN)
    "none" (DIN):     u = sum_t w_t x_t with w = TargetAttention(q, x)

With `raw_attention` (a GRU encoder only), DIN's pooling of the behaviour items themselves is the base and the
GRU's interest enters through a per-dimension gate g learned from 0:

    k_t = P x_t                                  a linear projection to the GRU's width
    h_t = GRU(k_1..k_t)
    u = [sum_t v_t x_t, g ⊙ u_gru],  v = TargetAttention'(q', k),  u_gru = sum_t w_t h_t

so an untrained layer pools the items as DIN does, and the GRU's part opens only as far as the loss gains. The
GRU states are a lossy summary of the items: where the IDs carry most of the signal and most users have few
behaviours, attention over the items themselves keeps what a GRU state blurs. The attention scores and the GRU
read the narrow k_t instead of the wide x_t (with `raw_path`, x_t is the raw concatenation of every modality):
the pooled values are still the items themselves, at a quarter of the cost per position.

q is the candidate's vector, projected to the key width. Positions past the sequence length are
masked everywhere: the GRUs skip them and the attention gives them weight 0.

Sequences may come once per distinct sequence with `rows` saying which one each query has
(`DistinctSequences`, in the inference network): the GRU then runs once per sequence, and the attention
projects each sequence's states once. The GRU states do not depend on the candidate, so this changes the
cost, not the result.
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
      unroll: unroll the GRU over the (static) sequence length instead of a while loop: about twice as fast
        to train on CPU at length 50, for a larger graph.
      raw_attention: with a GRU encoder, pool the behaviour items themselves by target attention (DIN's
        interest, scored over a projection of the items that the GRU reads too) and add the GRU's interest
        through a gate that starts at 0.

    Inputs: `query` [batch, dq], `sequence` [rows, L, dx], `mask` [rows, L], and optionally `rows` [batch], the
      sequence row of each query (without it, rows = batch and row i is query i's).
    Outputs: `interest` [batch, units] ([batch, dx] for "none", [batch, dx + units] with `raw_attention`) and the
      attention `weights` [batch, L] (over the GRU states where there is a GRU).
    """

    def __init__(self, sequence_encoder: str = "gru", units: int = 64, attention_hidden: Sequence[int] = (80, 40),
                 attention_normalize: str = "none", unroll: bool = True, raw_attention: bool = False, **kwargs):
        super().__init__(**kwargs)
        if sequence_encoder not in ENCODERS:
            raise ValueError(f"sequence_encoder must be one of {ENCODERS}, got {sequence_encoder!r}")
        self.sequence_encoder = sequence_encoder
        self.units = units
        self.attention_hidden = list(attention_hidden)
        self.attention_normalize = attention_normalize
        self.unroll = unroll
        if raw_attention and sequence_encoder == "none":
            raise ValueError("raw_attention adds DIN's pooling beside a GRU: sequence_encoder 'none' is that pooling")
        self.raw_attention = raw_attention
        if sequence_encoder != "none":
            self.gru = tf.keras.layers.GRU(units, return_sequences=True, unroll=unroll, name="interest_extractor")
        if sequence_encoder == "augru":
            self.augru = tf.keras.layers.RNN(AUGRUCell(units), name="interest_evolution")
        normalize = "softmax" if sequence_encoder == "augru" else attention_normalize
        self.attention = TargetAttention(self.attention_hidden, normalize=normalize, name="target_attention")
        if raw_attention:
            self.item_projection = tf.keras.layers.Dense(units, use_bias=False, name="item_projection")
            self.item_attention = TargetAttention(self.attention_hidden, normalize=attention_normalize,
                                                  name="item_target_attention")

    def build(self, input_shape):
        sequence_shape = input_shape[1]
        width = self.units if self.sequence_encoder != "none" else int(sequence_shape[-1])
        self.query_projection = tf.keras.layers.Dense(width, name="query_projection")
        if self.raw_attention:
            self.item_query_projection = tf.keras.layers.Dense(self.units, name="item_query_projection")
            self.encoder_gate = self.add_weight(name="encoder_gate", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        query, sequence, mask = inputs[:3]
        rows = inputs[3] if len(inputs) > 3 else None
        present = tf.cast(mask, tf.bool)
        projected = self.item_projection(sequence) if self.raw_attention else sequence
        keys = sequence if self.sequence_encoder == "none" else self.gru(projected, mask=present)
        key_rows = [rows] if rows is not None else []
        if rows is not None:
            mask, present = tf.gather(mask, rows), tf.gather(present, rows)
        pooled, weights = self.attention([self.query_projection(query), keys, mask] + key_rows)
        if self.sequence_encoder == "augru":
            if rows is not None:
                keys = tf.gather(keys, rows)
            scored = tf.concat([keys, tf.cast(weights, keys.dtype)[:, :, tf.newaxis]], axis=-1)
            pooled = self.augru(scored, mask=present)
        if self.raw_attention:
            items, _ = self.item_attention([self.item_query_projection(query), projected, mask] + key_rows,
                                           values=sequence)
            pooled = tf.concat([tf.cast(items, pooled.dtype), tf.cast(self.encoder_gate, pooled.dtype) * pooled], -1)
        return pooled, weights

    def get_config(self) -> dict:
        return {**super().get_config(), "sequence_encoder": self.sequence_encoder, "units": self.units,
                "attention_hidden": self.attention_hidden, "attention_normalize": self.attention_normalize,
                "unroll": self.unroll, "raw_attention": self.raw_attention}
