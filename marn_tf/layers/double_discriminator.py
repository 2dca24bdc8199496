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

Missing modalities (mask 0) take no part: no weight, no classifier loss, no share of c.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from marn_tf.layers.gradient_reversal import GradientReversal


def _classifier(hidden_units: Sequence[int], num_classes: int, name: str) -> tf.keras.Sequential:
    layers = [tf.keras.layers.Dense(u, activation="relu", name=f"{name}_hidden_{i}") for i, u in enumerate(hidden_units)]
    layers.append(tf.keras.layers.Dense(num_classes, name=f"{name}_logits"))
    return tf.keras.Sequential(layers, name=name)


def _masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    return tf.math.divide_no_nan(tf.reduce_sum(values * mask), tf.reduce_sum(mask))


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class DoubleDiscriminator(tf.keras.layers.Layer):
    """D0 importance weights, D1 behind gradient reversal, Ds sharing D1; the weighted invariant vector.

    Args:
      num_modalities: M.
      hidden_units: hidden layer widths of each discriminator MLP.
      grl_coefficient: lambda_grl at the start (ramp it with `self.gradient_reversal.set_coefficient`).
      normalize_weights: scale w to mean 1 over the batch's present modalities.

    Inputs: `invariant` [batch, M, d], `specific` [batch, M, d], `mask` [batch, M].
    Output: a dict with
      "invariant" [batch, d]: c;  "importance" [batch, M]: w (0 where missing);
      "d0_loss", "d1_loss", "ds_loss": scalar cross-entropies over present modalities;
      "d1_accuracy", "ds_accuracy": scalars (D1 near 1/M means c^m are modality-invariant).
    """

    def __init__(self, num_modalities: int, hidden_units: Sequence[int] = (64,), grl_coefficient: float = 0.1,
                 normalize_weights: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = num_modalities
        self.hidden_units = list(hidden_units)
        self.grl_coefficient = grl_coefficient
        self.normalize_weights = normalize_weights
        self.d0 = _classifier(self.hidden_units, num_modalities, "d0")
        self.d1 = _classifier(self.hidden_units, num_modalities, "d1")  # also Ds
        self.gradient_reversal = GradientReversal(grl_coefficient, name="grl")

    def _loss_and_accuracy(self, logits, labels, mask):
        loss = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), logits.dtype)
        return _masked_mean(loss, mask), _masked_mean(correct, mask)

    def call(self, inputs):
        invariant, specific, mask = inputs
        mask = tf.cast(mask, invariant.dtype)
        batch = tf.shape(invariant)[0]
        labels = tf.broadcast_to(tf.eye(self.num_modalities, dtype=invariant.dtype),
                                 [batch, self.num_modalities, self.num_modalities])

        d0_logits = self.d0(tf.stop_gradient(invariant))
        own = tf.reduce_sum(tf.nn.softmax(d0_logits) * labels, axis=-1)  # D0(c^m)[m]
        importance = tf.stop_gradient(1.0 - own) * mask
        if self.normalize_weights:
            importance = importance / tf.maximum(_masked_mean(importance, mask), 1e-6)
        weighted = importance[:, :, tf.newaxis] * invariant

        d1_logits = self.d1(self.gradient_reversal(weighted))
        ds_logits = self.d1(specific)
        d0_loss, _ = self._loss_and_accuracy(d0_logits, labels, mask)
        d1_loss, d1_accuracy = self._loss_and_accuracy(d1_logits, labels, mask)
        ds_loss, ds_accuracy = self._loss_and_accuracy(ds_logits, labels, mask)
        total = tf.reduce_sum(importance, axis=1, keepdims=True)
        return {
            "invariant": tf.math.divide_no_nan(tf.reduce_sum(weighted, axis=1), total),
            "importance": importance,
            "d0_loss": d0_loss, "d1_loss": d1_loss, "ds_loss": ds_loss,
            "d1_accuracy": d1_accuracy, "ds_accuracy": ds_accuracy,
        }

    def get_config(self) -> dict:
        return {**super().get_config(), "num_modalities": self.num_modalities, "hidden_units": self.hidden_units,
                "grl_coefficient": self.grl_coefficient, "normalize_weights": self.normalize_weights}
