"""MARN's loss, as a tfrs-style task: the network's outputs and the labels in, each loss term out.

    L = L_ctr + lambda_d0 L_D0 + lambda_adv (L_D1 + L_confusion) + lambda_s L_Ds + lambda_align L_align + L_reg

L_ctr is `tfrs.tasks.Ranking` with a from-logits binary cross-entropy (it also tracks the AUC). The
discriminator terms are outputs of the item tower (`DoubleDiscriminator`), built so that one descent step
on L is the min-max game (`marn_tf/models/marn_model.py` says how); here they are only weighted. L_reg is
the layers' own losses (`model.embedding_l2`).

Under `tf.distribute` every term is this replica's share of the global batch mean (the CTR loss via
`tf.nn.compute_average_loss`, L_reg via `tf.nn.scale_regularization_loss`, the discriminator terms already
so), so the optimizer's sum over replicas is the gradient of the global-batch loss.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from marn_tf.model_config import ModelConfig


DS_PROBE_WEIGHT = 1.0


def loss_weights(config: ModelConfig) -> dict[str, float]:
    """lambda of each discriminator loss; 0 where the structure has no such discriminator."""
    mode = config.discriminators
    return {"d0_loss": config.lambda_d0 if mode == "double" else 0.0,
            "d1_loss": config.lambda_adv if mode != "none" else 0.0,
            "confusion_loss": config.lambda_adv if mode != "none" else 0.0,
            # a probe on stop_gradient(s^m) trains only Ds, so that its accuracy says whether s^m keep their
            # modality; with weight 0 it was never trained and read ~chance
            "ds_loss": 0.0 if mode == "none" else DS_PROBE_WEIGHT if config.specific_probe else config.lambda_s,
            "alignment_loss": config.lambda_align if mode == "double" else 0.0}


class MarnTask(tf.keras.layers.Layer):
    """Args: weights: lambda of each discriminator output (`loss_weights`).

    Call: `labels` [batch] (0/1), `outputs` (the network's dict: "logit" [batch] and the discriminator scalars),
      `regularization` (the network's `losses`), `training`.
    Returns: this replica's "ctr_loss", "discriminator_loss", "regularization_loss" and "total_loss".
    """

    def __init__(self, weights: dict[str, float], **kwargs):
        super().__init__(**kwargs)
        self.loss_weights = dict(weights)
        self.ranking = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
            metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")])

    def call(self, labels, outputs: dict, regularization: Sequence[tf.Tensor] = (), training: bool = False) -> dict:
        per_example = self.ranking(labels=tf.cast(labels, tf.float32)[:, tf.newaxis],
                                   predictions=outputs["logit"][:, tf.newaxis], training=training)
        losses = {"ctr_loss": tf.nn.compute_average_loss(per_example),
                  "discriminator_loss": tf.add_n([w * outputs[k] for k, w in self.loss_weights.items()]),
                  "regularization_loss": (tf.nn.scale_regularization_loss(tf.add_n(list(regularization)))
                                          if regularization else tf.constant(0.0))}
        losses["total_loss"] = losses["ctr_loss"] + losses["discriminator_loss"] + losses["regularization_loss"]
        return losses
