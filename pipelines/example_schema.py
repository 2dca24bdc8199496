"""What the pipeline writes, derived from the config: example features, item table columns, schema.

The TFRecord writer and `schema.json` both come from `example_features(config)`, so what is written
and what is declared cannot drift apart.
"""
from __future__ import annotations

from marn_tf import schema as S
from marn_tf.config import Config

from marn_tf.pipelines.item_statistics import RATE_PRIOR_STRENGTH, STATISTIC_NAMES

TIME_GAP_BUCKETS = 32  # 0 = padding, 1 + floor(log2(1 + seconds)) capped: up to ~34 years
ITEM_VOCAB = S.ITEM_VOCABULARY
USER_VOCAB = S.USER_VOCABULARY
WORD_VOCAB = "title_word"
ITEM_KEY_COLUMN = "item_index"
# The fixed feature names: declared here once; the producer (`user_history.py`) writes them by these names.
LABEL, USER_ID, ITEM_ID, POSITION, TIMESTAMP, REQUEST_ID = "label", "user_id", "item_id", "position", "timestamp", \
    "request_id"
USER_CTR, ITEM_CTR = "user_ctr", "item_ctr"
HIST_ITEM_ID, HIST_EVENT_TYPE, HIST_TIME_GAP, HIST_LENGTH = "hist_item_id", "hist_event_type", "hist_time_gap", \
    "hist_length"


def context_feature(name: str) -> str:
    return f"context_{name}"


def profile_feature(name: str) -> str:
    return f"user_{name}"


def item_stat_feature(name: str) -> str:
    return f"item_stat_{name}"


def hist_stat_feature(name: str) -> str:
    return f"hist_stat_{name}"


def item_static_stat_column(name: str) -> str:
    return f"stat_{name}"


def example_features(config: Config) -> list[S.FeatureSpec]:
    """Every feature of a written tf.train.Example, in a fixed order."""
    seq = config.sequence.max_length
    nb = config.statistics.num_buckets
    F = S.FeatureSpec
    features = [
        F(LABEL, "int64", [], [S.LABEL], 0, description="1 if the impression was clicked"),
        F(USER_ID, "string", [], [S.USER], "", vocabulary=USER_VOCAB),
        F(ITEM_ID, "string", [], [S.CANDIDATE, S.ITEM_KEY], "", vocabulary=ITEM_VOCAB,
          description="candidate item; its content comes from the item table"),
    ]
    features += [F(context_feature(c), "string", [], [S.CONTEXT], "", vocabulary=context_feature(c))
                 for c in config.events.context]
    features.append(F(POSITION, "int64", [], [S.CONTEXT], 0, description="1-based slot; 0 = unknown"))
    features += [F(profile_feature(u), "string", [], [S.USER], "", vocabulary=profile_feature(u))
                 for u in config.users.features]
    a = f"{RATE_PRIOR_STRENGTH:g}"
    prior = ("p0 = (clicks + 1) / (impressions + 2) of all impressions before the impression's day; "
             "requests should carry it (its default 0 is not a neutral rate)")
    features.append(F(USER_CTR, "float32", [], [S.USER, S.RATE], 0.0,
                      description=f"user's (clicks + {a} p0) / (impressions + {a}) over the user's impressions "
                                  f"strictly before the impression's timestamp; {prior}"))
    features += [F(item_stat_feature(s), "int64", [], [S.CANDIDATE, S.STATISTIC], 0, cardinality=nb,
                   description=f"candidate's {s} before the impression's day, bucketised")
                 for s in STATISTIC_NAMES]
    features.append(F(ITEM_CTR, "float32", [], [S.CANDIDATE, S.STATISTIC, S.RATE], 0.0,
                      description=f"candidate's (clicks + {a} p0) / (impressions + {a}) before the impression's "
                                  f"day; {prior}"))
    features += [
        F(HIST_ITEM_ID, "string", [seq], [S.BEHAVIOUR, S.ITEM_KEY], "", vocabulary=ITEM_VOCAB,
          description="behaviour items strictly before the impression, oldest first, padded with ''"),
        F(HIST_EVENT_TYPE, "int64", [seq], [S.BEHAVIOUR, S.PROPERTY], 0,
          cardinality=len(config.events.behaviour_types) + 1,
          description=f"1 + index in {config.events.behaviour_types}; 0 = padding"),
        F(HIST_TIME_GAP, "int64", [seq], [S.BEHAVIOUR, S.PROPERTY], 0, cardinality=TIME_GAP_BUCKETS,
          description="1 + floor(log2(1 + seconds before the impression)); 0 = padding"),
    ]
    features += [F(hist_stat_feature(s), "int64", [seq], [S.BEHAVIOUR, S.STATISTIC], 0, cardinality=nb,
                   description=f"behaviour item's {s} before the day of that behaviour, bucketised")
                 for s in STATISTIC_NAMES]
    if config.pipeline.item_content == "examples":
        features += content_features(config)
    features += [
        F(HIST_LENGTH, "int64", [], [S.BEHAVIOUR, S.SEQUENCE_LENGTH], 0),
        F(TIMESTAMP, "int64", [], [S.METADATA], 0, description="impression time, epoch seconds"),
        F(REQUEST_ID, "string", [], [S.METADATA], ""),
    ]
    return features


