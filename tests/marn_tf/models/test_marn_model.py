"""The training model: the adversarial step, exactness under MirroredStrategy."""
import numpy as np
import pytest
import tensorflow as tf

from marn_tf.data.input import make_dataset
from marn_tf.training.task import CtrTask
from marn_tf.training.training_run import indexed
from tests.testing import with_model, with_train

pytestmark = pytest.mark.integration


def make_model(prepared, strategy, update="joint", optimizer="sgd", **model_options):
    """The model `marn train` builds (CtrTask), in `strategy`'s scope."""
    config, data, _ = prepared
    config = with_train(with_model(config, **model_options), optimizer=optimizer, learning_rate=0.5,
                        discriminator_learning_rate=0.5, update=update)
    task = CtrTask(config, data)
    with strategy.scope():
        network = task.build_network()
        model = task.build_model(network)
    return model, network


def one_batch(prepared, network, size=32):
    config, data, schema = prepared
    return indexed(make_dataset(data, schema, "train", size, shuffle=False, deterministic=True), network).take(1)


def test_two_replicas_step_like_one_on_the_same_global_batch(prepared):
    tf.keras.utils.set_random_seed(0)
    # The alignment term takes its negatives from the replica's own items, and dropout draws its own masks on
    # each replica, so those two are off here: everything else must be exact. Ds trains the specific projections
    # (lambda_s > 0), which the first step moves through nothing else while the raw path's gate is 0.
    exact = {"lambda_align": 0.0, "dropout": 0.0, "lambda_s": 0.1}
    single, network = make_model(prepared, tf.distribute.get_strategy(), **exact)
    mirrored, _ = make_model(prepared, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), **exact)
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2
    mirrored.network.set_weights(single.network.get_weights())
    before = single.network.get_weights()
    data = one_batch(prepared, network)
    logs_1 = single.fit(data, epochs=1, verbose=0).history
    logs_2 = mirrored.fit(data, epochs=1, verbose=0).history
    for key in ("total_loss", "ctr_loss", "d0_loss", "d1_loss", "confusion_loss", "ds_loss", "d1_accuracy"):
        np.testing.assert_allclose(logs_2[key], logs_1[key], rtol=1e-4, err_msg=key)
    moved = 0
    names = [w.name for w in single.network.weights]
    for a, b, start, name in zip(single.network.get_weights(), mirrored.network.get_weights(), before, names):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5, err_msg=name)
        moved += not np.allclose(a, start)
    assert moved > len(before) // 2  # the step did update the weights it compares


def test_alternating_updates_both_groups(prepared):
    # lambda_s > 0: Ds's loss reaches the specific projections, which the first step moves through nothing else
    model, network = make_model(prepared, tf.distribute.get_strategy(), update="alternating", optimizer="adam",
                                lambda_s=0.1)
    discriminator = [v.numpy().copy() for v in model.discriminator_variables]
    rest = [v.numpy().copy() for v in model.model_variables]
    model.fit(one_batch(prepared, network), epochs=1, verbose=0)
    assert discriminator and all(not np.allclose(a, v.numpy()) for a, v in zip(discriminator, model.discriminator_variables))
    assert sum(not np.allclose(a, v.numpy()) for a, v in zip(rest, model.model_variables)) > len(rest) // 2


@pytest.mark.parametrize("ramp", [True, False])
def test_the_step_ramps_the_adversarial_coefficient_from_the_step_counter(prepared, ramp):
    from marn_tf.layers.gradient_reversal import dann_ramp

    model, network = make_model(prepared, tf.distribute.get_strategy(), grl_ramp=ramp, adversarial_ramp_steps=10,
                                grl_coefficient=0.8)
    discriminator = network.item_tower.encoder.discriminator
    seen = []
    for _ in range(3):  # each step sets lambda from the counter before it, as the forward pass reads it
        seen.append(model.fit(one_batch(prepared, network), epochs=1, verbose=0).history["grl_coefficient"][0])
    expected = [float(dann_ramp(step / 10, 0.8)) if ramp else 0.8 for step in range(3)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert discriminator.gradient_reversal.current_coefficient == pytest.approx(expected[-1])
    if ramp:
        assert seen[0] == 0.0 and seen == sorted(seen) and float(dann_ramp(5.0, 0.8)) == pytest.approx(
            0.8 * (2 / (1 + np.exp(-10)) - 1))


@pytest.mark.parametrize("option", [{"embedding_l2": 0.1}, {"attention_cost": 0.1, "attention_unit_scale": True}])
def test_a_layer_penalty_is_part_of_the_loss(prepared, option):
    model, network = make_model(prepared, tf.distribute.get_strategy(), **option)
    batch = next(iter(one_batch(prepared, network)))
    losses = model.compute_losses(batch, training=False)
    assert losses["regularization_loss"].numpy() > 0
    np.testing.assert_allclose(losses["total_loss"].numpy(), (losses["ctr_loss"] + losses["discriminator_loss"]
                                                              + losses["regularization_loss"]).numpy(), rtol=1e-6)
    plain, _ = make_model(prepared, tf.distribute.get_strategy())
    assert plain.compute_losses(batch, training=False)["regularization_loss"].numpy() == 0
