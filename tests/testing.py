"""What the tests share: the layer checks, small configs and inputs, and the helpers several test files use.

Open this module before writing a test. A layer test checks its layer with `assert_config_round_trip` (every
Keras layer of `marn_tf/layers/` has one) and, where the layer has trainable weights, `assert_gradients_reach`;
a test that needs a model builds it through `marn_tf.training.task.CtrTask` (or `training_run.load_network`),
never by copying the network's construction.

Why functions and not a `LayerTest` base class (as keras-rs's `testing.TestCase`): the suite is plain pytest
functions that take fixtures (`prepared`, `tmp_path`, `monkeypatch`) and use `@pytest.mark.parametrize`; a
`unittest.TestCase` base takes neither, and a plain base class would only add `self.` in front of these
functions. The data fixtures built once per test run stay in the conftest.py files (pytest finds fixtures there:
`prepared` in tests/conftest.py, the export run in tests/export/conftest.py, the `marn run` in
tests/marn_tf/workflow/conftest.py); they build from the helpers here. Import helpers from this module,
never from a conftest.py or from another test module.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
from typing import Callable, Optional

import marn_tf  # noqa: F401  (must precede any TensorFlow import)
import numpy as np
import tensorflow as tf
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --- layers -----------------------------------------------------------------------------------------------


def assert_config_round_trip(layer: tf.keras.layers.Layer, inputs) -> None:
    """A layer rebuilt from get_config (through Keras serialization) computes the same outputs."""
    expected = layer(inputs)
    clone = tf.keras.layers.deserialize(tf.keras.layers.serialize(layer))
    clone(inputs)  # build
    clone.set_weights(layer.get_weights())
    for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(clone(inputs))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
    assert clone.get_config() == layer.get_config()


def weights_without_gradient(layer: tf.keras.layers.Layer, inputs, loss: Optional[Callable] = None,
                             atol: float = 1e-6, **call_kwargs) -> list[str]:
    """Names of the layer's trainable weights that get no (or an all-zero) gradient from `loss(outputs)`.

    The default loss is every floating output times fixed random coefficients, summed (random, so that a sum
    the layer keeps constant, such as softmax weights summing to 1, does not hide a weight). A gradient under
    `atol` everywhere counts as none (a bias before a softmax gets rounding noise, not a gradient). A ReLU unit
    dead on the test's inputs gets none either: a layer with few ReLU units is built after
    `tf.keras.utils.set_random_seed`, so that the check does not depend on the order tests run in.
    """
    rng = np.random.default_rng(0)
    with tf.GradientTape() as tape:
        outputs = layer(inputs, **call_kwargs)
        if loss is not None:
            value = loss(outputs)
        else:
            value = tf.add_n([tf.reduce_sum(o * tf.constant(rng.normal(size=o.shape.as_list()), o.dtype))
                              for o in tf.nest.flatten(outputs) if o.dtype.is_floating])
    weights = layer.trainable_weights
    assert weights, f"{layer.name} has no trainable weights"
    gradients = tape.gradient(value, weights)
    return [w.name for w, g in zip(weights, gradients)
            if g is None or np.max(np.abs(tf.convert_to_tensor(g).numpy())) <= atol]


def assert_gradients_reach(layer: tf.keras.layers.Layer, inputs, loss: Optional[Callable] = None,
                           **call_kwargs) -> None:
    """Every trainable weight of the layer gets a non-zero gradient (see `weights_without_gradient`)."""
    missing = weights_without_gradient(layer, inputs, loss, **call_kwargs)
    assert not missing, f"no gradient reaches {missing}"


# Item content for the item-side layers (ModalityEmbeddings, ItemEncoder, ItemTower): the ModalityEmbeddings
# arguments, and `item_content` for up to three items of it.
EMBEDDING_CONFIG = dict(num_item_ids=4, id_fields={"shop_id": 5, "category_id": 3}, image_dim=6,
                        word_vocabulary_size=9, statistics={"stat_sales_count": 7}, id_embedding_dim=4,
                        word_embedding_dim=3, text_filters=2, statistic_embedding_dim=5)


def item_content(item_index, has_image=(1, 0, 1), title_length=(2, 0, 1), sales=(3, 0, 0)) -> dict:
    n = len(item_index)
    return {"item_index": tf.constant(item_index, tf.int32), "shop_id": tf.constant([1, 2, 4][:n], tf.int32),
            "category_id": tf.constant([0, 1, 2][:n], tf.int32),
            "image": tf.constant(np.random.default_rng(0).normal(size=(n, 6)), tf.float32),
            "has_image": tf.constant(has_image[:n], tf.int32),
            "title_tokens": tf.constant([[1, 2, 0, 0], [0, 0, 0, 0], [5, 0, 0, 0]][:n], tf.int32),
            "title_length": tf.constant(title_length[:n], tf.int32),
            "stat_sales_count": tf.constant(sales[:n], tf.int32)}


# A small item tower over a six-item table, and its inputs (candidates, behaviour sequences, their mask), for
# ItemTower and PrecomputedItemTower.
NUM_ITEMS = 6
ITEM_COLUMNS = {"shop_id": {"shape": [], "dtype": "int64"}, "category_id": {"shape": [], "dtype": "int64"},
                "image": {"shape": [6], "dtype": "float32"}, "has_image": {"shape": [], "dtype": "int64"},
                "title_tokens": {"shape": [4], "dtype": "int64"}, "title_length": {"shape": [], "dtype": "int64"},
                "stat_sales_count": {"shape": [], "dtype": "int64"}}
ITEM_ENCODER = dict(embeddings=EMBEDDING_CONFIG, fusion="attention", discriminators="double", units=8,
                    common_units=6, discriminator_hidden=[5])


def item_tower_inputs() -> list:
    """[candidate [4], behaviour [4, 3], mask [4, 3]]: items repeat across and within rows."""
    return [tf.constant([1, 3, 1, 5]), tf.constant([[2, 1, 0], [3, 3, 4], [1, 0, 0], [5, 2, 2]]),
            tf.constant([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 1]], tf.float32)]


def item_table(seed=0):
    from marn_tf.data.item_table import ItemTable

    rng = np.random.default_rng(seed)
    columns = {"shop_id": rng.integers(0, 5, NUM_ITEMS), "category_id": rng.integers(0, 3, NUM_ITEMS),
               "image": rng.normal(size=(NUM_ITEMS, 6)).astype(np.float32), "has_image": rng.integers(0, 2, NUM_ITEMS),
               "title_tokens": rng.integers(1, 9, (NUM_ITEMS, 4)), "title_length": rng.integers(0, 5, NUM_ITEMS),
               "stat_sales_count": rng.integers(0, 7, NUM_ITEMS)}
    return ItemTable([""] + [f"i{k}" for k in range(1, NUM_ITEMS)], columns)


def small_item_tower(deduplicate=True):
    """An ItemTower over `item_table()`, built on `item_tower_inputs()`."""
    from marn_tf.layers.item_tower import ItemTower

    layer = ItemTower(NUM_ITEMS, ITEM_COLUMNS, ITEM_ENCODER, deduplicate=deduplicate)
    layer(item_tower_inputs())
    layer.set_table(item_table())
    return layer


# --- configs and data -------------------------------------------------------------------------------------

# The smallest model the integration tests train (with `prepared` and `marn run`): seconds, not minutes.
TINY_MODEL = ["sequence.max_length=8", "model.units=8", "model.common_units=8", "model.gru_units=8",
              "model.hidden_units=[16]", "model.discriminator_hidden=[8]", "train.batch_size=32"]
# ...and a `marn run` of it: short budgets, a two-variant ladder over two seeds.
TINY_RUN = TINY_MODEL + ["train.steps_per_epoch=4", "train.epochs=2", "train.validation_steps=2",
                         "train.early_stopping_patience=0", "run.ladder=[concat, marn]", "run.seeds=[1, 2]",
                         "run.workers=1"]


def base_config(tmp_path, **sections):
    """A config over files under tmp_path (events.jsonl, items.jsonl, users.jsonl by default)."""
    from marn_tf.config import Config

    data = {
        "inputs": {"events": {"path": str(tmp_path / "events.jsonl")},
                   "items": {"path": str(tmp_path / "items.jsonl")}},
        "items": {"image_dim": 3, "statistics": ["sales_count"], "max_title_tokens": 4},
        "events": {"context": ["query"]},
        "sequence": {"max_length": 3},
        "vocabulary": {"min_count": 1},
        "split": {"train_end": "2026-01-03", "valid_end": "2026-01-04"},
        "pipeline": {"num_shards": 1},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return Config.from_dict(data)


def with_train(config, **train):
    """`config` with these `train:` keys changed."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train))


