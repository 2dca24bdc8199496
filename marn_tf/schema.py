"""The data contract between the pipeline, training and the exported model.

The pipeline writes `schema.json` next to its TFRecords; training and export read it and build
everything from it: the tf.Example parse spec, the vocabulary lookups, the item feature table's
columns and which modality each belongs to. Nothing downstream hard-codes a feature name.

Layout of a pipeline output directory (paths in the schema are relative to it, and confined to it: a path
that is absolute, has a scheme or `..`, or leads out through a link is refused when the schema is read):

    schema.json
    train/part-*.tfrecord.gz, validation/..., test/...   tf.train.Example, one per impression
    vocab/<name>.txt                                     one token a line; line k has index k+1, 0 is OOV
    item_table/part-*.parquet                            item content, one row per item vocabulary index
    dead_letter/part-*.jsonl.gz                          rejected records with their source and reason
    report.json, report.md                               counts of what happened
    counts.json                                          the raw counts the report is made from
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from marn_tf.config_loader import ConfigError, from_dict

SCHEMA_VERSION = 1
SCHEMA_FILE = "schema.json"
DTYPES = ("int64", "float32", "string")
MODALITIES = ("id", "image", "text", "statistic")
SPLITS = ("train", "validation", "test")  # the pipeline's time-ordered splits, each a directory of TFRecords
EVALUATION_SPLITS = SPLITS[1:]  # held out from training: where a model is chosen (validation) and measured (test)
# Vocabularies the model reads by role: item ids (keys of the item table) and user ids (GAUC's groups).
ITEM_VOCABULARY = "item_id"
USER_VOCABULARY = "user_id"
# Item table columns the model reads by role: the content of a modality and what says it is present.
IMAGE_COLUMN = "image"
IMAGE_PRESENT_COLUMN = "has_image"  # 1 if the catalog had an image vector
TITLE_COLUMN = "title_tokens"
TITLE_LENGTH_COLUMN = "title_length"  # 0 when the title is missing

# Feature tags; a model picks its inputs by tag, never by name.
LABEL = "label"
USER = "user"
CONTEXT = "context"
CANDIDATE = "candidate"
BEHAVIOUR = "behaviour"
ITEM_KEY = "item_key"  # a string item id, looked up in the item vocabulary / item table
STATISTIC = "statistic"
RATE = "rate"  # a probability in [0, 1]: the model takes its logit; the no-model floor sums them
PROPERTY = "behaviour_property"
SEQUENCE_LENGTH = "sequence_length"
ITEM_CONTENT = "item_content"  # an item table column's value carried by the example (`pipeline.item_content: examples`)
METADATA = "metadata"  # carried for evaluation and debugging, never a model input


def candidate_content_feature(column: str) -> str:
    """The example feature holding item table column `column` of the candidate (with the ITEM_CONTENT tag)."""
    return f"item_content_{column}"


def behaviour_content_feature(column: str) -> str:
    """The example feature holding item table column `column` of every behaviour item, [sequence_length, ...]."""
    return f"hist_content_{column}"


class SchemaError(ConfigError):
    """A schema file that is missing, inconsistent, or does not match the data or config."""


def tf_dtype(dtype: str):
    """The `tf.DType` of a schema dtype ("int64", "float32", "string"); TensorFlow is imported only here, so the
    pipeline's workers read schemas without it."""
    import tensorflow as tf

    return {"int64": tf.int64, "float32": tf.float32, "string": tf.string}[dtype]


@dataclasses.dataclass
class FeatureSpec:
    """One tf.train.Example feature: fixed shape, with a vocabulary or a cardinality if categorical."""

    name: str
    dtype: str
    shape: list[int]
    tags: list[str]
    default: Any = None
    vocabulary: Optional[str] = None  # name in Schema.vocabularies (string ids)
    cardinality: Optional[int] = None  # number of values of an int64 bucket feature, 0 included
    description: str = ""

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise SchemaError(f"feature {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}")


@dataclasses.dataclass
class VocabularySpec:
    """A vocabulary file of `size` tokens; index 0 is reserved for out-of-vocabulary values."""

    file: str
    size: int
    num_oov: int = 1

    @property
    def input_dim(self) -> int:
        """Rows an embedding over this vocabulary needs (OOV included)."""
        return self.size + self.num_oov


