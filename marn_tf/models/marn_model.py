"""The training model: the network, the task that computes its loss (`marn_tf/tasks/marn_task.py`), and the
adversarial train step (tfrs.Model pattern).

The discriminator terms of the loss come from the item tower (`DoubleDiscriminator`), built so that one
descent step on L is the min-max game: L_D1 reaches only D1 (its input is stop-gradient) and L_confusion only the
encoder (D1's weights frozen in it); with the paper's gradient reversal L_confusion is 0 and the
reversal layer turns L_D1's gradient for the encoder around.

Two optimizers, as a `tfrs.experimental.optimizers.CompositeOptimizer`: one for the discriminators (D0,
D1/Ds), one for everything else. `update="joint"` (default) applies both in one step on L.
`update="alternating"` first steps the discriminators on their own losses, then the rest on L with
the discriminators fixed.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from marn_tf.layers.gradient_reversal import dann_ramp
from marn_tf.layers.item_encoder import AUXILIARY_OUTPUTS
from marn_tf.model_config import ModelConfig
from marn_tf.train_config import TrainConfig
from marn_tf.tasks.marn_task import MarnTask, loss_weights


class CompositeOptimizer(tfrs.experimental.optimizers.CompositeOptimizer):
    """tfrs' CompositeOptimizer whose `apply_gradients` returns an op, as Keras' LossScaleOptimizer (mixed_float16)
    needs for its skip-on-overflow branch."""

    def apply_gradients(self, grads_and_vars, name=None, experimental_aggregate_gradients=True):
        super().apply_gradients(grads_and_vars, name, experimental_aggregate_gradients)
        return tf.no_op()


class MarnModel(tfrs.Model):
    """Wraps the functional network with MARN's loss and train/test steps.

    Args:
      network: the training graph (`Network.core` of `marn_tf.models.network.build_network`).
      config: the `model:` section (loss weights, variant).
      update: "joint" or "alternating".
      modalities: names of the M modalities, for the per-modality weight metrics.
      inference: the graph validation runs (`Network.inference`: the same weights); default `network`.
    """

    def __init__(self, network: tf.keras.Model, config: ModelConfig, update: str = "joint",
                 modalities: list[str] = (), inference: tf.keras.Model | None = None):
        super().__init__()
        self.network = network
        self.inference = inference or network
        self.config = config
        self.update = update
        self.modalities = list(modalities)
        self.task = MarnTask(loss_weights(config), name="marn_task")
        self.trackers = {name: tf.keras.metrics.Mean(name=name)
                         for name in ["ctr_loss", "regularization_loss", "total_loss", *AUXILIARY_OUTPUTS]}
        self.weight_trackers = {m: tf.keras.metrics.Mean(name=f"weight_{m}") for m in self.modalities}
        self.weight_average = None  # a training.weight_average.WeightAverage, updated after every step when set

    def call(self, features, training=None):
        network = self.network if training else self.inference
        return network({k: features[k] for k in network.input_names}, training=training)

    @property
    def discriminator_variables(self) -> list[tf.Variable]:
        encoder = self.network.get_layer("item_tower").encoder
        return list(encoder.discriminator.trainable_variables) if encoder.discriminators != "none" else []

    @property
    def model_variables(self) -> list[tf.Variable]:
        excluded = {v.ref() for v in self.discriminator_variables}
        return [v for v in self.trainable_variables if v.ref() not in excluded]

    def make_optimizer(self, train: TrainConfig, decay_steps: int = 0) -> CompositeOptimizer:
        """The model's and the discriminators' optimizers; with `decay_steps` > 0 both rates follow a cosine to 0
        over that many of their steps."""
        kind = {"adam": tf.keras.optimizers.legacy.Adam, "adagrad": tf.keras.optimizers.legacy.Adagrad,
                "sgd": tf.keras.optimizers.legacy.SGD}[train.optimizer]
        def rate(initial: float):
            if not decay_steps:
                return initial
            return tf.keras.optimizers.schedules.CosineDecay(initial, decay_steps, alpha=0.0)

        return CompositeOptimizer([
            (kind(rate(train.learning_rate)), lambda: self.model_variables),
            (kind(rate(train.discriminator_learning_rate)), lambda: self.discriminator_variables),
        ])

    # -- loss ------------------------------------------------------------------------------------------------
    def compute_losses(self, inputs, training: bool = False) -> dict[str, tf.Tensor]:
        """This replica's share of each loss term and of the total; updates the metrics."""
        features, labels = inputs
        outputs = self(features, training=training)
        losses = self.task(labels, outputs, self.network.losses, training=training)
        self._track(losses, outputs)
        return losses

    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        return self.compute_losses(inputs, training)["total_loss"]

    def _track(self, losses, outputs) -> None:
        # Every scalar is a replica's share of the global mean: times the replicas, the Mean tracker
        # (averaged over replicas) reports the global value.
        replicas = tf.cast(tf.distribute.get_strategy().num_replicas_in_sync, tf.float32)
        for key in ("ctr_loss", "regularization_loss", "total_loss"):
            self.trackers[key].update_state(losses[key] * replicas)
        for key in AUXILIARY_OUTPUTS:
            self.trackers[key].update_state(outputs[key] * replicas)
        mask = outputs["modality_mask"]
        for m, name in enumerate(self.modalities):
            self.weight_trackers[name].update_state(outputs["modality_weights"][:, m], sample_weight=mask[:, m])

    # -- steps -----------------------------------------------------------------------------------------------
    def ramp_adversarial_coefficient(self, inputs) -> tf.Tensor | None:
        """Sets lambda for this step from the DANN schedule over `model.adversarial_ramp_steps` steps of the
        optimizer's counter, then `model.grl_coefficient` (with `grl_ramp: false`, from the start). In the step,
        not in a callback: resume-safe, and under ParameterServerStrategy each asynchronous worker's step sets it
        from the shared counter (batch-level callbacks do not run there)."""
        if not self.discriminator_variables:
            return None
        # after the batch is read: a call that finds the input exhausted must not set it
        with tf.control_dependencies(tf.nest.flatten(inputs)[:1]):
            coefficient = tf.identity(
                dann_ramp(self.optimizer.iterations / self.config.adversarial_ramp_steps, self.config.grl_coefficient)
                if self.config.grl_ramp else tf.constant(self.config.grl_coefficient, tf.float32))
        self.network.get_layer("item_tower").encoder.discriminator.set_coefficient(coefficient)
        return coefficient

    def train_step(self, inputs):
        coefficient = self.ramp_adversarial_coefficient(inputs)
        if self.update == "alternating" and self.discriminator_variables:
            model_optimizer, discriminator_optimizer = self.optimizer.optimizers
            with tf.GradientTape() as tape:
                outputs = self(inputs[0], training=True)
                discriminator_loss = tf.add_n([outputs[k] for k, w in self.task.loss_weights.items() if w > 0])
            gradients = tape.gradient(discriminator_loss, self.discriminator_variables)
            discriminator_optimizer.apply_gradients(zip(gradients, self.discriminator_variables))
            with tf.GradientTape() as tape:
                losses = self.compute_losses(inputs, training=True)
            gradients = tape.gradient(losses["total_loss"], self.model_variables)
            model_optimizer.apply_gradients(zip(gradients, self.model_variables))
        else:
            scaled = hasattr(self.optimizer, "get_scaled_loss")  # mixed_float16: a LossScaleOptimizer
            with tf.GradientTape() as tape:
                loss = self.compute_losses(inputs, training=True)["total_loss"]
                if scaled:
                    loss = self.optimizer.get_scaled_loss(loss)
            gradients = tape.gradient(loss, self.trainable_variables)
            if scaled:
                gradients = self.optimizer.get_unscaled_gradients(gradients)
            self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        if self.weight_average is not None:
            self.weight_average.update(self.optimizer.iterations)
        logs = {m.name: m.result() for m in self.metrics}
        if coefficient is not None:
            logs["grl_coefficient"] = coefficient  # TensorBoard and the history pick it up
        return logs

    def test_step(self, inputs):
        self.compute_losses(inputs, training=False)
        return {m.name: m.result() for m in self.metrics}
