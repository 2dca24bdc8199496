"""The tf.distribute strategy named by `runtime.strategy`.

    auto          MirroredStrategy over the GPUs when there are several, else the default (one device)
    default       one device
    mirrored      MirroredStrategy: every local GPU (or the CPU), one replica each
    multi_worker  MultiWorkerMirroredStrategy: the cluster in the TF_CONFIG environment variable
    tpu           TPUStrategy on `runtime.tpu` (an address, a name, or "" for the local / environment TPU)
    parameter_server
                  ParameterServerStrategy: the "chief", "worker" and "ps" tasks of TF_CONFIG. The chief runs
                  `model.fit` through a ClusterCoordinator, the workers run its steps asynchronously, and every
                  variable larger than `runtime.min_shard_bytes` is split by rows over the "ps" tasks. Worker
                  and ps processes only serve (`serve_cluster_task`). Each worker reads its own part of the data
                  (`CtrTask.build_inputs`).
"""
from __future__ import annotations

import collections
import json
import logging
import os

import tensorflow as tf

from marn_tf.config_loader import ConfigError

log = logging.getLogger(__name__)


def make_strategy(name: str, tpu: str = "", min_shard_bytes: int = 256 << 10) -> tf.distribute.Strategy:
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif name == "multi_worker":
        tf_config(name)
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "parameter_server":
        cluster = tf_config(name).get("cluster", {})
        if not cluster.get("chief") or not cluster.get("ps") or not cluster.get("worker"):
            raise ConfigError("runtime.strategy=parameter_server needs a TF_CONFIG cluster with a \"chief\", at least "
                              "one \"worker\" and at least one \"ps\" task (docs/scale_out.md, 'Parameter servers')")
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        # Row-sharded over every ps task: embeddings and the item table, the variables that grow with the data.
        partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=min_shard_bytes, max_shards=len(cluster["ps"]))
        strategy = tf.distribute.ParameterServerStrategy(resolver, variable_partitioner=partitioner)
    elif name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        raise ConfigError(f"unknown runtime.strategy {name!r}")
    log.info("strategy %s (%s) with %d replica(s)", name, type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def tf_config(strategy: str) -> dict:
    """The TF_CONFIG environment variable, parsed; a ConfigError if it is missing or not JSON."""
    if "TF_CONFIG" not in os.environ:
        raise ConfigError(f"runtime.strategy={strategy} needs the TF_CONFIG environment variable describing the "
                          "cluster (docs/scale_out.md)")
    try:
        return json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {err}") from err


def worker_count(strategy: str) -> int:
    """The number of "worker" tasks of TF_CONFIG's cluster: the parts a parameter-server run divides its data into."""
    return len(tf_config(strategy).get("cluster", {}).get("worker", []))


def serves_only(strategy: str) -> bool:
    """True for the "worker" and "ps" tasks of a parameter-server cluster: they run no training loop of their own."""
    return strategy == "parameter_server" and task_type() in ("worker", "ps")


def serve_cluster_task() -> None:
    """Runs this worker or ps task's server until the process is stopped (the chief drives the training).

    A cluster's launcher stops these processes when the chief has finished (`scripts/multi_worker_local.py`; on
    Kubernetes or Vertex AI, the job controller)."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    log.info("%s serving the parameter-server cluster %s", task_name(), resolver.cluster_spec().as_dict())
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=resolver.task_type, task_index=resolver.task_id,
                                  protocol=resolver.rpc_layer or "grpc", start=True)
    server.join()


def placement_summary(variables) -> str:
    """Where a parameter-server run keeps its variables: how many and how many MB on each ps task, and which
    were split by rows."""
    count, size = collections.Counter(), collections.Counter()
    for v in variables:
        count[v.device] += 1
        size[v.device] += v.shape.num_elements() * v.dtype.size
    split = sorted({v.name.split("/part_")[0] for v in variables if "/part_" in v.name})
    return (f"parameter servers hold {len(variables)} variables: "
            + ", ".join(f"{device} {count[device]} ({size[device] / 2**20:.1f} MB)" for device in sorted(count))
            + f"; {len(split)} split by rows over the ps tasks: {', '.join(split)}")


def _task() -> dict:
    """This process's `task` in TF_CONFIG ({} without a cluster)."""
    return json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})


def task_type() -> str:
    return _task().get("type", "chief")


def task_name() -> str:
    """"<type>-<index>" of this process in TF_CONFIG ("chief-0" without a cluster): stable across restarts."""
    return f"{task_type()}-{_task().get('index', 0)}"


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (only the chief writes summaries and reports)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0
