"""Specific and invariant projections of the modality embeddings.

For item i and modality m with embedding e_i^m (widths differ between modalities):

    s_i^m = S_m(N_m(e_i^m))         one specific projector per modality
    c_i^m = I(P_m(N_m(e_i^m)))      P_m maps each modality to a common width; I is shared by all

N_m is a per-modality layer normalisation (`normalize_inputs`, default on; off is the paper): raw
image vectors come ~10x larger than learned embeddings, which otherwise decides the attention and the
invariant projector's input scale before anything is learned.

Sharing I is what lets the adversarial game make c^m modality-invariant: the same function has to
serve every modality. The outputs are stacked over modalities for the attention and discriminators.
"""
from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="marn_tf")
class ModalityProjection(tf.keras.layers.Layer):
    """Per-modality specific projectors and one shared invariant projector.

    Args:
      num_modalities: M; the layer takes a list of M embeddings.
      units: width d of the specific and invariant vectors (`model.units`: 64; 256 in the paper).
      common_units: width P_m maps every modality to before the shared I.
      activation: of every projection.
      with_invariant: False for the variants without an invariant part (no P_m, no I).
      normalize_inputs: layer-normalise each modality's embedding first.
      isolate_invariant: the invariant branch reads the embeddings through a stop-gradient, so the losses on c^m
        (the adversarial game, the alignment) train P_m and I but never move the embeddings e^m.

    Inputs: a list of M tensors [batch, width_m].
    Outputs: `specific` [batch, M, d] and `invariant` [batch, M, d]; `specific` alone without invariant.
    """

    def __init__(self, num_modalities: int, units: int = 64, common_units: int = 64, activation: str = "relu",
                 with_invariant: bool = True, normalize_inputs: bool = True, isolate_invariant: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_modalities = num_modalities
        self.units = units
        self.common_units = common_units
        self.activation = activation
        self.with_invariant = with_invariant
        self.normalize_inputs = normalize_inputs
        self.isolate_invariant = isolate_invariant
        self.normalizers = [tf.keras.layers.LayerNormalization(name=f"normalize_{m}")
                            for m in range(num_modalities)] if normalize_inputs else []
        self.specific = [tf.keras.layers.Dense(units, activation=activation, name=f"specific_{m}")
                         for m in range(num_modalities)]
        if not with_invariant:
            return
        self.to_common = [tf.keras.layers.Dense(common_units, activation=activation, name=f"common_input_{m}")
                          for m in range(num_modalities)]
        self.invariant = tf.keras.layers.Dense(units, activation=activation, name="shared_invariant")

    def call(self, embeddings):
        if len(embeddings) != self.num_modalities:
            raise ValueError(f"expected {self.num_modalities} modality embeddings, got {len(embeddings)}")
        if self.normalize_inputs:
            embeddings = [n(e) for n, e in zip(self.normalizers, embeddings)]
        specific = tf.stack([s(e) for s, e in zip(self.specific, embeddings)], axis=1)
        if not self.with_invariant:
            return specific
        if self.isolate_invariant:
            embeddings = [tf.stop_gradient(e) for e in embeddings]
        invariant = tf.stack([self.invariant(p(e)) for p, e in zip(self.to_common, embeddings)], axis=1)
        return specific, invariant

    def get_config(self) -> dict:
        return {**super().get_config(), "num_modalities": self.num_modalities, "units": self.units,
                "common_units": self.common_units, "activation": self.activation,
                "with_invariant": self.with_invariant, "normalize_inputs": self.normalize_inputs,
                "isolate_invariant": self.isolate_invariant}
