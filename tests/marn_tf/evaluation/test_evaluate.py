"""`marn evaluate` on a trained run: the JSON, the HTML report's sections and plots, GAUC over unknown users, the
no-model floor, the single-modality slices and the cross-modal / same-modality pair slices against the model's own
outputs, and clear errors."""
import glob
import json
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from marn_tf import cli
from marn_tf import schema as S
from marn_tf.data.input import make_dataset, split_files
from marn_tf.evaluation.evaluate import evaluate
from marn_tf.evaluation.metrics import auc, gauc, logloss
from marn_tf.schema import USER_VOCABULARY
from marn_tf.training.trainer import train
from marn_tf.training.training_run import restore_run
from tests.testing import with_train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory):
    config, data, _ = prepared
    directory = tmp_path_factory.mktemp("run")
    train(with_train(config, steps_per_epoch=4, epochs=1, validation_steps=1), data, str(directory))
    return directory


def ordered_pairs_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The share of (clicked, not clicked) pairs the scores order correctly, ties counting half: AUC by its
    definition, not by the rank formula `metrics.auc` uses."""
    difference = scores[labels == 1][:, None] - scores[labels == 0][None, :]
    return float(((difference > 0).sum() + 0.5 * (difference == 0).sum()) / difference.size)


def test_evaluate_writes_json_and_report(prepared, run, capsys):
    """`marn evaluate`'s JSON holds the AUC and log loss of the whole split as the restored model scores it, and the
    report's sections and plots."""
    _, data, schema = prepared
    assert cli.main(["evaluate", "--run", str(run), "--data", data, "--split", "validation"]) == 0
    assert "AUC" in capsys.readouterr().out
    out = run / "evaluation_validation"
    result = json.loads((out / "evaluation.json").read_text())
    scored = model_outputs(run, data, "validation")
    labels, probabilities = scored["label"], scored["probability"].astype(np.float64)
    assert result["examples"] == len(labels) == schema.split_examples["validation"]
    assert 0 < labels.sum() < len(labels)
    assert result["auc"] == pytest.approx(ordered_pairs_auc(labels, probabilities), abs=1e-6)
    log_likelihood = np.where(labels == 1, np.log(probabilities), np.log(1 - probabilities))
    assert result["logloss"] == pytest.approx(-log_likelihood.mean(), abs=1e-6)
    assert result["modalities"] == ["id", "image", "text", "statistic"]
    assert 0.25 < result["chance_accuracy"] < 1  # the id is on every item, the image and title on some
    assert 0 <= result["d1_accuracy"] <= 1 and 0 <= result["ds_accuracy"] <= 1
    slices = result["slices"]
    assert slices["cold_items"]["examples"] + slices["warm_items"]["examples"] == result["examples"]
    assert sum(c["examples"] for c in result["modality_weights_by_category"].values()) == result["examples"]
    assert {"missing_image", "missing_text", "missing_statistic"} <= set(slices)
    page = (out / "evaluation.html").read_text()
    for section in ("metrics", "slices", "modality-weights", "modality-importance"):
        assert re.search(f'<section id="{section}">', page)
    for image in re.findall(r'<img src="([^"]+)"', page):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_restored_network_scores_several_splits_as_a_fresh_restore_does(prepared, run, tmp_path):
    """`evaluate(..., restored=...)`: the test split (with its hidden-modality passes) and then the validation split
    scored with one restored network give what evaluations that each restore the run give."""
    _, data, _ = prepared
    restored = restore_run(str(run), data)
    for split in ("test", "validation"):
        shared = evaluate(str(run), data, split, str(tmp_path / f"shared-{split}"), restored=restored)
        alone = evaluate(str(run), data, split, str(tmp_path / f"alone-{split}"))
        assert shared["examples"] == alone["examples"]
        for key in ("auc", "gauc", "logloss", "d1_accuracy"):
            assert shared[key] == pytest.approx(alone[key], abs=1e-6), (split, key)
        # validation after test: the test split's hidden passes left the item table as they found it
        assert shared["modality_importance"]["overall"] == pytest.approx(alone["modality_importance"]["overall"],
                                                                         abs=1e-6)


def test_wrong_run_directory_is_a_clear_error(prepared, tmp_path, capsys):
    _, data, _ = prepared
    assert cli.main(["evaluate", "--run", str(tmp_path), "--data", data]) == 2
    assert "is not a training run" in capsys.readouterr().err