@dataclasses.dataclass
class ItemColumn:
    """One column of the item feature table."""

    name: str
    dtype: str
    shape: list[int]
    modality: Optional[str]  # one of MODALITIES; None for keys and masks
    vocabulary: Optional[str] = None
    cardinality: Optional[int] = None
    description: str = ""


@dataclasses.dataclass
class ItemTableSpec:
    """Item content indexed by the item vocabulary: row i describes the item with index i.

    Row 0 (out-of-vocabulary item) is not stored; loaders fill it with zeros and empty masks. Items are
    ordered by training-window frequency, so the first `num_with_id_embedding` items (seen at least
    `vocabulary.min_count` times) get their own ID embedding and the rest share the OOV one, while
    every catalog item keeps its content (image, title, ...).
    """

    files: str
    key: str
    columns: list[ItemColumn]
    num_with_id_embedding: int
    category_column: Optional[str] = None  # the ID column that reports slice by; None in schemas before 2026-11-30


@dataclasses.dataclass
class Schema:
    label: str
    sequence_length: int
    features: list[FeatureSpec]
    vocabularies: dict[str, VocabularySpec]
    item_table: ItemTableSpec
    splits: dict[str, str]  # split name -> TFRecord file pattern
    split_examples: dict[str, int] = dataclasses.field(default_factory=dict)  # examples written per split (empty
    # in schemas before 2026-11-30)
    version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.version != SCHEMA_VERSION:
            raise SchemaError(f"schema version {self.version} is not supported (expected {SCHEMA_VERSION}); "
                              "re-run `marn preprocess`")
        names = [f.name for f in self.features]
        if len(names) != len(set(names)):
            raise SchemaError(f"duplicate feature names in schema: {names}")
        if self.label not in names:
            raise SchemaError(f"label feature {self.label!r} is not among the features")
        for f in self.features:
            if f.vocabulary is not None and f.vocabulary not in self.vocabularies:
                raise SchemaError(f"feature {f.name!r} names an unknown vocabulary {f.vocabulary!r}")
        for c in self.item_table.columns:
            if c.vocabulary is not None and c.vocabulary not in self.vocabularies:
                raise SchemaError(f"item column {c.name!r} names an unknown vocabulary {c.vocabulary!r}")
        for what, path in self.paths():
            _check_relative(what, path)

    def paths(self) -> list[tuple[str, str]]:
        """(what, path or glob) of every file the schema points at, relative to its data directory."""
        return ([(f"vocabulary {name!r} file", v.file) for name, v in sorted(self.vocabularies.items())]
                + [("item table files", self.item_table.files)]
                + [(f"split {name!r} files", pattern) for name, pattern in sorted(self.splits.items())])

    # -- lookup -------------------------------------------------------------------------------
    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise SchemaError(f"no feature {name!r} in the schema; features: {[f.name for f in self.features]}")

    def features_with_tags(self, *tags: str) -> list[FeatureSpec]:
        """Features that carry every one of `tags`, in schema order."""
        return [f for f in self.features if all(t in f.tags for t in tags)]

    def item_columns(self, modality: str) -> list[ItemColumn]:
        return [c for c in self.item_table.columns if c.modality == modality]

    @property
    def content_in_examples(self) -> bool:
        """True when the examples carry their items' content (ITEM_CONTENT features) for training to read in
        place of the item table (`pipeline.item_content: examples`)."""
        return any(ITEM_CONTENT in f.tags for f in self.features)

    def without_content_features(self) -> "Schema":
        """This schema without the ITEM_CONTENT features: what a model reading the item table takes. The item
        table holds the same values, so an export or evaluation of a model trained on the examples' content
        builds this, fills the table and restores the same weights."""
        return dataclasses.replace(self, features=[f for f in self.features if ITEM_CONTENT not in f.tags])

    # -- tf.data --------------------------------------------------------------------------------
    def parse_spec(self, with_label: bool = True) -> dict:
        """The `tf.io.parse_example` spec of the TFRecords (serving requests: `with_label=False`)."""
        import tensorflow as tf  # imported here so the pipeline's workers can read schemas cheaply

        spec = {}
        for f in self.features:
            if f.name == self.label and not with_label:
                continue
            spec[f.name] = tf.io.FixedLenFeature(f.shape, tf_dtype(f.dtype), default_value=_default_value(f))
        return spec

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Schema":
        return from_dict(cls, data)

    def save(self, directory: str) -> str:
        from apache_beam.io.filesystems import FileSystems  # local paths and gs:// alike

        path = FileSystems.join(directory, SCHEMA_FILE)
        with FileSystems.create(path) as f:
            f.write(json.dumps(self.to_dict(), indent=2, sort_keys=True).encode("utf-8"))
        return path

    @classmethod
    def load(cls, directory_or_file: str) -> "Schema":
        from apache_beam.io.filesystems import FileSystems

        path = directory_or_file
        if not path.endswith(".json"):
            path = FileSystems.join(path, SCHEMA_FILE)
        try:
            with FileSystems.open(path) as f:
                data = json.loads(f.read().decode("utf-8"))
        except (OSError, IOError) as err:
            raise SchemaError(f"no schema at {path}: run `marn preprocess` first, or point at its output "
                              "directory") from err
        except json.JSONDecodeError as err:
            raise SchemaError(f"schema file {path} is not valid JSON: {err}") from err
        schema = cls.from_dict(data)
        if "://" not in path:
            _check_links(os.path.dirname(os.path.abspath(path)), schema)
        return schema


