"""The multimodal adversarial network (MAAN) with double discriminators, IWAN-style, for M modalities.

Inputs per item: invariant vectors c^m = I(e^m) and specific vectors s^m, for the present modalities.

* D0, an M-way modality classifier, sees stop_gradient(c^m). Its confidence in the true modality
  sets an importance weight w^m = 1 - D0(c^m)[m]: a vector easy to attribute to its modality holds
  little common information and counts less. w is stop-gradient and normalised to mean 1 over the
  present (item, modality) pairs of the batch.
* D1, a second M-way classifier, sees w^m c^m through a gradient-reversal layer: D1 learns to tell
  the modalities apart, the shared projector I learns to make them indistinguishable.
* Ds is D1's network (the same variables) on the specific vectors s^m, with the normal gradient:
  the specific projectors cooperate, pushing the modalities' specific vectors apart.
* The item's invariant vector is c = sum_m w^m c^m / sum_m w^m.

`mode="single"` is the ablation with D1 alone: w = 1, no D0, and Ds is only measured (on
stop_gradient(s^m), so it trains nothing).

Missing modalities (mask 0) take no part: no weight, no classifier loss, no share of c. An optional
per-item `sample_weight` (how many times the item occurs in the batch, when the encoder runs once per
unique item) weighs the losses and accuracies as if every occurrence had been encoded. The scalars
are this replica's share of the global batch mean (see `replica_statistics`).
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from marn_tf.layers.gradient_reversal import GradientReversal
from marn_tf.layers.replica_statistics import global_mean, replica_share_of_mean

MODES = ("double", "single")


def _classifier(hidden_units: Sequence[int], num_classes: int, name: str, dtype) -> tf.keras.Sequential:
    layers = [tf.keras.layers.Dense(u, activation="relu", name=f"{name}_hidden_{i}", dtype=dtype)
              for i, u in enumerate(hidden_units)]
    layers.append(tf.keras.layers.Dense(num_classes, name=f"{name}_logits", dtype=dtype))
    return tf.keras.Sequential(layers, name=name)


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class DoubleDiscriminator(tf.keras.layers.Layer):
    """D0 importance weights, D1 behind gradient reversal, Ds sharing D1; the weighted invariant vector.

    Args:
      num_modalities: M.
      hidden_units: hidden layer widths of each discriminator MLP.
      grl_coefficient: lambda_grl at the start (ramp it with `self.gradient_reversal.set_coefficient`).
      normalize_weights: scale w to mean 1 over the batch's present modalities.
      mode: "double" (D0, D1, Ds) or "single" (D1 only, w = 1).

    Inputs: `invariant` [batch, M, d], `specific` [batch, M, d], `mask` [batch, M], and optionally
      `sample_weight` [batch].
    Output: a dict with
      "invariant" [batch, d]: c;  "importance" [batch, M]: w (0 where missing);
      "d0_loss", "d1_loss", "ds_loss": scalar cross-entropies over present modalities;
      "d1_accuracy", "ds_accuracy": scalars (D1 near 1/M means c^m are modality-invariant).
    """

    def __init__(self, num_modalities: int, hidden_units: Sequence[int] = (64,), grl_coefficient: float = 0.1,
                 normalize_weights: bool = True, mode: str = "double", **kwargs):
        kwargs.setdefault("dtype", "float32")  # losses and weights stay float32 under mixed precision
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.num_modalities = num_modalities
        self.hidden_units = list(hidden_units)
        self.grl_coefficient = grl_coefficient
        self.normalize_weights = normalize_weights
        self.mode = mode
        self.d0 = _classifier(self.hidden_units, num_modalities, "d0", self.dtype) if mode == "double" else None
        self.d1 = _classifier(self.hidden_units, num_modalities, "d1", self.dtype)  # also Ds
        self.gradient_reversal = GradientReversal(grl_coefficient, name="grl", dtype=self.dtype)

    def call(self, inputs):
        invariant, specific, mask = inputs[:3]
        invariant, specific = tf.cast(invariant, tf.float32), tf.cast(specific, tf.float32)
        mask = tf.cast(mask, tf.float32)
        if len(inputs) > 3:
            mask *= tf.cast(inputs[3], tf.float32)[:, tf.newaxis]  # occurrences weigh each (item, modality)
        batch = tf.shape(invariant)[0]
        labels = tf.broadcast_to(tf.eye(self.num_modalities), [batch, self.num_modalities, self.num_modalities])

        def loss_and_accuracy(logits):
            loss = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), tf.float32)
            return replica_share_of_mean(loss, mask), replica_share_of_mean(correct, mask)

        present = tf.cast(mask > 0, tf.float32)
        if self.mode == "double":
            d0_logits = self.d0(tf.stop_gradient(invariant))
            own = tf.reduce_sum(tf.nn.softmax(d0_logits) * labels, axis=-1)  # D0(c^m)[m]
            importance = tf.stop_gradient(1.0 - own) * present
            if self.normalize_weights:
                importance = importance / tf.maximum(tf.stop_gradient(global_mean(importance, mask)), 1e-6)
            d0_loss, _ = loss_and_accuracy(d0_logits)
        else:
            importance, d0_loss = present, tf.constant(0.0)
        weighted = importance[:, :, tf.newaxis] * invariant

        d1_loss, d1_accuracy = loss_and_accuracy(self.d1(self.gradient_reversal(weighted)))
        if self.mode == "single":
            specific = tf.stop_gradient(specific)
        ds_loss, ds_accuracy = loss_and_accuracy(self.d1(specific))
        total = tf.reduce_sum(importance, axis=1, keepdims=True)
        return {
            "invariant": tf.math.divide_no_nan(tf.reduce_sum(weighted, axis=1), total),
            "importance": importance,
            "d0_loss": d0_loss, "d1_loss": d1_loss, "ds_loss": ds_loss,
            "d1_accuracy": d1_accuracy, "ds_accuracy": ds_accuracy,
        }

    def get_config(self) -> dict:
        return {**super().get_config(), "num_modalities": self.num_modalities, "hidden_units": self.hidden_units,
                "grl_coefficient": self.grl_coefficient, "normalize_weights": self.normalize_weights,
                "mode": self.mode}
