"""Evaluation of a trained run on a split: `evaluate(run_dir, data_dir, split)`.

Reports (evaluation.json, evaluation.html and PNG plots in the output directory):

* AUC, GAUC (impression-weighted per-user AUC, users told apart by their raw id: every user outside the
  vocabulary, e.g. new in the test period, shares index 0) and log loss;
* the no-model floor on the same examples (`marn_tf.evaluation.floor`): null when the schema has no rate features;
* D1 accuracy (near chance, `chance_accuracy`: the invariant vectors are modality-invariant) and Ds accuracy (high: the
  specific vectors are modality-specific), weighted by item occurrences;
* mean modality weights (mean |a^m| of the attention) and D0 importance weights per item category;
* modality importance by use (`marn_tf.evaluation.modality_use`, on by default): the AUC drop when a modality is
  hidden from every item, overall, per item category and, given the generator's world.json, per category kind
  (one more pass over the split per modality an item can lack);
* slices: cold candidates (no own ID embedding: seen fewer than `vocabulary.min_count` times in the
  training window), candidates missing a modality (image, title, statistics) and candidates with only one of
  image and title (image_only, title_only); and, of those, impressions whose behaviour sequence (its
  sequence-length valid items) mostly, more than half, has only the other one (cross_modal_pairs: what the
  candidate and the history share, e.g. a colour seen in the image and in the title, sits in different
  modalities) or only the same one (same_modality_pairs, for contrast). The item slices need an item table with
  both image and text.
"""
from __future__ import annotations

import json
import logging
from typing import Optional

import numpy as np
import tensorflow as tf

from marn_tf.evaluation import floor as F
from marn_tf.evaluation import metrics as M
from marn_tf.evaluation import modality_use
from marn_tf.evaluation.report import write_report
from marn_tf import schema as S
from marn_tf.models.network import Network
from marn_tf.schema import USER_VOCABULARY, SchemaError, read_vocabulary
from marn_tf.storage import files
from marn_tf.training.training_directory import TrainingDirectory
from marn_tf.training.training_run import read_split, restore_run

log = logging.getLogger(__name__)


def _slice_metrics(labels, probabilities, users, selected) -> dict:
    n = int(selected.sum())
    if n == 0:
        return {"examples": 0}
    g, counted = M.gauc(labels[selected], probabilities[selected], users[selected])
    return {"examples": n, "positive_rate": float(labels[selected].mean()),
            "auc": M.auc(labels[selected], probabilities[selected]), "gauc": g, "gauc_users": counted,
            "logloss": M.logloss(labels[selected], probabilities[selected])}