@pytest.fixture(scope="module")
def data_with_new_users(prepared, tmp_path_factory):
    """(data directory, its user vocabulary): a copy of the pipeline output in which, besides the test period's new
    users, half of the test split's users with clicks and non-clicks are unknown, so several unknown users count.
    The vocabularies stay those the run was trained with (evaluation refuses others): the examples name new users."""
    _, data, schema = prepared
    labels, users = [], []
    for features, label in make_dataset(data, schema, "test", 256, shuffle=False, drop_remainder=False):
        users += [u.decode() for u in features["user_id"].numpy()]
        labels += list(label.numpy())
    classes = {}
    for user, label in zip(users, labels):
        classes.setdefault(user, set()).add(int(label))
    dropped = sorted(u for u, c in classes.items() if len(c) == 2)[::2]
    copy = tmp_path_factory.mktemp("new_users") / "data"
    shutil.copytree(data, copy)
    for path in split_files(str(copy), schema, "test"):  # the dropped users' examples under ids never seen
        examples = [tf.train.Example.FromString(record.numpy())
                    for record in tf.data.TFRecordDataset(path, compression_type="GZIP")]
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for example in examples:
                ids = example.features.feature["user_id"].bytes_list.value
                if ids[0].decode() in dropped:
                    ids[0] = f"~gone-{ids[0].decode()}".encode()
                writer.write(example.SerializeToString())
    return str(copy), (copy / schema.vocabularies[USER_VOCABULARY].file).read_text().splitlines()


def model_outputs(run, data: str, split: str) -> dict:
    """The served network's probabilities on the raw examples, with the raw features evaluation groups, slices and
    scores the floor by."""
    _, schema, network, _ = restore_run(str(run), data)
    raw = ["user_id", "item_id"] + [f.name for f in schema.features_with_tags(S.RATE)]
    out = {key: [] for key in ["probability", "label", *raw]}
    for features, label in make_dataset(data, schema, split, 256, shuffle=False, drop_remainder=False):
        out["probability"].append(network.full({k: features[k] for k in network.lookup.input_names})["probability"])
        out["label"].append(label)
        for key in raw:
            out[key].append(features[key])
    return {k: np.concatenate([v.numpy() for v in values]) for k, values in out.items()}


def test_gauc_tells_unknown_users_apart_by_their_raw_id(run, data_with_new_users):
    data, vocabulary = data_with_new_users
    result = evaluate(str(run), data, "test", output_dir=str(run / "new_users"))
    seen = model_outputs(run, data, "test")
    by_user, counted = gauc(seen["label"], seen["probability"], seen["user_id"])
    unknown = ~np.isin(seen["user_id"], [t.encode() for t in vocabulary])
    mixed_unknown = {u for u in set(seen["user_id"][unknown]) if len(set(seen["label"][seen["user_id"] == u])) == 2}
    assert len(mixed_unknown) >= 2
    assert result["gauc_users"] == counted
    assert result["gauc"] == pytest.approx(by_user, abs=1e-6)
    # What grouping by vocabulary index measured: every unknown user pooled as one (index 0).
    pooled, pooled_users = gauc(seen["label"], seen["probability"], np.where(unknown, b"", seen["user_id"]))
    assert pooled_users == counted - len(mixed_unknown) + 1 and abs(pooled - by_user) > 1e-4


def item_content(data: str) -> dict:
    """Item id (bytes) -> (has an image, has a title), from the item table the pipeline wrote."""
    content = {}
    for path in glob.glob(f"{data}/item_table/*.parquet"):
        table = pq.read_table(path).to_pydict()
        content |= {i.encode(): (image > 0, title > 0) for i, image, title in
                    zip(table["item_id"], table[S.IMAGE_PRESENT_COLUMN], table[S.TITLE_LENGTH_COLUMN])}
    return content


