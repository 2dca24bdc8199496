"""Which strategy a name gives, the refusals before any work, and which process of a cluster writes."""
import json

import pytest
import tensorflow as tf

from marn_tf.config_loader import ConfigError
from marn_tf.training.strategy import is_chief, make_strategy, task_name


def test_default_and_mirrored_strategies(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert make_strategy("default") is tf.distribute.get_strategy()
    assert make_strategy("auto").num_replicas_in_sync == 1  # no GPUs here: one device
    assert make_strategy("mirrored").num_replicas_in_sync == 2  # the two logical CPUs tests/conftest.py configures


@pytest.mark.parametrize("name, environment, message", [
    ("multi_worker", None, "needs the TF_CONFIG environment variable"),
    ("multi_worker", "{not json", "TF_CONFIG is not valid JSON"),
    ("parameter_servers", None, "unknown runtime.strategy 'parameter_servers'"),
    ("parameter_server", None, "needs the TF_CONFIG environment variable"),
    ("parameter_server", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}),
     'needs a TF_CONFIG cluster with a "chief", at least one "worker" and at least one "ps" task'),
])
def test_mistakes_are_config_errors(monkeypatch, name, environment, message):
    if environment is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", environment)
    with pytest.raises(ConfigError, match=message):
        make_strategy(name)


def test_only_the_chief_of_a_parameter_server_cluster_trains(monkeypatch):
    from marn_tf.training.strategy import serves_only

    cluster = {"chief": ["a:1"], "worker": ["b:1"], "ps": ["c:1"]}
    for task, serves in [("chief", False), ("worker", True), ("ps", True)]:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task, "index": 0}}))
        assert serves_only("parameter_server") == serves and not serves_only("multi_worker")


@pytest.mark.parametrize("cluster, task, chief, name", [
    (None, None, True, "chief-0"),  # no cluster: the one process writes
    ({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "chief", "index": 0}, True, "chief-0"),
    ({"chief": ["a:1"], "worker": ["b:1"]}, {"type": "worker", "index": 0}, False, "worker-0"),
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 0}, True, "worker-0"),  # worker 0 is the chief
    ({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 1}, False, "worker-1"),
])
def test_the_chief_and_the_task_name_come_from_tf_config(monkeypatch, cluster, task, chief, name):
    if cluster is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert is_chief() == chief and task_name() == name
