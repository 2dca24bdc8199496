"""tf.data input from the pipeline's TFRecords, parsed with the schema.

`make_dataset(directory, schema, "train", batch_size=1024)` yields `(features, label)` batches,
features keyed by the schema's names with its fixed shapes. Files are interleaved in parallel,
shuffled by file and by record, batched before parsing (`tf.io.parse_example` on a batch is much
cheaper than per record) and prefetched. `deterministic=True` with a `seed` gives the same order on
every run; batches keep a fixed shape by default (`drop_remainder`), since XLA recompiles for a new
shape. `shard` reads one of several disjoint parts of a split (one worker's), and `sample_batches` keeps a
fixed, seeded sample of a split's examples.
"""
from __future__ import annotations

from typing import Optional

from marn_tf.schema import Schema, SchemaError


def split_files(directory: str, schema: Schema, split: str) -> list[str]:
    """The split's TFRecord files; SchemaError if there are none or the run wrote no example."""
    from apache_beam.io.filesystems import FileSystems

    if split not in schema.splits:
        raise SchemaError(f"unknown split {split!r}; the schema has {sorted(schema.splits)}")
    pattern = FileSystems.join(directory, schema.splits[split])
    files = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    if not files:
        raise SchemaError(f"no TFRecords match {pattern}: run `marn preprocess` first, or check the directory")
    if schema.split_examples.get(split) == 0:
        raise SchemaError(f"the {split} split has no examples (schema.json, split_examples; report.md says why): "
                          "check the split dates in the config")
    return files


def make_dataset(directory: str, schema: Schema, split: str, batch_size: int, *, shuffle: Optional[bool] = None,
                 shuffle_buffer: int = 100_000, repeat: bool = False, deterministic: bool = False,
                 seed: Optional[int] = None, drop_remainder: bool = True, shard: Optional[tuple] = None):
    """Batches of (features, label) from `split`; shuffled by default for "train" only.

    Args:
      shard: `(count, index)`: read only part `index` of `count` disjoint parts that together hold every record
        of the split once (`index` may be a scalar tensor, e.g. a worker's index). The parts are sets of files
        when the split has at least `count` files, else every `count`-th record of each file. Each part is
        shuffled with `seed + index`, so that the parts do not pass through the same users in step.
    """
    import tensorflow as tf

    files = split_files(directory, schema, split)
    shuffle = split == "train" if shuffle is None else shuffle
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices(files)
    by_file = shard is not None and len(files) >= shard[0]
    if by_file:
        ds = ds.shard(*shard)
    if shard is not None and seed is not None:
        seed = seed + shard[1]

    def read(file):
        records = tf.data.TFRecordDataset(file, compression_type="GZIP")
        # within a file, so that the parts do not depend on the order the interleave reads the files in
        return records.shard(*shard) if shard is not None and not by_file else records

    if shuffle:
        ds = ds.shuffle(len(files), seed=seed)
    ds = ds.interleave(read, cycle_length=min(len(files), 8), num_parallel_calls=autotune,
                       deterministic=deterministic)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed)
    if repeat:
        ds = ds.repeat()
    spec, label = schema.parse_spec(), schema.label

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        return features, features.pop(label)

    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(parse, num_parallel_calls=autotune, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return ds.with_options(options).prefetch(autotune)


def sample_batches(dataset, fraction: float, seed: int, batch_size: int):
    """A fixed random sample of the examples of `dataset` (batches of `(features, label)`), repeated, in full batches
    of `batch_size`.

    Each example is kept with probability `fraction`, drawn from `seed` and its position, so a read in the same
    order (unshuffled, deterministic) keeps the same examples on every pass and in every run with the same seed.
    The whole of `dataset` is read to draw the sample: it spreads over the split, not over its first records.
    """
    import tensorflow as tf

    def keep(position, batch):
        label = batch[1]
        draw = tf.random.stateless_uniform(tf.shape(label)[:1], seed=tf.stack([tf.constant(seed, tf.int64), position]))
        return tf.nest.map_structure(lambda value: tf.boolean_mask(value, draw < fraction), batch)

    return dataset.enumerate().map(keep).unbatch().repeat().batch(batch_size, drop_remainder=True)
