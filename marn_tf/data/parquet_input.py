"""Parquet as an alternate training source, read with pyarrow (tensorflow-io's readers do not load on
TF 2.21).

Layout: `<directory>/<split>/*.parquet`, one row per example, one column per schema feature (fixed-size
lists for sequence features), the schema's `schema.json` beside them. `write_parquet_split` writes that
layout from any batches, e.g. the TFRecords, and `make_parquet_dataset` yields the same
`(features, label)` batches as `make_dataset`.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional

import numpy as np

from marn_tf.schema import Schema, SchemaError, tf_dtype

_NUMPY = {"int64": np.int64, "float32": np.float32, "string": object}


def parquet_files(directory: str, split: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    pattern = FileSystems.join(directory, split, "*.parquet")
    files = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not files:
        raise SchemaError(f"no Parquet files match {pattern} (train.source=parquet expects <data>/<split>/*.parquet)")
    return files


def write_parquet_split(directory: str, split: str, batches: Iterable[tuple[dict, np.ndarray]], schema: Schema) -> str:
    """Writes (features, label) batches as `<directory>/<split>/part-00000.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(os.path.join(directory, split), exist_ok=True)
    path = os.path.join(directory, split, "part-00000.parquet")
    writer = None
    for features, label in batches:
        columns = {f.name: _column(np.asarray(label if f.name == schema.label else features[f.name]), f)
                   for f in schema.features}
        table = pa.table(columns)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    if writer:
        writer.close()
    return path


def _column(values: np.ndarray, f):
    import pyarrow as pa

    if f.dtype == "string":
        values = np.array([v.decode() if isinstance(v, bytes) else v for v in values.reshape(-1)], dtype=object) \
            .reshape(values.shape)
    if not f.shape:
        return pa.array(values)
    flat = pa.array(values.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, int(np.prod(f.shape)))


def make_parquet_dataset(directory: str, schema: Schema, split: str, batch_size: int, *,
                         shuffle: Optional[bool] = None, shuffle_buffer: int = 100_000, repeat: bool = False,
                         seed: Optional[int] = None, drop_remainder: bool = True):
    """Batches of (features, label) from Parquet, with the schema's names, dtypes and shapes."""
    import pyarrow.parquet as pq
    import tensorflow as tf

    files = parquet_files(directory, split)
    shuffle = split == "train" if shuffle is None else shuffle
    features = schema.features
    signature = {f.name: tf.TensorSpec([None, *f.shape], tf_dtype(f.dtype)) for f in features}

    def read():
        for path in files:
            available = pq.ParquetFile(path).schema_arrow.names
            missing = [f.name for f in features if f.name not in available]
            if missing:
                raise SchemaError(f"{path} lacks the schema's features {missing}")
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=[f.name for f in features]):
                yield {f.name: _to_numpy(record_batch.column(f.name), f) for f in features}

    ds = tf.data.Dataset.from_generator(read, output_signature=signature).unbatch()
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    if repeat:
        ds = ds.repeat()
    label = schema.label
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda row: ({k: v for k, v in row.items() if k != label}, row[label]))
    return ds.prefetch(tf.data.AUTOTUNE)


def _to_numpy(column, f) -> np.ndarray:
    if f.shape:
        return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, *f.shape).astype(_NUMPY[f.dtype])
    values = column.to_numpy(zero_copy_only=False)
    return values.astype(_NUMPY[f.dtype]) if f.dtype != "string" else values.astype(object)
