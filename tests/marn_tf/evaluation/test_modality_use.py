"""Modality importance by use: the AUC drop with a modality hidden, against the same model scoring data whose items
lack that modality; per category and per category kind (world.json); the report and the CLI switch."""
import glob
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from marn_tf import cli
from marn_tf import schema as S
from marn_tf.data.input import split_files
from marn_tf.evaluation.evaluate import evaluate
from marn_tf.evaluation.metrics import auc
from marn_tf.evaluation.modality_use import importance, importance_by_kind
from marn_tf.schema import read_vocabulary
from marn_tf.training.trainer import train
from marn_tf.training.training_run import restore_run
from tests.testing import with_model, with_train


def world_file(data: str) -> str:
    """The generator's world.json of the `prepared` data (its raw directory sits beside the pipeline output)."""
    return f"{data}/../raw/world.json"


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory):
    """A 4-step run without the rate offset: the offset, which hiding a modality leaves alone, would outweigh what
    so short a run learns from the content."""
    config, data, _ = prepared
    directory = tmp_path_factory.mktemp("run")
    train(with_train(with_model(config, rate_offset=False), steps_per_epoch=4, epochs=1, validation_steps=1), data,
          str(directory))
    return directory


def scores(network, data: str, schema) -> dict:
    """The served network's probability, the label and the raw candidate item id of every test example, in the
    order of the split's files."""
    spec, out = schema.parse_spec(), {"probability": [], "label": [], "item_id": []}
    for path in split_files(data, schema, "test"):
        records = [r.numpy() for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
        features = tf.io.parse_example(tf.constant(records), spec)
        out["probability"].append(network.full({k: features[k] for k in network.lookup.input_names})["probability"])
        out["label"].append(features[schema.label])
        out["item_id"].append(features["item_id"])
    return {k: np.concatenate([v.numpy() for v in values]) for k, values in out.items()}


@pytest.fixture(scope="module")
def ranked(prepared, run, tmp_path_factory):
    """A copy of the pipeline output whose test labels are the run's own ranking (clicked: scored above the median),
    so the full model's AUC is 1 and any modality that moves its scores costs AUC when hidden."""
    _, data, schema = prepared
    copy = tmp_path_factory.mktemp("ranked") / "out"
    shutil.copytree(data, copy)
    shutil.copytree(f"{data}/../raw", copy.parent / "raw")
    _, _, network, _ = restore_run(str(run), data)
    probability = scores(network, data, schema)["probability"]
    clicked = iter(probability > np.median(probability))
    for path in split_files(str(copy), schema, "test"):
        examples = [tf.train.Example.FromString(r.numpy())
                    for r in tf.data.TFRecordDataset(path, compression_type="GZIP")]
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for example in examples:
                example.features.feature[schema.label].int64_list.value[:] = [int(next(clicked))]
                writer.write(example.SerializeToString())
    return str(copy)


@pytest.fixture(scope="module")
def run_without_images(prepared, tmp_path_factory):
    """(run, data): a run trained on a copy of the pipeline output whose item table has no image (`has_image` 0)."""
    config, data, _ = prepared
    copy = tmp_path_factory.mktemp("without_images") / "out"
    shutil.copytree(data, copy)
    for path in glob.glob(f"{copy}/item_table/*.parquet"):
        table = pq.read_table(path)
        column = table.schema.get_field_index(S.IMAGE_PRESENT_COLUMN)
        pq.write_table(table.set_column(column, S.IMAGE_PRESENT_COLUMN, pa.array(np.zeros(len(table), np.int64))),
                       path)
    directory = tmp_path_factory.mktemp("run_without_images")
    train(with_train(config, steps_per_epoch=4, epochs=1, validation_steps=1), str(copy), str(directory))
    return directory, str(copy)


def candidate_categories(data: str, schema, item_ids: np.ndarray) -> np.ndarray:
    """The category name of each raw candidate item id, from the item table and the category vocabulary."""
    column = schema.item_table.category_column
    names = [""] + read_vocabulary(f"{data}/{schema.vocabularies[column].file}")
    category = {}
    for path in glob.glob(f"{data}/item_table/*.parquet"):
        table = pq.read_table(path).to_pydict()
        category |= {i.encode(): names[c] for i, c in zip(table["item_id"], table[column])}
    return np.array([category.get(i, "(oov)") for i in item_ids])


@pytest.mark.integration
def test_hiding_a_modality_costs_what_the_model_loses_on_items_without_it(prepared, run, ranked):
    """The image drop is the AUC minus the AUC of the same model serving items that all lack an image, overall and
    recomputed on each world.json kind's examples; text, which the model reads, costs AUC too; the per-category
    counts add up to the split and the report shows the measure."""
    _, _, schema = prepared
    output = f"{ranked}/../evaluation"
    result = evaluate(str(run), ranked, "test", output_dir=output, world_file=world_file(ranked))
    measured = result["modality_importance"]
    assert set(measured) == {"modalities", "overall", "by_category", "by_kind"}
    assert measured["modalities"] == ["image", "text", "statistic"]  # the ID modality is always present
    _, _, network, _ = restore_run(str(run), ranked)
    full = scores(network, ranked, schema)
    presence = network.item_tower.table[S.IMAGE_PRESENT_COLUMN]
    presence.assign(tf.zeros_like(presence))  # every item, candidate or behaviour, without its image
    hidden = scores(network, ranked, schema)["probability"]
    labels = full["label"]
    assert result["auc"] == pytest.approx(auc(labels, full["probability"]), abs=1e-6) and result["auc"] > 0.99
    assert measured["overall"]["image"] == pytest.approx(result["auc"] - auc(labels, hidden), abs=1e-5)
    assert measured["overall"]["image"] > 0.002 and measured["overall"]["text"] > 0.002  # the model reads both

    by_category = measured["by_category"]
    assert sum(c["examples"] for c in by_category.values()) == result["examples"] == schema.split_examples["test"]
    assert {c: v["examples"] for c, v in by_category.items()} == \
        {c: v["examples"] for c, v in result["modality_weights_by_category"].items()}

    kinds = json.loads(open(world_file(ranked)).read())["category_kind"]
    kind = np.array([kinds.get(c, "") for c in candidate_categories(ranked, schema, full["item_id"])])
    assert set(measured["by_kind"]) == set(kind) - {""} and len(measured["by_kind"]) >= 2
    for name, row in measured["by_kind"].items():
        rows = kind == name
        assert row["examples"] == rows.sum()
        assert row["examples"] == sum(by_category[c]["examples"] for c in row["categories"])
        expected = auc(labels[rows], full["probability"][rows]) - auc(labels[rows], hidden[rows])
        assert row["drop"]["image"] == pytest.approx(expected, abs=1e-5), name
    assert importance_by_kind(result, {"category_kind": kinds}) == \
        {k: v["drop"] for k, v in measured["by_kind"].items()}

    page = open(f"{output}/evaluation.html").read()
    assert '<section id="modality-importance">' in page and 'src="modality_importance.png"' in page
    assert open(f"{output}/modality_importance.png", "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration
def test_a_modality_no_item_has_costs_nothing(run_without_images):
    run, data = run_without_images
    result = evaluate(str(run), data, "test", output_dir=f"{data}/../evaluation")
    measured = result["modality_importance"]
    assert measured["overall"]["image"] == 0.0 and measured["overall"]["text"] != 0.0
    assert all(c["drop"]["image"] in (0.0, None) for c in measured["by_category"].values())
    assert measured["by_kind"] is None  # no world.json given


@pytest.mark.integration
def test_the_cli_switches_the_measure_off(prepared, run, tmp_path):
    _, data, _ = prepared
    assert cli.main(["evaluate", "--run", str(run), "--data", data, "--split", "validation", "--output",
                     str(tmp_path), "--no-modality-importance"]) == 0
    assert json.loads((tmp_path / "evaluation.json").read_text())["modality_importance"] is None
    assert "modality-importance" not in (tmp_path / "evaluation.html").read_text()


def test_kinds_are_measured_on_their_own_examples():
    """A kind's drop is the AUC drop on its examples together, not a mean of its categories' drops; categories the
    world gives no kind stay out of the kinds."""
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    full = np.array([.9, .1, .8, .2, .3, .7, .6, .4])
    hidden = {"image": np.array([.1, .9, .8, .2, .3, .7, .6, .4])}
    categories = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    measured = importance(labels, full, hidden, categories, {"a": "visual", "b": "visual", "c": "mixed"})
    assert {c: v["examples"] for c, v in measured["by_category"].items()} == {"a": 2, "b": 2, "c": 2, "d": 2}
    assert measured["by_category"]["a"]["drop"] == {"image": 1.0}
    assert measured["by_category"]["b"]["drop"] == {"image": 0.0}
    visual = measured["by_kind"]["visual"]
    assert visual["examples"] == 4 and visual["categories"] == ["a", "b"]
    assert visual["drop"]["image"] == pytest.approx(1.0 - 0.25)  # the mean of its categories' drops is 0.5
    assert set(measured["by_kind"]) == {"visual", "mixed"}
    assert measured["by_kind"]["mixed"]["drop"] == {"image": 0.0}
    assert measured["overall"]["image"] == pytest.approx(auc(labels, full) - auc(labels, hidden["image"]))


def test_importance_by_kind_weighs_categories_when_the_evaluation_had_no_kinds():
    evaluation = {"modality_importance": {
        "modalities": ["image"], "overall": {"image": 0.1}, "by_kind": None,
        "by_category": {"a": {"examples": 30, "drop": {"image": 0.2}}, "b": {"examples": 10, "drop": {"image": 0.6}},
                        "c": {"examples": 5, "drop": {"image": None}}, "d": {"examples": 7, "drop": {"image": 1.0}}}}}
    world = {"category_kind": {"a": "visual", "b": "visual", "c": "popularity"}}
    assert importance_by_kind(evaluation, world) == {"visual": {"image": pytest.approx((30 * 0.2 + 10 * 0.6) / 40)}}
    assert importance_by_kind({"modality_importance": None}, world) == {}
    assert importance_by_kind(evaluation, {}) == {}
