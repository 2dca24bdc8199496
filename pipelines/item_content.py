"""`pipeline.item_content: examples`: every example carries the item table content of its items.

The item table's rows (keyed by item id, a side input of the Examples stage) are copied into the
candidate's `item_content_<column>` features and, position by position, into the behaviour items'
`hist_content_<column>` features (flat, row after row; zeros at padding positions). So the values a
model reads from the examples are exactly the table's, and a model trained on them is served from the
table with the same weights (`Schema.without_content_features`).
"""
from __future__ import annotations

import math

from marn_tf import schema as S
from marn_tf.config import Config
from marn_tf.pipelines import example_schema as ES


class ItemContent:
    """Writes the item content features of one example from `rows` ({item id: content values}, `entry`'s)."""

    def __init__(self, config: Config):
        self.columns = [c.name for c in ES.content_columns(config)]
        self.zeros = tuple(_zero(c) for c in ES.content_columns(config))  # the content of padding and missing items

    def entry(self, row: dict) -> tuple[str, tuple]:
        """(item id, the row's content values in column order): the side input's entry for one table row."""
        return row["item_id"], tuple(row[name] for name in self.columns)

    def candidate(self, item_id: str, rows: dict) -> tuple[dict, bool]:
        """(the candidate's content features, whether the item had a row)."""
        values = rows.get(item_id)
        return dict(zip(map(S.candidate_content_feature, self.columns), values or self.zeros)), values is not None

    def behaviour(self, item_ids: list[str], rows: dict) -> tuple[dict, int]:
        """(the behaviour items' content features, flat, and how many non-padding items had no row)."""
        flat = [[] for _ in self.columns]
        missing = 0
        for item_id in item_ids:
            values = rows.get(item_id) if item_id else None
            missing += bool(item_id) and values is None
            for target, value in zip(flat, values or self.zeros):
                if isinstance(value, (list, tuple)):
                    target.extend(value)
                else:
                    target.append(value)
        return dict(zip(map(S.behaviour_content_feature, self.columns), flat)), missing


def _zero(column: S.ItemColumn):
    zero = 0.0 if column.dtype == "float32" else 0
    return [zero] * math.prod(column.shape) if column.shape else zero