def with_model(config, **model):
    """`config` with these `model:` keys changed."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model))


def write_config(path, data_config: dict, overrides) -> str:
    """`data_config` (YAML data) with `--set` style overrides, written to `path`; returns the path."""
    from marn_tf.config_loader import apply_overrides

    with open(path, "w") as f:
        yaml.safe_dump(apply_overrides(data_config, list(overrides)), f)
    return str(path)


def prepare(base, users: int, items: int, days: int, overrides=()):
    """Synthetic data through the real Beam job: (config, pipeline output directory, schema)."""
    from marn_tf.config import Config
    from marn_tf.pipelines import preprocess
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate
    from marn_tf.schema import Schema

    generate(GeneratorOptions(output=str(base / "raw"), users=users, items=items, days=days, image_dim=8,
                              bad_record_rate=0.0), progress=False)
    config = Config.load(str(base / "raw" / "config.yaml"), list(overrides))
    preprocess.run(config, str(base / "out"))
    return config, str(base / "out"), Schema.load(str(base / "out"))


# --- the repository's files -------------------------------------------------------------------------------


def tracked_files() -> Optional[list[str]]:
    """Paths, relative to the repository root, of the files git tracks that the working tree holds; None outside a
    git checkout (an unpacked source distribution), where there is no tracked set to check."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    names = [name for name in listed.decode("utf-8").split("\0") if name]
    return [name for name in names if os.path.isfile(os.path.join(REPO, name))]  # a file removed, not yet staged


def text_of(path: str) -> Optional[str]:
    """A tracked file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    with open(os.path.join(REPO, path), "rb") as f:
        data = f.read()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