def test_the_modality_pair_slices_select_what_the_records_and_the_item_table_say(prepared, run):
    _, data, schema = prepared
    result = evaluate(str(run), data, "test", output_dir=str(run / "pairs"))
    _, _, network, _ = restore_run(str(run), data)
    [candidate] = [f.name for f in schema.features_with_tags(S.CANDIDATE, S.ITEM_KEY)]
    [behaviour] = [f.name for f in schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)]
    [length] = [f.name for f in schema.features_with_tags(S.SEQUENCE_LENGTH)]
    spec = schema.parse_spec()
    records = tf.data.TFRecordDataset(split_files(data, schema, "test"), compression_type="GZIP").batch(256)
    seen = {key: [] for key in ("probability", "label", candidate, behaviour, length)}
    for serialized in records:
        features = tf.io.parse_example(serialized, spec)
        seen["probability"].append(network.full({k: features[k] for k in network.lookup.input_names})["probability"])
        for key in ("label", candidate, behaviour, length):
            seen[key].append(features[schema.label if key == "label" else key])
    seen = {k: np.concatenate([v.numpy() for v in values]) for k, values in seen.items()}

    content = item_content(data)  # unknown items (OOV) have neither
    def only(ids):  # (image only, title only) of raw item ids
        image, title = np.vectorize(lambda i: content.get(i, (False, False)), otypes=[bool, bool])(ids)
        return image & ~title, title & ~image

    candidate_image, candidate_title = only(seen[candidate])
    history_image, history_title = only(seen[behaviour])
    valid = np.arange(seen[behaviour].shape[1]) < seen[length][:, None]
    mostly = lambda flags: (flags & valid).sum(axis=1) > valid.sum(axis=1) / 2
    cross = candidate_image & mostly(history_title) | candidate_title & mostly(history_image)
    same = candidate_image & mostly(history_image) | candidate_title & mostly(history_title)

    slices = result["slices"]
    assert len(seen["label"]) == result["examples"]
    assert not (cross & same).any()
    assert slices["cross_modal_pairs"]["examples"] + slices["same_modality_pairs"]["examples"] <= \
        slices["image_only"]["examples"] + slices["title_only"]["examples"]
    for name, selected in (("cross_modal_pairs", cross), ("same_modality_pairs", same)):
        assert slices[name]["examples"] == selected.sum() > 0, name
        # nan_ok: a slice this small may hold one class only (AUC undefined on both sides).
        assert slices[name]["auc"] == pytest.approx(auc(seen["label"][selected], seen["probability"][selected]),
                                                    abs=1e-6, nan_ok=True), name
        assert slices[name]["positive_rate"] == pytest.approx(seen["label"][selected].mean()), name
    print({name: slices[name]["examples"] for name in ("all", "image_only", "title_only", "cross_modal_pairs",
                                                       "same_modality_pairs")})


def test_the_floor_and_the_single_modality_slices_cover_the_same_examples(prepared, run):
    _, data, schema = prepared
    result = evaluate(str(run), data, "test", output_dir=str(run / "floor"))
    seen = model_outputs(run, data, "test")
    rates = [f.name for f in schema.features_with_tags(S.RATE)]
    assert {"item_ctr", "user_ctr"} <= set(rates)  # the candidate's and the user's click rates
    clipped = np.clip(np.stack([seen[r] for r in rates]).astype(np.float64), 1e-3, 1 - 1e-3)
    score = np.log(clipped / (1 - clipped)).sum(axis=0)
    floor = result["floor"]
    assert floor["examples"] == result["examples"] == len(score)
    assert floor["auc"] == pytest.approx(auc(seen["label"], score), abs=1e-9)
    assert floor["gauc"] == pytest.approx(gauc(seen["label"], score, seen["user_id"])[0], abs=1e-9)
    assert floor["logloss"] == pytest.approx(logloss(seen["label"], 1 / (1 + np.exp(-score))), abs=1e-9)

    content = {}  # item id -> (has an image, title length), from the item table the pipeline wrote
    for path in glob.glob(f"{data}/item_table/*.parquet"):
        table = pq.read_table(path).to_pydict()
        content |= {i.encode(): (image, title) for i, image, title in
                    zip(table["item_id"], table[S.IMAGE_PRESENT_COLUMN], table[S.TITLE_LENGTH_COLUMN])}
    image, title = np.array([content.get(i, (0, 0)) for i in seen["item_id"]]).T > 0
    slices = result["slices"]
    for name, selected in (("image_only", image & ~title), ("title_only", title & ~image)):
        assert slices[name]["examples"] == selected.sum() > 0, name
        assert slices[name]["auc"] == pytest.approx(auc(seen["label"][selected], seen["probability"][selected]),
                                                    abs=1e-6), name
