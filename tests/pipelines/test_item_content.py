"""`pipeline.item_content: examples` and `items.image_pca_dim`: what the job writes (a real Beam run)."""
import gzip
import json
import os

import numpy as np
import pytest

from marn_tf import schema as S
from marn_tf.data.input import make_dataset
from marn_tf.data.item_table import load_item_table
from marn_tf.pipelines.image_pca import ImagePca

pytestmark = pytest.mark.integration


def test_examples_carry_exactly_their_items_table_rows(prepared_with_content):
    _, data, schema = prepared_with_content
    assert schema.content_in_examples and not schema.without_content_features().content_in_examples
    table = load_item_table(data, schema)
    row_of = {item: k for k, item in enumerate(table.item_ids)}  # "" (padding) -> row 0, all zeros
    checked = 0
    for split in S.SPLITS:
        for features, _ in make_dataset(data, schema, split, 64, drop_remainder=False):
            candidates = [row_of[i.decode()] for i in features["item_id"].numpy()]
            behaviour = [[row_of[i.decode()] for i in row] for row in features["hist_item_id"].numpy()]
            for column, values in table.columns.items():
                np.testing.assert_array_equal(features[S.candidate_content_feature(column)].numpy(),
                                              values[candidates], err_msg=column)
                np.testing.assert_array_equal(features[S.behaviour_content_feature(column)].numpy(),
                                              values[np.asarray(behaviour)], err_msg=column)
            checked += len(candidates)
    assert checked == sum(schema.split_examples.values()) > 0
    padding = features["hist_item_id"].numpy() == b""
    assert padding.any() and not features[S.behaviour_content_feature("image")].numpy()[padding].any()
    with open(os.path.join(data, "report.json")) as f:
        content = json.load(f)["item_content"]
    assert content["source"] == "examples"
    assert content["without_content"] == {"candidates": 0, "behaviour_items": 0}
    with open(os.path.join(data, "report.md")) as f:
        assert "Every example carries its items' content" in f.read()


def test_the_image_pca_reduces_the_tables_vectors_as_its_file_says(prepared_with_content):
    config, data, schema = prepared_with_content
    with open(os.path.join(data, "image_pca.json")) as f:
        pca = ImagePca.from_dict(json.load(f))
    assert (pca.dim, pca.k) == (8, 4) and schema.item_columns("image")[0].shape == [4]
    assert 0 < pca.num_vectors <= 150 and 0 < sum(pca.explained_variance_ratio) <= 1 + 1e-9
    with open(os.path.join(data, "report.json")) as f:
        reported = json.load(f)["item_content"]["image_pca"]
    assert reported == {"from_dims": 8, "to_dims": 4, "fitted_on_vectors": pca.num_vectors,
                        "explained_variance": round(sum(pca.explained_variance_ratio), 4)}
    table = load_item_table(data, schema)
    with gzip.open(config.inputs.items.path, "rt") as f:  # the generator's catalog: gzipped JSON lines
        raw = {item["item_id"]: item.get("image_embedding") for item in map(json.loads, f)}
    for k, item in enumerate(table.item_ids[1:], start=1):
        vector = raw[item]
        if table.columns[S.IMAGE_PRESENT_COLUMN][k]:
            np.testing.assert_allclose(table.columns["image"][k], pca.project(vector), rtol=1e-5, atol=1e-5)
        else:
            assert not table.columns["image"][k].any()
    # every example carries the reduced vectors
    features, _ = next(iter(make_dataset(data, schema, "train", 8)))
    assert features[S.candidate_content_feature("image")].shape == (8, 4)
    assert features[S.behaviour_content_feature("image")].shape == (8, 8, 4)
