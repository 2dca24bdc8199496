"""The item feature table, loaded as dense arrays indexed by item vocabulary index.

Row i holds the content of the item with index i in `vocab/item_id.txt` (line i-1); row 0 is the
out-of-vocabulary item: zeros and empty masks. Training and the exported model gather candidate and
behaviour items' content from these arrays, so examples carry only item ids.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from marn_tf.schema import ITEM_VOCABULARY, Schema, SchemaError, read_vocabulary

_NUMPY = {"int64": np.int64, "float32": np.float32}


@dataclasses.dataclass
class ItemTable:
    item_ids: list[str]  # item_ids[i] is the item of row i; item_ids[0] == "" (OOV)
    columns: dict[str, np.ndarray]  # column name -> [num_rows, *shape]

    @property
    def num_rows(self) -> int:
        return len(self.item_ids)


def load_item_table(directory: str, schema: Schema) -> ItemTable:
    """Reads `item_table/part-*.parquet` under `directory` and checks it against the vocabulary.

    Raises SchemaError when the table is missing, a column or row is missing, an index repeats, or a
    row's item id differs from the vocabulary's.
    """
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    spec = schema.item_table
    pattern = FileSystems.join(directory, spec.files)
    files = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not files:
        raise SchemaError(f"no item table at {pattern}: run `marn preprocess` first")
    vocabulary = read_vocabulary(FileSystems.join(directory, schema.vocabularies[ITEM_VOCABULARY].file))
    num_rows = len(vocabulary) + 1
    tables = []
    for path in files:
        with FileSystems.open(path) as f:
            tables.append(pq.read_table(f))
    missing = [c.name for c in spec.columns if c.name not in tables[0].column_names]
    if missing:
        raise SchemaError(f"item table {files[0]} lacks the columns {missing} that the schema lists")

    keys = np.concatenate([t.column(spec.key).to_numpy() for t in tables])
    ids = [i for t in tables for i in t.column("item_id").to_pylist()]
    if len(keys) != num_rows - 1 or len(np.unique(keys)) != len(keys) or keys.min() < 1 or keys.max() >= num_rows:
        raise SchemaError(f"item table has {len(keys)} rows with indices {keys.min()}..{keys.max()}, the item "
                          f"vocabulary {num_rows - 1} items: re-run `marn preprocess` so they match")
    wrong = [(int(k), i) for k, i in zip(keys, ids) if vocabulary[k - 1] != i]
    if wrong:
        k, item = wrong[0]
        raise SchemaError(f"item table row {k} is item {item!r}, the vocabulary says {vocabulary[k - 1]!r} "
                          f"({len(wrong)} rows differ): the table and vocabulary come from different runs")

    columns = {}
    for c in spec.columns:
        if c.name in (spec.key, "item_id"):
            continue
        dense = np.zeros([num_rows, *c.shape], dtype=_NUMPY[c.dtype])
        dense[keys] = np.concatenate([_column_array(t, c.name, c.shape) for t in tables])
        columns[c.name] = dense
    item_ids = [""] * num_rows
    for k, i in zip(keys, ids):
        item_ids[k] = i
    return ItemTable(item_ids, columns)


def _column_array(table, name: str, shape: list[int]) -> np.ndarray:
    """A Parquet column as a numpy array [rows, *shape], through Arrow buffers (no Python lists)."""
    column = table.column(name).combine_chunks()
    if shape:  # fixed-size lists: their flat values, reshaped
        return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, *shape)
    return column.to_numpy(zero_copy_only=False)
