"""The multimodal adversarial network (MAAN) with double discriminators, IWAN-style, for M modalities.

Inputs per item: invariant vectors c^m = I(P_m(e^m)) and specific vectors s^m, for the present modalities.

* D0, an M-way modality classifier, sees stop_gradient(c^m). Its confidence in the true modality sets
  an importance weight w^m = 1 - D0(c^m)[m]: a vector easy to attribute to its modality holds little
  common information and counts less. w is stop-gradient, clipped below at `importance_floor` (an
  unopposed D0 grows near-certain, and 1 - D0 then is noise around 0) and normalised to mean 1 over
  the present (item, modality) pairs of the batch.
* D1, a second M-way classifier, plays the min-max game with the shared projector: D1 learns to tell
  the modalities of the invariant vectors apart, the projector learns to hide them. Two objectives:

      "capped" (default): D1 is trained on stop_gradient(c^m) with the true modality; the projector
          minimises max(0, log M - CE(D1(c^m), m)) through D1's frozen weights: the reversal's full-size
          push while D1 is better than chance on a vector, nothing once it is at chance. Bounded, so the
          encoder cannot win by making D1 confidently wrong. `margin` δ moves the cap to log M + δ: the
          push goes on until D1 gives the true modality e^-δ/M, a little under chance, because at
          exactly log M a vector whose prediction is near uniform but tilted right gets no push and D1's
          accuracy stays above chance while its loss looks beaten.
      "confusion" (Tzeng et al., ICCV 2015): as "capped", but the projector minimises the cross-entropy
          of D1's frozen prediction against the uniform distribution 1/M. Its gradient p - 1/M fades as
          D1's output flattens, while D1's argmax can stay right: measured, D1 kept 0.6 accuracy (M = 4).
      "reversal" (the paper's reading; DANN): D1 sees c^m through a gradient-reversal layer, so one
          descent step trains D1 and pushes the projector up D1's (unbounded) cross-entropy.

  With `importance_weighting="loss"` (default, as IWAN) w^m weighs each vector's D1 and confusion
  loss; with "scale" (the paper's reading) D1 sees w^m c^m, so the modality leaks through magnitude.
* Ds, a modality classifier on the specific vectors s^m with the normal gradient: the specific
  projectors cooperate, pushing the modalities' specific vectors apart. Its own network by default;
  `share_discriminator=True` makes it D1's network (the paper), which pins D1's regions to the
  specific vectors.
* An alignment term keeps the invariant part informative and shared: for every pair of present
  modalities (m, n) of the same item, an InfoNCE loss makes c^m pick out the same item's c^n among
  the other items' (temperature `alignment_temperature`, over at most `alignment_items` items of the
  batch). It cannot be met by a constant vector, which is how the weaker modalities collapsed.
* The item's invariant vector is c = sum_m w^m c^m / sum_m w^m.

`mode="single"` is the ablation with D1 alone: w = 1, no D0, no alignment, and Ds is only measured (on
stop_gradient(s^m), so it trains nothing but itself).

The adversarial coefficient (lambda_grl: the reversal factor, or the confusion term's weight) lives in
the gradient-reversal layer's variable, so `AdversarialRamp` can ramp it without retracing.

Missing modalities (mask 0) take no part: no weight, no classifier loss, no share of c. An optional
per-item `sample_weight` (how many times the item occurs in the batch, when the encoder runs once per
unique item) weighs the losses and accuracies as if every occurrence had been encoded. The scalars
are this replica's share of the global batch mean (see `replica_statistics`), so N replicas train what one
would on the same global batch, with one exception: the alignment term's negatives are the other items of
this replica's part of the batch, not gathered across replicas. N replicas compare each item with about 1/N
of the items one replica on the whole batch would (a smaller, easier InfoNCE), so that term and its gradient
differ from the single-replica ones.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from marn_tf.layers.gradient_reversal import GradientReversal
from marn_tf.layers.replica_statistics import cross_replica_sum, global_mean, replica_share_of_mean

MODES = ("double", "single")
OBJECTIVES = ("capped", "confusion", "reversal")
IMPORTANCE_WEIGHTINGS = ("loss", "scale")
DISCRIMINATOR_OUTPUTS = ("d0_loss", "d1_loss", "confusion_loss", "ds_loss", "alignment_loss", "d1_accuracy",
                         "ds_accuracy", "d1_chance")


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class ModalityClassifier(tf.keras.layers.Layer):
    """An MLP over [..., d] vectors -> M modality logits, callable with its weights frozen.

    `frozen=True` stops the gradient to the classifier's own weights (not to its input): the encoder
    can minimise a loss through a discriminator without that loss training the discriminator.

    Args:
      hidden_units: hidden ReLU layer widths.
      num_classes: M.
    Input: [..., d]. Output: [..., M] logits.
    """

    def __init__(self, hidden_units: Sequence[int], num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = list(hidden_units)
        self.num_classes = num_classes

    def build(self, input_shape):
        widths = [int(input_shape[-1]), *self.hidden_units, self.num_classes]
        self.kernels = [self.add_weight(name=f"kernel_{i}", shape=(a, b), initializer="glorot_uniform")
                        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))]
        self.biases = [self.add_weight(name=f"bias_{i}", shape=(b,), initializer="zeros")
                       for i, b in enumerate(widths[1:])]
        super().build(input_shape)

    def call(self, inputs, frozen: bool = False):
        x = inputs
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            if frozen:
                kernel, bias = tf.stop_gradient(kernel), tf.stop_gradient(bias)
            x = tf.tensordot(x, kernel, axes=1) + bias
            if i < len(self.kernels) - 1:
                x = tf.nn.relu(x)
        return x

    def get_config(self) -> dict:
        return {**super().get_config(), "hidden_units": self.hidden_units, "num_classes": self.num_classes}


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class DoubleDiscriminator(tf.keras.layers.Layer):
    """D0 importance weights, D1 in a min-max game with the encoder, Ds, alignment; the invariant vector.

    Args:
      num_modalities: M.
      hidden_units: hidden layer widths of each discriminator MLP.
      grl_coefficient: the adversarial coefficient at the start (ramp it with `set_coefficient`).
      normalize_weights: scale w to mean 1 over the batch's present modalities.
      mode: "double" (D0, D1, Ds, alignment) or "single" (D1 only, w = 1).
      objective: "capped", "confusion" or "reversal" (see the module docstring).
      share_discriminator: Ds is D1's network (the paper) instead of its own.
      importance_weighting: "loss" (w weighs D1's per-vector loss) or "scale" (D1 sees w c).
      importance_floor: lower clip of w = 1 - D0(c)[m], in [0, 1].
      alignment_items: items of the batch the alignment term compares (the first ones); 0 turns it off.
      alignment_temperature: of the alignment term's cosine logits.
      margin: δ >= 0 of the capped objective, max(0, log M + δ - CE).
      specific_probe: Ds reads stop_gradient(s^m), so it only measures whether s^m keep their modality and
        trains nothing but itself; always so in "single" mode.

    Inputs: `invariant` [batch, M, d], `specific` [batch, M, d], `mask` [batch, M], and optionally
      `sample_weight` [batch].
    Output: a dict with
      "invariant" [batch, d]: c;  "importance" [batch, M]: w (0 where missing);
      the scalars of DISCRIMINATOR_OUTPUTS: the loss terms over present modalities, and
      "d1_accuracy" (near chance: c^m are modality-invariant) and "ds_accuracy" (near 1: s^m are not), and
      "d1_chance": the accuracy of a discriminator that knows nothing but how often each modality is present,
      so always names the most common one. It is 1/M only when every modality is present as often: with an
      image on 30% of items, a discriminator that always says "id" is right on more than 1/M of the vectors.
    """

    def __init__(self, num_modalities: int, hidden_units: Sequence[int] = (64,), grl_coefficient: float = 1.0,
                 normalize_weights: bool = True, mode: str = "double", objective: str = "capped",
                 share_discriminator: bool = False, importance_weighting: str = "loss",
                 importance_floor: float = 0.1, alignment_items: int = 256, alignment_temperature: float = 0.2,
                 margin: float = 0.0, specific_probe: bool = False, **kwargs):
        kwargs.setdefault("dtype", "float32")  # losses and weights stay float32 under mixed precision
        super().__init__(**kwargs)
        for name, value, choices in (("mode", mode, MODES), ("objective", objective, OBJECTIVES),
                                     ("importance_weighting", importance_weighting, IMPORTANCE_WEIGHTINGS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        self.num_modalities = num_modalities
        self.hidden_units = list(hidden_units)
        self.grl_coefficient = grl_coefficient
        self.normalize_weights = normalize_weights
        self.mode = mode
        self.objective = objective
        self.share_discriminator = share_discriminator
        self.importance_weighting = importance_weighting
        self.importance_floor = importance_floor
        self.alignment_items = alignment_items
        self.alignment_temperature = alignment_temperature
        self.margin = margin
        self.specific_probe = specific_probe or mode == "single"
        classifier = lambda name: ModalityClassifier(self.hidden_units, num_modalities, name=name,  # noqa: E731
                                                     dtype=self.dtype)
        self.d0 = classifier("d0") if mode == "double" else None
        self.d1 = classifier("d1")
        self.ds = self.d1 if share_discriminator else classifier("ds")
        self.gradient_reversal = GradientReversal(grl_coefficient, name="grl", dtype=self.dtype)

    def set_coefficient(self, value: float) -> None:
        """The adversarial coefficient: the reversal factor, or the weight of the confusion term."""
        self.gradient_reversal.set_coefficient(value)

    def call(self, inputs):
        invariant, specific, mask = inputs[:3]
        invariant, specific = tf.cast(invariant, tf.float32), tf.cast(specific, tf.float32)
        mask = tf.cast(mask, tf.float32)
        present = tf.cast(mask > 0, tf.float32)
        if len(inputs) > 3:
            mask *= tf.cast(inputs[3], tf.float32)[:, tf.newaxis]  # occurrences weigh each (item, modality)
        batch = tf.shape(invariant)[0]
        labels = tf.broadcast_to(tf.eye(self.num_modalities), [batch, self.num_modalities, self.num_modalities])

        def cross_entropy(logits, targets=labels):
            return tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)

        def accuracy(logits):
            correct = tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), tf.float32)
            return replica_share_of_mean(correct, mask)

        # the most common present modality over the global batch, weighed as the accuracies are; one scalar
        # all-reduce per modality, as every other reduction here (collectives of a second shape collide with a
        # later strategy's in the same process)
        present_counts = tf.reduce_sum(mask, axis=0)
        most_common = tf.argmax(tf.stack([cross_replica_sum(present_counts[m]) for m in range(self.num_modalities)]))
        guessed = tf.broadcast_to(tf.one_hot(most_common, self.num_modalities)[tf.newaxis, :], tf.shape(mask))
        chance = replica_share_of_mean(guessed, mask)

        if self.mode == "double":
            d0_logits = self.d0(tf.stop_gradient(invariant))
            own = tf.reduce_sum(tf.nn.softmax(d0_logits) * labels, axis=-1)  # D0(c^m)[m]
            importance = tf.clip_by_value(tf.stop_gradient(1.0 - own), self.importance_floor, 1.0) * present
            if self.normalize_weights:
                importance = importance / tf.maximum(tf.stop_gradient(global_mean(importance, mask)), 1e-6)
            d0_loss = replica_share_of_mean(cross_entropy(d0_logits), mask)
        else:
            importance, d0_loss = present, tf.constant(0.0)

        weighted = importance[:, :, tf.newaxis] * invariant
        if self.importance_weighting == "scale":
            d1_input, d1_weight = weighted, mask
        else:
            d1_input, d1_weight = invariant, mask * importance
        coefficient = tf.cast(self.gradient_reversal.coefficient_variable, tf.float32)
        if self.objective == "reversal":
            d1_logits = self.d1(self.gradient_reversal(d1_input))
            confusion_loss = tf.constant(0.0)
        else:
            d1_logits = self.d1(tf.stop_gradient(d1_input))
            frozen_logits = self.d1(d1_input, frozen=True)
            if self.objective == "capped":
                cap = tf.math.log(float(self.num_modalities)) + self.margin
                confused = tf.nn.relu(cap - cross_entropy(frozen_logits))
            else:
                confused = cross_entropy(frozen_logits, tf.fill(tf.shape(labels), 1.0 / self.num_modalities))
            confusion_loss = coefficient * replica_share_of_mean(confused, d1_weight)
        d1_loss = replica_share_of_mean(cross_entropy(d1_logits), d1_weight)

        if self.specific_probe:
            specific = tf.stop_gradient(specific)
        ds_logits = self.ds(specific)
        ds_loss = replica_share_of_mean(cross_entropy(ds_logits), mask)
        alignment_loss = self._alignment(invariant, mask) if self.mode == "double" else tf.constant(0.0)

        total = tf.reduce_sum(importance, axis=1, keepdims=True)
        return {
            "invariant": tf.math.divide_no_nan(tf.reduce_sum(weighted, axis=1), total),
            "importance": importance,
            "d0_loss": d0_loss, "d1_loss": d1_loss, "confusion_loss": confusion_loss, "ds_loss": ds_loss,
            "alignment_loss": alignment_loss,
            "d1_accuracy": accuracy(d1_logits), "ds_accuracy": accuracy(ds_logits), "d1_chance": chance,
        }

    def _alignment(self, invariant, mask):
        """InfoNCE between each pair of an item's invariant vectors, this replica's other items as negatives."""
        if not self.alignment_items or self.num_modalities < 2:  # nothing to align
            return tf.constant(0.0)
        z = tf.math.l2_normalize(invariant[:self.alignment_items], axis=-1)
        weight = mask[:self.alignment_items]
        present = weight > 0
        terms, weights = [], []
        for m in range(self.num_modalities):
            for n in range(self.num_modalities):
                if m == n:
                    continue
                logits = tf.matmul(z[:, m], z[:, n], transpose_b=True) / self.alignment_temperature
                logits = tf.where(present[tf.newaxis, :, n], logits, -1e9)  # only items that have modality n
                rows = tf.range(tf.shape(logits)[0])
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=rows, logits=logits)
                terms.append(loss)
                weights.append(tf.where(present[:, m] & present[:, n], weight[:, m], 0.0))
        return replica_share_of_mean(tf.concat(terms, 0), tf.concat(weights, 0))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_modalities": self.num_modalities, "hidden_units": self.hidden_units,
                "grl_coefficient": self.grl_coefficient, "normalize_weights": self.normalize_weights,
                "mode": self.mode, "objective": self.objective, "share_discriminator": self.share_discriminator,
                "importance_weighting": self.importance_weighting, "importance_floor": self.importance_floor,
                "alignment_items": self.alignment_items, "alignment_temperature": self.alignment_temperature,
                "margin": self.margin, "specific_probe": self.specific_probe}
