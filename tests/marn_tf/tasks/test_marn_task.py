"""MARN's loss: the weights follow the structure, and each term is what its equation says."""
import numpy as np
import tensorflow as tf

from marn_tf.model_config import ModelConfig
from marn_tf.tasks.marn_task import MarnTask, loss_weights

NONE = dict.fromkeys(("d0_loss", "d1_loss", "confusion_loss", "ds_loss", "alignment_loss"), 0.0)


def test_loss_weights_follow_the_ladder():
    assert loss_weights(ModelConfig(variant="man")) == NONE
    # maan: Ds is trained as a probe (its input is stop-gradient, test_double_discriminator), whatever lambda_s
    assert loss_weights(ModelConfig(variant="maan", lambda_adv=0.5)) == {**NONE, "d1_loss": 0.5,
                                                                          "confusion_loss": 0.5, "ds_loss": 1.0}
    assert loss_weights(ModelConfig(variant="marn", lambda_d0=0.2, lambda_adv=0.5, lambda_s=0.1,
                                    lambda_align=0.3)) == {
        "d0_loss": 0.2, "d1_loss": 0.5, "confusion_loss": 0.5, "ds_loss": 0.1, "alignment_loss": 0.3}
    # marn with lambda_s 0 (the default): Ds is a probe as in maan, trained at weight 1 on stop_gradient(s^m)
    assert loss_weights(ModelConfig(variant="marn"))["ds_loss"] == 1.0


def test_each_term_and_the_total():
    weights = {**NONE, "d1_loss": 0.5, "alignment_loss": 2.0}
    task = MarnTask(weights)
    labels = tf.constant([1, 0, 1, 0])
    logits = tf.constant([2.0, -1.0, 0.5, 0.3])
    outputs = {"logit": logits, **{k: tf.constant(1.0) for k in NONE}, "d1_loss": tf.constant(0.8),
               "alignment_loss": tf.constant(0.25)}
    losses = task(labels, outputs, [tf.constant(0.3), tf.constant(0.1)], training=True)
    p = 1 / (1 + np.exp(-logits.numpy()))
    y = labels.numpy()
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(losses["ctr_loss"].numpy(), bce, rtol=1e-5)
    # only the weighted outputs count: d0, confusion and ds (1.0 each) have weight 0
    np.testing.assert_allclose(losses["discriminator_loss"].numpy(), 0.5 * 0.8 + 2.0 * 0.25, rtol=1e-6)
    np.testing.assert_allclose(losses["regularization_loss"].numpy(), 0.4, rtol=1e-6)
    np.testing.assert_allclose(losses["total_loss"].numpy(), bce + 0.9 + 0.4, rtol=1e-5)
    assert float(MarnTask(NONE)(labels, outputs)["regularization_loss"]) == 0.0
    # the task tracks the AUC of what it scored (labels 1 at logits 2.0 and 0.5 above both 0s: AUC 1)
    assert [m.name for m in task.metrics] == ["auc"] and float(task.metrics[0].result()) == 1.0
