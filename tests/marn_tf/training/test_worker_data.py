"""Every worker of a parameter-server cluster reads its own part of the data, on a cluster in one process.

The test runs this module as a script in a subprocess (a cluster connects its process's TensorFlow runtime to
it for good): two workers and one parameter server as in-process servers, this process the chief."""
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.testing import REPO

pytestmark = pytest.mark.integration

KEYS = ("user_id", "item_id", "position", "user_ctr")  # together they tell the examples apart


def test_parameter_server_workers_read_their_own_parts_and_train(prepared, tmp_path):
    """Worker 0's first batch is `CtrTask.read`'s first batch of part 0 of 2, worker 1's that of part 1 (so the
    parts' own test, test_task.py, covers a pass), the two differ, and `model.fit` runs on the inputs."""
    config, data, _ = prepared
    import yaml
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    result = subprocess.run([sys.executable, "-m", "tests.marn_tf.training.test_worker_data",
                             str(tmp_path / "config.yaml"), data], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-5000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["workers"] == [0, 1]
    for index in (0, 1):
        assert seen["first_batch"][index] == seen["expected"][index], index
    assert seen["first_batch"][0] != seen["first_batch"][1]
    assert seen["steps"] == 2 and seen["validated"]


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _rows(features) -> list:
    """Each example of a batch (tensors or arrays) as the list of its KEYS' values."""
    import numpy as np

    return [[float(v) for v in row] for row in zip(*(np.asarray(features[k]).tolist() for k in KEYS))]


def main(config_path: str, data: str) -> None:
    import marn_tf  # noqa: F401  (before TensorFlow)
    import tensorflow as tf

    from marn_tf.config import Config
    from marn_tf.training.strategy import make_strategy
    from marn_tf.training.task import CtrTask

    ports = iter(_free_ports(4))
    sizes = (("chief", 1), ("worker", 2), ("ps", 1))
    cluster = {job: [f"127.0.0.1:{next(ports)}" for _ in range(n)] for job, n in sizes}
    spec = tf.train.ClusterSpec(cluster)
    threads = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=4)  # fewer can deadlock the in-process servers
    servers = [tf.distribute.Server(spec, job_name=job, task_index=i, protocol="grpc", config=threads,  # noqa: F841
                                    start=True)
               for job in ("worker", "ps") for i in range(len(cluster[job]))]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})
    config = Config.load(config_path, ["runtime.strategy=parameter_server", "train.validation_steps=2",
                                       "train.steps_per_epoch=2", "train.epochs=1"])
    strategy = make_strategy("parameter_server")
    task = CtrTask(config, data)
    with strategy.scope():
        network = task.build_network()
        model = task.build_model(network)
    creator = task.build_inputs("train", network)
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    # what Keras' fit does with a DatasetCreator
    iterator = iter(coordinator.create_per_worker_dataset(
        lambda: strategy.distribute_datasets_from_function(creator, options=creator.input_options)))

    @tf.function
    def first(iterator):
        features, _ = next(iterator)
        return tf.distribute.coordinator.experimental_get_current_worker_index(), {k: features[k] for k in KEYS}

    first_batch = {}
    for _ in range(20):  # steps go to whichever worker is free: schedule until both have taken one
        scheduled = [coordinator.schedule(first, args=(iterator,)) for _ in range(4)]
        coordinator.join()
        for value in scheduled:  # a worker takes its steps in the order they were scheduled
            worker, features = value.fetch()
            first_batch.setdefault(int(worker), _rows(features))
        if len(first_batch) == 2:
            break
    expected = {i: _rows(next(iter(task.read("train", network, shard=(2, i))))[0]) for i in (0, 1)}
    history = model.fit(creator, epochs=1, steps_per_epoch=2, validation_data=task.build_inputs("validation", network),
                        validation_steps=2, verbose=0).history
    print(json.dumps({"workers": sorted(first_batch), "first_batch": [first_batch.get(i) for i in (0, 1)],
                      "expected": [expected[i] for i in (0, 1)], "steps": int(model.optimizer.iterations.numpy()),
                      "validated": "val_auc" in history}))


if __name__ == "__main__":
    main(*sys.argv[1:])
