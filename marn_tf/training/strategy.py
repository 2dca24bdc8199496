"""The tf.distribute strategy named by `runtime.strategy`.

    auto          MirroredStrategy over the GPUs when there are several, else the default (one device)
    default       one device
    mirrored      MirroredStrategy: every local GPU (or the CPU), one replica each
    multi_worker  MultiWorkerMirroredStrategy: the cluster in the TF_CONFIG environment variable
    tpu           TPUStrategy on `runtime.tpu` (an address, a name, or "" for the local / environment TPU)
"""
from __future__ import annotations

import json
import logging
import os

import tensorflow as tf

from marn_tf.config_loader import ConfigError

log = logging.getLogger(__name__)


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("runtime.strategy=multi_worker needs the TF_CONFIG environment variable describing the "
                              "cluster (see README, 'Multi-worker training')")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as err:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {err}") from err
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        raise ConfigError(f"unknown runtime.strategy {name!r}")
    log.info("strategy %s (%s) with %d replica(s)", name, type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def task_name() -> str:
    """"<type>-<index>" of this process in TF_CONFIG ("chief-0" without a cluster): stable across restarts."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return f"{task.get('type', 'chief')}-{task.get('index', 0)}"


def is_chief() -> bool:
    """True unless TF_CONFIG names this process a non-chief worker (only the chief writes summaries and reports)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = config.get("task", {})
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0
