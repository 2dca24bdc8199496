"""Rows of the item feature table (Parquet), one per item of the item vocabulary."""
from __future__ import annotations

from marn_tf import schema as S
from marn_tf.config import Config

from marn_tf.pipelines import example_schema as ES
from marn_tf.pipelines.item_statistics import log2_bucket
from marn_tf.pipelines.records import Item, title_words


def arrow_schema(config: Config):
    """The Parquet schema, from the same column list as schema.json's item_table."""
    import pyarrow as pa

    types = {"int64": pa.int64(), "float32": pa.float32(), "string": pa.string()}
    fields = []
    for c in ES.item_columns(config):
        t = types[c.dtype]
        fields.append(pa.field(c.name, pa.list_(t, c.shape[0]) if c.shape else t))
    return pa.schema(fields)


def item_row(item: Item, indices: dict[str, dict[str, int]], config: Config, image_pca=None) -> dict:
    """Content of one item; `indices[vocabulary][token]` is the token's index (absent -> 0, OOV); `image_pca` (an
    `ImagePca`, with items.image_pca_dim) reduces the image vector."""
    f = config.items
    row = {ES.ITEM_KEY_COLUMN: indices[ES.ITEM_VOCAB][item.item_id], "item_id": item.item_id}
    for name, value in zip(f.id_fields, item.id_values):
        row[name] = indices[name].get(value, 0)
    if f.image:
        if not item.image:
            row[S.IMAGE_COLUMN] = [0.0] * f.stored_image_dim
        else:
            row[S.IMAGE_COLUMN] = image_pca.project(item.image) if image_pca is not None else list(item.image)
        row[S.IMAGE_PRESENT_COLUMN] = int(item.image is not None)
    if f.title:
        words = indices[ES.WORD_VOCAB]
        tokens = [words.get(w, 0) for w in title_words(item.title, f.max_title_tokens)]
        row[S.TITLE_COLUMN] = tokens + [0] * (f.max_title_tokens - len(tokens))
        row[S.TITLE_LENGTH_COLUMN] = len(tokens)
    for name, count in zip(f.statistics, item.statistics):
        row[ES.item_static_stat_column(name)] = log2_bucket(count, config.statistics.num_buckets)
    return row