def content_columns(config: Config) -> list[S.ItemColumn]:
    """The item table columns an example carries per item with `pipeline.item_content: examples`: all but the keys."""
    return [c for c in item_columns(config) if c.name not in (ITEM_KEY_COLUMN, "item_id")]


def content_features(config: Config) -> list[S.FeatureSpec]:
    """The candidate's and the behaviour items' content: item table column values, as indices and vectors (not
    strings), 0 for padding positions."""
    seq = config.sequence.max_length
    zero = {"int64": 0, "float32": 0.0}
    candidate = [S.FeatureSpec(S.candidate_content_feature(c.name), c.dtype, list(c.shape),
                               [S.CANDIDATE, S.ITEM_CONTENT], zero[c.dtype],
                               description=f"the candidate's item table column {c.name!r}")
                 for c in content_columns(config)]
    behaviour = [S.FeatureSpec(S.behaviour_content_feature(c.name), c.dtype, [seq, *c.shape],
                               [S.BEHAVIOUR, S.ITEM_CONTENT], zero[c.dtype],
                               description=f"each behaviour item's item table column {c.name!r}; 0 for padding")
                 for c in content_columns(config)]
    return candidate + behaviour


def split_by_sharing(features: list[S.FeatureSpec]) -> tuple[list[S.FeatureSpec], list[S.FeatureSpec]]:
    """(user and behaviour features, the rest): what impressions of one timestamp share, and not."""
    shared = [f for f in features if S.USER in f.tags or S.BEHAVIOUR in f.tags]
    return shared, [f for f in features if f not in shared]


def item_columns(config: Config) -> list[S.ItemColumn]:
    f = config.items
    C = S.ItemColumn
    columns = [C(ITEM_KEY_COLUMN, "int64", [], None, description="row index = item vocabulary index"),
               C("item_id", "string", [], None)]
    columns += [C(name, "int64", [], "id", vocabulary=name) for name in f.id_fields]
    if f.image:
        columns += [C(S.IMAGE_COLUMN, "float32", [f.stored_image_dim], "image",
                      description="the catalog's image vector" + (", PCA-reduced (image_pca.json)" if f.image_pca_dim
                                                                    else "")),
                    C(S.IMAGE_PRESENT_COLUMN, "int64", [], None, description="1 if the catalog had an image vector")]
    if f.title:
        columns += [C(S.TITLE_COLUMN, "int64", [f.max_title_tokens], "text", vocabulary=WORD_VOCAB,
                      description="title word indices, padded with 0"),
                    C(S.TITLE_LENGTH_COLUMN, "int64", [], None, description="0 when the title is missing")]
    columns += [C(item_static_stat_column(s), "int64", [], "statistic", cardinality=config.statistics.num_buckets,
                  description="catalog counter, log2-bucketised; 0 = missing")
                for s in f.statistics]
    return columns


def vocabulary_names(config: Config) -> list[str]:
    """Every vocabulary the pipeline writes (file vocab/<name>.txt)."""
    names = [ITEM_VOCAB, USER_VOCAB]
    names += [context_feature(c) for c in config.events.context]
    names += [profile_feature(u) for u in config.users.features]
    names += list(config.items.id_fields)
    if config.items.title:
        names.append(WORD_VOCAB)
    return names


def vocabulary_file(name: str) -> str:
    return f"vocab/{name}.txt"


def split_pattern(split: str) -> str:
    return f"{split}/part-*.tfrecord.gz"


def build_schema(config: Config, vocabulary_sizes: dict[str, int], num_with_id_embedding: int,
                 split_examples: dict[str, int]) -> S.Schema:
    """The schema of the job's output, from its exact counts (vocabulary sizes, items with an ID embedding,
    examples per split)."""
    return S.Schema(
        label=LABEL,
        sequence_length=config.sequence.max_length,
        features=example_features(config),
        vocabularies={name: S.VocabularySpec(vocabulary_file(name), vocabulary_sizes.get(name, 0))
                      for name in vocabulary_names(config)},
        item_table=S.ItemTableSpec(files="item_table/part-*.parquet", key=ITEM_KEY_COLUMN,
                                   columns=item_columns(config), num_with_id_embedding=num_with_id_embedding,
                                   category_column=config.items.category_field),
        splits={s: split_pattern(s) for s in S.SPLITS},
        split_examples=dict(split_examples),
    )
