"""The multimodal attention network (MAN): per-item weights over the modality-specific vectors.

For item i and modality m with specific vector s_i^m (dimension d):

    a_i^m = tanh(W_m s_i^m + b_m)                    one (W_m, b_m) per modality   (context "own", the paper)
    a_i^m = tanh(W_m s_i^m + U_m s̄_i + b_m)         s̄_i the mean of the item's present s^m   (context "item")
    s_i   = sum_m a_i^m ⊙ s_i^m                      over the modalities the item has

The paper's gate sees only its own modality, so the statistics vector cannot know which category its
item is in and its weight cannot follow the category; `context="item"` (not in the paper) lets every gate see the
item's whole set of specific vectors. `bias_initializer` > 0 starts the gates open, so a modality
whose vectors start small is not switched off before it has learned anything.

`gate="vector"` (default): W_m is d x d, a weight per dimension. `gate="scalar"`: W_m is d x 1, one
weight per modality. `normalize="softmax"`: the gate logits W_m s^m + b_m are normalised across the
present modalities (per dimension for the vector gate) instead of passed through tanh. A missing
modality (mask 0) is left out: its weight is 0 and it changes nothing, whatever its vector holds.
The weights are an output: they are the per-item modality importances the product reports.

The click loss alone does not pin the weights down (measured: docs/experiments.md): S_m can
scale s^m up as a^m shrinks, and the prediction head, which sees the item's category through its ID
vector, can reweigh the sum itself, so a^m stays flat across categories. Two options make the weights
measure use: `unit_scale` divides each s^m by its root mean square before the gate, so only a^m sets a
modality's share of s_i, and `cost` adds

    cost * mean_i sum_m mean_d |a_i^m|

to the layer's losses: a gate stays open only where its modality lowers the click loss by more. The mean over
items i is weighted by `occurrences` when given (how often the batch uses each item, from the item tower, which
encodes each distinct item once): the same cost with and without that deduplication.
"""
from __future__ import annotations

import tensorflow as tf

from marn_tf.layers.feature_embedding import weighted_mean

GATES = ("vector", "scalar")
NORMALIZATIONS = ("none", "softmax")
CONTEXTS = ("own", "item")
UNIT_SCALE_EPSILON = 1e-3  # as LayerNormalization's: a near-zero (dead ReLU) s^m is not blown up
MASKED_LOGIT = -1e9  # a missing modality's softmax logit: no share, and finite in float32


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class ModalityAttention(tf.keras.layers.Layer):
    """Gated sum of modality-specific vectors.

    Args:
      num_modalities: M, the number of modality slots.
      gate: "vector" (a_i^m in R^d) or "scalar" (a_i^m in R).
      normalize: "none" (tanh gates, as the paper) or "softmax" across present modalities.
      context: "own" (a gate sees its modality's vector) or "item" (and the mean of the item's vectors).
      bias_initializer: the initial b_m.
      unit_scale: divide each s^m by its root mean square over the dimensions first.
      cost: weight of the L1 cost on the gates (0: none).

    Inputs: `specific` [batch, M, d] and `mask` [batch, M] (1 where the modality is present); the call's
      `occurrences` [batch] weighs each item in the cost (default 1).
    Outputs: `fused` [batch, d] and `weights` [batch, M, d] ("vector") or [batch, M, 1] ("scalar"),
      0 for missing modalities.
    """

    def __init__(self, num_modalities: int, gate: str = "vector", normalize: str = "none", context: str = "own",
                 bias_initializer: float = 0.0, unit_scale: bool = False, cost: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        self.num_modalities = num_modalities
        self.gate = gate
        self.normalize = normalize
        self.context = context
        self.bias_initializer = bias_initializer
        self.unit_scale = unit_scale
        self.cost = cost

    def build(self, input_shape):
        specific_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) else input_shape
        dim = int(specific_shape[-1])
        width = dim if self.gate == "vector" else 1
        self.kernel = self.add_weight(name="kernel", shape=(self.num_modalities, dim, width),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.num_modalities, width),
                                    initializer=tf.keras.initializers.Constant(self.bias_initializer))
        if self.context == "item":
            self.context_kernel = self.add_weight(name="context_kernel", shape=(self.num_modalities, dim, width),
                                                  initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, inputs, occurrences=None):
        specific, mask = inputs
        if self.unit_scale:
            specific *= tf.math.rsqrt(tf.reduce_mean(tf.square(specific), axis=-1, keepdims=True) + UNIT_SCALE_EPSILON)
        logits = tf.einsum("bmd,mdw->bmw", specific, self.kernel) + self.bias  # W_m s^m + b_m
        present = tf.cast(mask, logits.dtype)[:, :, tf.newaxis]
        if self.context == "item":
            mean = tf.math.divide_no_nan(tf.reduce_sum(specific * present, axis=1),
                                         tf.reduce_sum(present, axis=1))  # s̄ over the present modalities
            logits += tf.einsum("bd,mdw->bmw", mean, self.context_kernel)
        if self.normalize == "softmax":
            # in float32 with a finite floor: logits plus float16's lowest value overflow to -inf, and an item with
            # every modality missing would then divide 0 by 0
            floored = tf.where(present > 0, tf.cast(logits, tf.float32), MASKED_LOGIT)
            weights = tf.cast(tf.nn.softmax(floored, axis=1), logits.dtype) * present  # all missing: all zero
        else:
            weights = tf.tanh(logits) * present
        fused = tf.reduce_sum(weights * specific, axis=1)
        if self.cost:
            per_item = tf.reduce_sum(tf.reduce_mean(tf.abs(weights), axis=-1), axis=1)
            self.add_loss(self.cost * (tf.reduce_mean(tf.cast(per_item, tf.float32)) if occurrences is None
                                       else weighted_mean(per_item, occurrences)))
        return fused, weights

    def get_config(self) -> dict:
        return {**super().get_config(), "num_modalities": self.num_modalities, "gate": self.gate,
                "normalize": self.normalize, "context": self.context, "bias_initializer": self.bias_initializer,
                "unit_scale": self.unit_scale, "cost": self.cost}