def with_raw_features(dataset: tf.data.Dataset, network: Network, raw: list[str]) -> tf.data.Dataset:
    """`(indexed features, raw features, label)`: what `training_run.indexed` gives, plus the raw values of `raw` that
    evaluation needs as they were before the lookup (the user id string, the click rates)."""
    lookup = network.lookup
    names = lookup.input_names
    return dataset.map(lambda features, label: (lookup({k: features[k] for k in names}),
                                                {k: features[k] for k in raw}, label),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def evaluate(run_dir: str, data_dir: str, split: str = "test", output_dir: Optional[str] = None,
             batch_size: int = 1024, max_batches: Optional[int] = None, modality_importance: bool = True,
             world_file: Optional[str] = None, restored: Optional[tuple] = None) -> dict:
    """Scores `split` with the run's checkpoint and writes the reports; returns what evaluation.json holds.
    `modality_importance`: also score the split once per hideable modality with it hidden; `world_file`: a
    generated dataset's world.json, whose category kinds group that measure too; `restored`: what
    `restore_run(run_dir, data_dir)` returned, to score several splits with one restored network."""
    config, schema, network, checkpoint = restored or restore_run(run_dir, data_dir)
    kinds = modality_use.read_world(world_file) if world_file and modality_importance else None
    output_dir = output_dir or TrainingDirectory(run_dir).evaluation(split)
    user, rates = _user_id_feature(schema), F.rate_features(schema)
    # deterministic: the modality importance passes read the examples again, in the same order
    dataset = with_raw_features(read_split(config, data_dir, schema, split, batch_size, shuffle=False,
                                           drop_remainder=False, deterministic=True), network, [user, *rates])
    if max_batches:
        dataset = dataset.take(max_batches)
    core = network.inference
    # The behaviour sequence's item indices and length (build_core checked there is one of each).
    [behaviour] = [f.name for f in schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY)]
    [length] = [f.name for f in schema.features_with_tags(S.SEQUENCE_LENGTH)]

    @tf.function
    def step(features):
        out = core({k: features[k] for k in core.input_names}, training=False)
        return {**{k: out[k] for k in ("probability", "modality_weights", "importance", "modality_mask",
                                       "candidate_index", "d1_accuracy", "ds_accuracy", "d1_chance")},
                "behaviour_index": features[behaviour], "sequence_length": features[length]}

    collected, raw, labels = [], [], []
    for features, raw_features, label in dataset:
        collected.append({k: v.numpy() for k, v in step(features).items()})
        raw.append({k: v.numpy() for k, v in raw_features.items()})
        labels.append(label.numpy())
    if not collected:
        raise SchemaError(f"the {split} split gave no examples")
    cat = {k: np.concatenate([c[k] for c in collected]) if np.ndim(collected[0][k]) else
           np.array([c[k] for c in collected]) for k in collected[0]}
    raw = {k: np.concatenate([r[k] for r in raw]) for k in raw[0]}
    labels, users = np.concatenate(labels), raw[user]
    probabilities = cat["probability"]
    sizes = np.array([len(c["probability"]) for c in collected], dtype=np.float64)
    modalities = list(network.modalities)

    item_table = network.item_tower
    # From the schema, the one contract; a schema written before it named the column leaves the run's config
    category_field = schema.item_table.category_column or config.items.category_field
    category_index = item_table.table[category_field].numpy()[cat["candidate_index"]]
    category_names = [""] + read_vocabulary(files.join(data_dir, schema.vocabularies[category_field].file))
    categories = _example_categories(category_index, category_names)
    mask, weights, importance = cat["modality_mask"], cat["modality_weights"], cat["importance"]
    per_category = {}
    for name in np.unique(categories):
        rows = categories == name
        per_category[str(name)] = {
            "examples": int(rows.sum()),
            "modality_weights": {m: _masked_mean(weights[rows, i], mask[rows, i]) for i, m in enumerate(modalities)},
            "importance": {m: _masked_mean(importance[rows, i], mask[rows, i]) for i, m in enumerate(modalities)},
        }

    own_id = cat["candidate_index"] < schema.item_table.num_with_id_embedding + 1
    warm = own_id & (cat["candidate_index"] > 0)
    slices = {"all": _slice_metrics(labels, probabilities, users, np.ones_like(labels, bool)),
              "cold_items": _slice_metrics(labels, probabilities, users, ~warm),
              "warm_items": _slice_metrics(labels, probabilities, users, warm)}
    for i, m in enumerate(modalities):
        if m != "id":
            slices[f"missing_{m}"] = _slice_metrics(labels, probabilities, users, mask[:, i] == 0)
    if "image" in modalities and "text" in modalities:
        image, title = mask[:, modalities.index("image")] > 0, mask[:, modalities.index("text")] > 0
        slices["image_only"] = _slice_metrics(labels, probabilities, users, image & ~title)
        slices["title_only"] = _slice_metrics(labels, probabilities, users, title & ~image)
        cross, same = _modality_pairs(item_table.table, cat["candidate_index"], cat["behaviour_index"],
                                      cat["sequence_length"])
        slices["cross_modal_pairs"] = _slice_metrics(labels, probabilities, users, cross)
        slices["same_modality_pairs"] = _slice_metrics(labels, probabilities, users, same)

    floor = None
    if rates:
        floor = F.floor_metrics(labels, F.floor_scores({k: raw[k] for k in rates}), users)
    else:
        log.warning("no no-model floor: the schema has no features tagged %r (the item's and the user's click "
                    "rates): floor is null", S.RATE)

    by_use = None
    if modality_importance:
        scores = modality_use.hidden_scores(step, dataset, item_table.table, schema, modalities, labels)
        by_use = modality_use.importance(labels, probabilities, scores, categories, kinds)

    overall = slices["all"]
    adversarial = config.model.discriminators != "none"  # without discriminators there is nothing to measure
    result = {
        "run": files.normal_path(run_dir), "checkpoint": checkpoint, "split": split, "variant": config.model.variant,
        "examples": overall["examples"], "auc": overall["auc"], "gauc": overall["gauc"],
        "gauc_users": overall["gauc_users"], "logloss": overall["logloss"], "floor": floor,
        "d1_accuracy": float(np.average(cat["d1_accuracy"], weights=sizes)) if adversarial else None,
        "ds_accuracy": float(np.average(cat["ds_accuracy"], weights=sizes)) if adversarial else None,
        "chance_accuracy": _chance_accuracy(cat, sizes, adversarial),
        "modalities": modalities,
        "modality_weights": {m: _masked_mean(weights[:, i], mask[:, i]) for i, m in enumerate(modalities)},
        "modality_weights_by_category": per_category,
        "slices": slices,
        "modality_importance": by_use,
    }
    files.makedirs(output_dir)
    files.write_text(files.join(output_dir, "evaluation.json"), json.dumps(result, indent=2))
    write_report(result, output_dir)
    return result


