"""The item encoder: modality embeddings -> one item representation, for every rung of the ablation ladder.

    fusion "raw_concat" (DIN baseline):  rep = [e^1, ..., e^M]                  (missing modalities zeroed)
    fusion "concat":                      rep = W [s^1, ..., s^M]                every modality a fixed weight
    fusion "attention" (MAN):             rep = s = sum_m a^m ⊙ s^m
      + discriminators "single" (MAAN):   rep = s + c,  c from D1 alone (w = 1)
      + discriminators "double" (MARN):   rep = s + c,  c = sum_m w^m c^m / sum_m w^m with D0 weights

`invariant_residual="gated"` (not in the paper) adds the invariant part through a learned per-dimension gate that
starts closed, rep = s + γ ⊙ c with γ = 0 at the start (ReZero's residual): the model begins as MAN and
opens γ only as far as c helps the click loss, while the adversarial and alignment terms shape c from
the first step. With a plain sum (the paper) c enters at full strength while the game is still young.
`invariant_residual="attended"` (not in the paper) gives c a slot of its own in the modality attention, rep =
sum_m a^m ⊙ s^m + a^c ⊙ c, so with a softmax gate c competes with the s^m for the item's shares
instead of being added beside their convex combination.

`raw_path=True` (not in the paper) keeps DIN's representation as the base and adds the rung's own through a gate that
starts closed, rep = [e^1, ..., e^M, g ⊙ r] with r the rung's representation above and g = 0 at the start: an
untrained encoder is DIN's, and training opens g only where the click loss gains. `raw_units` n > 0 maps the base
through R, a linear map to n columns, once per item: a narrower representation to carry to every behaviour position
and into the prediction MLP, at the cost of what R drops. The invariant branch then reads the embeddings through a
stop-gradient, so the adversarial game and the alignment shape P_m and I but never the e^m that the raw path and
the specific projections share.

The same encoder (same variables) serves candidate and behaviour items. `modality_dropout` (training
only) hides each present modality of an item with that probability, never all of them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from marn_tf.layers.double_discriminator import DISCRIMINATOR_OUTPUTS, DoubleDiscriminator
from marn_tf.layers.modality_attention import ModalityAttention
from marn_tf.layers.modality_embedding import ModalityEmbeddings
from marn_tf.layers.modality_projection import ModalityProjection

FUSIONS = ("raw_concat", "concat", "attention")
DISCRIMINATORS = ("none", "single", "double")
INVARIANT_RESIDUALS = ("add", "gated", "attended")
AUXILIARY_OUTPUTS = DISCRIMINATOR_OUTPUTS


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class ItemEncoder(tf.keras.layers.Layer):
    """Modality embeddings, projections, attention and discriminators of a batch of items.

    Args:
      embeddings: the `ModalityEmbeddings` config (what the item table holds).
      fusion: "raw_concat", "concat" or "attention".
      discriminators: "none", "single" or "double" (with fusion "attention" only).
      units, common_units: widths of s^m / c^m and of P_m.
      normalize_modalities: `ModalityProjection`'s per-modality input normalisation.
      attention_gate, attention_normalize, attention_context, attention_bias, attention_unit_scale, attention_cost:
        `ModalityAttention` options (gate, normalize, context, bias_initializer, unit_scale, cost).
      discriminator_hidden, grl_coefficient, normalize_importance: `DoubleDiscriminator` options.
      adversarial: the other `DoubleDiscriminator` options (objective, share_discriminator, ...).
      modality_dropout: training-time rate of hiding a present modality.
      invariant_residual: "add" (rep = s + c, the paper), "gated" (rep = s + γ ⊙ c, γ learned from 0) or
        "attended" (c one more slot of the attention).
      raw_path: with fusion "concat" or "attention", rep = [raw concatenation, g ⊙ rep] with g learned from 0.
      raw_units: 0: no R, the base is the raw concatenation itself; n > 0: R's width; None: `units`.

    Inputs: `content` (a dict: "item_index" [items] and the item table columns) and `occurrences` [items],
      how often each item occurs in the batch (weighs the discriminators, the embeddings' L2 and the attention
      cost, so that encoding each distinct item once changes no loss).
    Output: a dict with "representation" [items, width], "modality_weights" [items, M] (mean |a^m| over
      the dimensions; 1 for fixed-weight fusion), "importance" [items, M] (D0's w; 1 without it),
      "modality_mask" [items, M], and the scalars of AUXILIARY_OUTPUTS (0 without discriminators).
    """

    def __init__(self, embeddings: dict, fusion: str = "attention", discriminators: str = "double", units: int = 64,
                 common_units: int = 64, attention_gate: str = "vector", attention_normalize: str = "none",
                 discriminator_hidden: Sequence[int] = (64,), grl_coefficient: float = 1.0,
                 normalize_importance: bool = True, modality_dropout: float = 0.0, normalize_modalities: bool = True,
                 attention_context: str = "own", attention_bias: float = 0.0, adversarial: Optional[dict] = None,
                 invariant_residual: str = "add", attention_unit_scale: bool = False, attention_cost: float = 0.0,
                 raw_path: bool = False, raw_units: Optional[int] = 0, **kwargs):
        super().__init__(**kwargs)
        if fusion not in FUSIONS or discriminators not in DISCRIMINATORS:
            raise ValueError(f"fusion must be one of {FUSIONS} and discriminators one of {DISCRIMINATORS}")
        if discriminators != "none" and fusion != "attention":
            raise ValueError("discriminators need fusion='attention' (the invariant part adds to the attended one)")
        if invariant_residual not in INVARIANT_RESIDUALS:
            raise ValueError(f"invariant_residual must be one of {INVARIANT_RESIDUALS}, got {invariant_residual!r}")
        self.embeddings_config = dict(embeddings)
        self.fusion = fusion
        self.discriminators = discriminators
        self.units = units
        self.common_units = common_units
        self.attention_gate = attention_gate
        self.attention_normalize = attention_normalize
        self.discriminator_hidden = list(discriminator_hidden)
        self.grl_coefficient = grl_coefficient
        self.normalize_importance = normalize_importance
        self.modality_dropout = modality_dropout
        self.normalize_modalities = normalize_modalities
        self.attention_context = attention_context
        self.attention_bias = attention_bias
        self.adversarial = dict(adversarial or {})
        self.invariant_residual = invariant_residual
        self.attention_unit_scale = attention_unit_scale
        self.attention_cost = attention_cost
        self.raw_path = raw_path and fusion != "raw_concat"
        self.raw_units = raw_units

        self.embeddings = ModalityEmbeddings(**self.embeddings_config, name="modality_embeddings")
        self.num_modalities = len(self.embeddings.modalities)
        if fusion != "raw_concat":
            self.projection = ModalityProjection(self.num_modalities, units, common_units,
                                                 with_invariant=discriminators != "none",
                                                 normalize_inputs=normalize_modalities,
                                                 isolate_invariant=self.raw_path, name="projection")
        if self.raw_path and raw_units != 0:
            self.raw_projection = tf.keras.layers.Dense(raw_units or units, use_bias=False, name="raw_projection")
        if fusion == "concat":
            self.concat_projection = tf.keras.layers.Dense(units, activation="relu", name="concat_projection")
        if fusion == "attention":
            slots = self.num_modalities + (discriminators != "none" and invariant_residual == "attended")
            self.attention = ModalityAttention(slots, gate=attention_gate, normalize=attention_normalize,
                                               context=attention_context, bias_initializer=attention_bias,
                                               unit_scale=attention_unit_scale, cost=attention_cost,
                                               name="modality_attention")
        if discriminators != "none":
            self.discriminator = DoubleDiscriminator(self.num_modalities, self.discriminator_hidden, grl_coefficient,
                                                     normalize_importance, mode=discriminators,
                                                     **self.adversarial, name="double_discriminator")

    def build(self, input_shape):
        if self.discriminators != "none" and self.invariant_residual == "gated":
            self.invariant_gate = self.add_weight(name="invariant_gate", shape=(self.units,), initializer="zeros")
        if self.raw_path:
            self.path_gate = self.add_weight(name="path_gate", shape=(self.units,), initializer="zeros")
        super().build(input_shape)

    @property
    def modalities(self) -> list[str]:
        return self.embeddings.modalities

    def _drop_modalities(self, mask):
        draw = tf.random.uniform(tf.shape(mask))
        kept = mask * tf.cast(draw >= self.modality_dropout, mask.dtype)
        # all dropped: keep the present modality that drew the highest number
        one = tf.one_hot(tf.argmax(tf.where(mask > 0, draw, -1.0), axis=1), self.num_modalities, dtype=mask.dtype)
        return tf.where(tf.reduce_sum(kept, axis=1, keepdims=True) > 0, kept, one * mask)

    def modality_vectors(self, content, training=None, occurrences=None) -> dict:
        """The embeddings e^m (list), "specific" s^m and "invariant" c^m [items, M, d] (None where the fusion has
        none) and "mask" [items, M]: what the quality benchmark inspects (spread, cross-modal agreement)."""
        embeddings, mask = self.embeddings(content, occurrences=occurrences)
        if training and self.modality_dropout > 0:
            mask = self._drop_modalities(mask)
        specific = invariant = None
        if self.fusion != "raw_concat":
            projected = self.projection(embeddings)
            specific, invariant = projected if self.discriminators != "none" else (projected, None)
        return {"embeddings": embeddings, "specific": specific, "invariant": invariant, "mask": mask}

    def call(self, inputs, training=None):
        content, occurrences = inputs
        vectors = self.modality_vectors(content, training, occurrences)
        embeddings, specific, invariant, mask = (vectors[k] for k in ("embeddings", "specific", "invariant", "mask"))
        scalars = {key: tf.constant(0.0) for key in AUXILIARY_OUTPUTS}
        fixed_weights = mask
        importance = mask
        raw = tf.concat([e * mask[:, m:m + 1] for m, e in enumerate(embeddings)], axis=-1)
        if self.fusion == "raw_concat":
            representation = raw
        elif self.fusion == "concat":
            specific = specific * mask[:, :, tf.newaxis]
            representation = self.concat_projection(tf.reshape(specific, [-1, self.num_modalities * self.units]))
        elif self.discriminators != "none" and self.invariant_residual == "attended":
            # Its own branch: c must exist before the attention runs, while the other forms keep their order of
            # layer calls (and so of weight initialisation) as before this option.
            adversarial = self.discriminator([invariant, specific, mask, occurrences])
            invariant_part = tf.cast(adversarial["invariant"], specific.dtype)[:, tf.newaxis]
            has_any = tf.cast(tf.reduce_sum(mask, axis=1, keepdims=True) > 0, mask.dtype)
            representation, weights = self.attention([tf.concat([specific, invariant_part], axis=1),
                                                      tf.concat([mask, has_any], axis=1)], occurrences=occurrences)
            fixed_weights = tf.reduce_mean(tf.abs(weights[:, :self.num_modalities]), axis=-1)
            importance = tf.cast(adversarial["importance"], mask.dtype)
            scalars = {key: adversarial[key] for key in AUXILIARY_OUTPUTS}
        else:
            representation, weights = self.attention([specific, mask], occurrences=occurrences)
            fixed_weights = tf.reduce_mean(tf.abs(weights), axis=-1)  # tanh gates may be negative: magnitude
            if self.discriminators != "none":
                adversarial = self.discriminator([invariant, specific, mask, occurrences])
                invariant_part = tf.cast(adversarial["invariant"], representation.dtype)
                if self.invariant_residual == "gated":
                    invariant_part *= tf.cast(self.invariant_gate, representation.dtype)
                representation += invariant_part
                importance = tf.cast(adversarial["importance"], mask.dtype)
                scalars = {key: adversarial[key] for key in AUXILIARY_OUTPUTS}
        if self.raw_path:
            gate = tf.cast(self.path_gate, representation.dtype)
            base = tf.cast(self.raw_projection(raw) if self.raw_units != 0 else raw, representation.dtype)
            representation = tf.concat([base, gate * representation], axis=-1)
        return {"representation": representation, "modality_weights": fixed_weights, "importance": importance,
                "modality_mask": mask, **scalars}

    def get_config(self) -> dict:
        return {**super().get_config(), "embeddings": self.embeddings_config, "fusion": self.fusion,
                "discriminators": self.discriminators, "units": self.units, "common_units": self.common_units,
                "attention_gate": self.attention_gate, "attention_normalize": self.attention_normalize,
                "discriminator_hidden": self.discriminator_hidden, "grl_coefficient": self.grl_coefficient,
                "normalize_importance": self.normalize_importance, "modality_dropout": self.modality_dropout,
                "normalize_modalities": self.normalize_modalities, "attention_context": self.attention_context,
                "attention_bias": self.attention_bias, "adversarial": self.adversarial,
                "invariant_residual": self.invariant_residual, "attention_unit_scale": self.attention_unit_scale,
                "attention_cost": self.attention_cost, "raw_path": self.raw_path,
                "raw_units": self.raw_units}