def read_vocabulary(path: str) -> list[str]:
    """The tokens of a vocabulary file; token k (0-based) has index k + 1, index 0 is OOV."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        return f.read().decode("utf-8").splitlines()


def data_digests(directory: str, schema: Schema) -> dict[str, str]:
    """Digests (SHA-256, 16 hex digits) of the contract of the pipeline output in `directory`: "schema", of its
    schema's fields, and "vocabularies", of every vocabulary's name and tokens in index order. Two outputs with
    the same "vocabularies" digest map every id to the same index, so a model trained on one reads the other."""
    import hashlib

    from apache_beam.io.filesystems import FileSystems

    vocabularies = hashlib.sha256()
    for name, spec in sorted(schema.vocabularies.items()):
        vocabularies.update(json.dumps([name, spec.num_oov]).encode("utf-8") + b"\n")
        for token in read_vocabulary(FileSystems.join(directory, spec.file)):  # one a line: no token holds "\n"
            vocabularies.update(token.encode("utf-8") + b"\n")
    fields = json.dumps(schema.to_dict(), sort_keys=True).encode("utf-8")
    return {"schema": hashlib.sha256(fields).hexdigest()[:16], "vocabularies": vocabularies.hexdigest()[:16]}


_GLOB_CHARS = "*?["


def _check_relative(what: str, path: str) -> None:
    """A path from schema.json names a file inside the data directory: relative, no scheme, no `..`."""
    parts = path.replace("\\", "/").split("/")
    if not path or path.startswith(("/", "\\", "~")) or "://" in path or ":" in parts[0] or ".." in parts:
        raise SchemaError(f"schema.json: the {what} {path!r} is not inside the data directory (paths in schema.json "
                          "are relative to it, without '..'): the schema was edited or damaged; re-run `marn "
                          "preprocess`")


def _check_links(directory: str, schema: "Schema") -> None:
    """Every schema path, up to its first wildcard, resolves (links followed) inside `directory`."""
    root = os.path.realpath(directory)
    for what, path in schema.paths():
        fixed = []
        for part in path.split("/"):
            if any(c in part for c in _GLOB_CHARS):
                break
            fixed.append(part)
        real = os.path.realpath(os.path.join(root, *fixed))
        if real != root and not real.startswith(root + os.sep):
            raise SchemaError(f"schema.json in {directory}: the {what} {path!r} leads out of the data directory "
                              f"(to {real}) through a link: re-run `marn preprocess`, or remove the link")


def _default_value(f: FeatureSpec):
    if f.default is None:
        return None
    size = 1
    for d in f.shape:
        size *= d
    return [f.default] * size if f.shape else f.default
