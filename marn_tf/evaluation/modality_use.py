"""Modality importance by use: the AUC the model loses when a modality is hidden from every item.

The gate averages (`modality_weights_by_category`) say where the attention looks; this says what the ranking
needs. For each modality that an item can lack (image, text, statistic) the split is scored once more with that
modality marked missing for every item, candidate and behaviour alike, exactly as an item that lacks it in the
catalog: its item table columns are zeroed while the pass runs (`ModalityEmbeddings` reads presence from them:
`has_image`, `title_length`, any statistic bucket above 0), so the encoder gives it no weight, no discriminator
share and no part in the representation. The ID modality is always present in the model and is not hidden; the
cold_items slice shows what the model does without an item's own ID. The statistic modality is the catalog's
counters of the item table; the point-in-time counters of the examples stay.

The drop is AUC(all) - AUC(modality hidden): overall, per item category (the candidate's) and, given the
generator's `world.json`, per category kind, recomputed on each kind's examples. Positive: the model's ranking
uses the modality; 0: hiding it changes nothing (as for a modality no item has); negative: it hurts. None where
the AUC is undefined (one class only).
"""
from __future__ import annotations

import contextlib
import json
from typing import Callable, Iterator, Optional

import numpy as np
import tensorflow as tf

from marn_tf import schema as S
from marn_tf.evaluation import metrics as M
from marn_tf.storage import files

HIDEABLE = ("image", "text", "statistic")  # the ID modality is always present (ModalityEmbeddings' mask)
_PRESENCE_COLUMNS = {"image": [S.IMAGE_PRESENT_COLUMN], "text": [S.TITLE_LENGTH_COLUMN]}  # modality None there


def hidden_columns(schema: S.Schema, modality: str) -> list[str]:
    """The item table columns that zeroed make `modality` missing: its content and what says it is present."""
    return [c.name for c in schema.item_columns(modality)] + _PRESENCE_COLUMNS.get(modality, [])


@contextlib.contextmanager
def hidden(table: dict[str, tf.Variable], columns: list[str]) -> Iterator[None]:
    """The item tower's `table` with `columns` zeroed inside the block, as they were after it."""
    saved = {name: table[name].numpy() for name in columns}
    try:
        for name in columns:
            table[name].assign(tf.zeros_like(table[name]))
        yield
    finally:
        for name, value in saved.items():
            table[name].assign(value)


def hidden_scores(step: Callable, dataset: tf.data.Dataset, table: dict[str, tf.Variable], schema: S.Schema,
                  modalities: list[str], labels: np.ndarray) -> dict[str, np.ndarray]:
    """{modality: probability per example with it hidden}, one pass over `dataset` (`(features, raw, label)`
    batches, read in a fixed order) per hideable modality of `modalities`. `step(features)` gives the
    "probability" of a batch; `labels` are the full pass's, which each pass must see again in the same order."""
    scores = {}
    for modality in modalities:
        if modality not in HIDEABLE:
            continue
        with hidden(table, [name for name in hidden_columns(schema, modality) if name in table]):
            batches = [(step(features)["probability"].numpy(), label.numpy()) for features, _, label in dataset]
        seen = np.concatenate([label for _, label in batches])
        if not np.array_equal(seen, labels):  # each example must meet its own score
            raise RuntimeError(f"the pass with {modality} hidden read the split in another order or size")
        scores[modality] = np.concatenate([p for p, _ in batches])
    return scores


def _drop(full: float, hidden_auc: float) -> Optional[float]:
    return None if np.isnan(full) or np.isnan(hidden_auc) else float(full - hidden_auc)


def importance(labels: np.ndarray, probabilities: np.ndarray, scores: dict[str, np.ndarray], categories: np.ndarray,
               category_kind: Optional[dict[str, str]] = None) -> dict:
    """The "modality_importance" of an evaluation from the full pass's `labels` and `probabilities`, the hidden
    passes' `scores` ({modality: probabilities}) and each example's category name (`categories`): "overall",
    "by_category" ({category: {"examples", "drop"}}) and, with `category_kind` ({category: kind}),
    "by_kind" ({kind: {"examples", "categories", "drop"}}, the AUC recomputed on the kind's examples; categories
    without a kind are left out), else None. Every "drop" is {modality: AUC(all) - AUC(modality hidden)}."""
    def drops(rows: np.ndarray) -> dict:
        full = M.auc(labels[rows], probabilities[rows])
        return {m: _drop(full, M.auc(labels[rows], s[rows])) for m, s in scores.items()}

    by_category = {str(c): {"examples": int((categories == c).sum()), "drop": drops(categories == c)}
                   for c in np.unique(categories)}
    by_kind = None
    if category_kind is not None:
        names, position = np.unique(categories, return_inverse=True)
        kinds = np.array([category_kind.get(str(c), "") for c in names], dtype=object)[position.reshape(-1)]
        by_kind = {}
        for kind in sorted(set(kinds) - {""}):
            rows = kinds == kind
            by_kind[kind] = {"examples": int(rows.sum()), "categories": sorted(set(categories[rows].tolist())),
                             "drop": drops(rows)}
    return {"modalities": list(scores), "overall": drops(np.ones(len(labels), bool)), "by_category": by_category,
            "by_kind": by_kind}


def read_world(path: str) -> dict[str, str]:
    """The category kinds ({category: kind}) of a generated dataset's `world.json` (`category_kind`)."""
    text = files.read_text(path)
    if text is None:
        raise S.SchemaError(f"no world file {path}")
    try:
        world = json.loads(text)
    except json.JSONDecodeError as err:
        raise S.SchemaError(f"{path} is not JSON: {err}") from err
    if not isinstance(world, dict) or not isinstance(world.get("category_kind"), dict):
        raise S.SchemaError(f"{path} holds no category_kind: not the world.json of a generated dataset")
    return world["category_kind"]


def importance_by_kind(evaluation: dict, world: dict) -> dict:
    """{kind: {modality: AUC drop}} of an evaluation's "modality_importance" for the category kinds of `world`
    (a generated dataset's world.json). The drops recomputed on each kind's examples where the evaluation had
    these kinds (`evaluate(..., world_file=...)`), else the example-weighted mean of its categories' drops.
    Empty when the evaluation measured no modality importance or the world names no kinds."""
    measured = evaluation.get("modality_importance")
    kinds = world.get("category_kind") or {}
    if not measured or not kinds:
        return {}
    if measured.get("by_kind") is not None and all(
            kinds.get(c) == kind for kind, row in measured["by_kind"].items() for c in row["categories"]):
        return {kind: dict(row["drop"]) for kind, row in measured["by_kind"].items()}
    sums: dict = {}
    for category, row in measured["by_category"].items():
        kind = kinds.get(category)
        if kind is None:
            continue
        for modality, drop in row["drop"].items():
            if drop is not None:
                total = sums.setdefault(kind, {}).setdefault(modality, [0.0, 0])
                total[0] += drop * row["examples"]
                total[1] += row["examples"]
    return {kind: {m: s / n for m, (s, n) in row.items() if n} for kind, row in sums.items()}