def _chance_accuracy(outputs: dict[str, np.ndarray], sizes: np.ndarray, adversarial: bool) -> float:
    """The accuracy of a modality discriminator that always names the most common present modality: the level a
    D1 that tells nothing apart sits at. With discriminators, measured over the vectors D1 sees; without, over the
    candidates' present modalities. 1/M only when every modality is present equally often."""
    if adversarial:
        return float(np.average(outputs["d1_chance"], weights=sizes))
    present = outputs["modality_mask"].sum(axis=0)
    return float(present.max() / present.sum()) if present.sum() else 0.0


def _example_categories(category_index: np.ndarray, category_names: list[str]) -> np.ndarray:
    """Each example's category name from its category vocabulary index ("(oov)" for index 0, the index itself
    beyond the vocabulary)."""
    values, position = np.unique(category_index, return_inverse=True)
    names = [category_names[c] if c < len(category_names) else str(c) for c in values]
    return np.array([name or "(oov)" for name in names])[position.reshape(-1)]


def _user_id_feature(schema) -> str:
    """The feature whose raw value GAUC groups by: the user feature over the user vocabulary (profile features are
    USER too)."""
    users = [f.name for f in schema.features_with_tags(S.USER) if f.vocabulary == USER_VOCABULARY]
    if len(users) != 1:
        raise SchemaError(f"GAUC needs exactly one user feature over the {USER_VOCABULARY!r} vocabulary, found {users}")
    return users[0]


def _modality_pairs(table: dict, candidates: np.ndarray, behaviour: np.ndarray,
                    lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cross_modal, same_modality) [batch] booleans: the candidate has exactly one of image and title, and more
    than half of the behaviour sequence's valid items (the first `lengths` of `behaviour` [batch, L]) have only
    the other one (cross_modal) or only the same one (same_modality). `table` is the item tower's item table
    (rows by item vocabulary index; row 0, the out-of-vocabulary item, has neither)."""
    has_image = table[S.IMAGE_PRESENT_COLUMN].numpy().reshape(-1) > 0
    has_title = table[S.TITLE_LENGTH_COLUMN].numpy().reshape(-1) > 0
    image_only, title_only = has_image & ~has_title, has_title & ~has_image
    behaviour = behaviour.reshape(len(candidates), -1)
    valid = np.arange(behaviour.shape[1]) < lengths.reshape(-1, 1)
    count = valid.sum(axis=1)

    def mostly(only: np.ndarray) -> np.ndarray:
        return 2 * (only[behaviour] & valid).sum(axis=1) > count

    history_image, history_title = mostly(image_only), mostly(title_only)
    candidate_image, candidate_title = image_only[candidates], title_only[candidates]
    cross = (candidate_image & history_title) | (candidate_title & history_image)
    same = (candidate_image & history_image) | (candidate_title & history_title)
    return cross, same


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> Optional[float]:
    return float(np.sum(values * mask) / np.sum(mask)) if np.sum(mask) else None
