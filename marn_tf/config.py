"""The one YAML config of a marn-tf run: where the raw data is, what its fields are called, and the
choices the pipeline makes (sequence length, vocabulary thresholds, split dates, dead-letter limit), the model
section (`marn_tf/model_config.py`), the training and runtime sections (`marn_tf/train_config.py`), and what
`marn run` does around them (`marn_tf/run_config.py`).

`Config.load("my.yaml", overrides=["sequence.max_length=30"], presets=["din"])` reads it: the file, then each
registered preset's overrides (`marn_tf/presets.py`), then `overrides`. Every section below is a typed
dataclass, and `docs/pipeline.md` shows a complete annotated example.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import os
from typing import Optional, Sequence

from marn_tf.config_loader import ConfigError, check_range, from_dict, load_yaml, to_dict
from marn_tf.model_config import EARLIER_DEFAULTS, ModelConfig
from marn_tf.presets import overrides_of
from marn_tf.run_config import RunConfig
from marn_tf.train_config import RUNTIME_KEYS, RuntimeConfig, TrainConfig, check_compatible

log = logging.getLogger(__name__)
FORMATS = ("auto", "jsonl", "csv", "parquet")


@dataclasses.dataclass
class InputSpec:
    """One raw table: a file pattern (local, gs://, anything Beam's FileSystems read) and its format.

    `format: auto` picks the format from the extension: .jsonl/.json, .csv, .parquet, each optionally
    .gz (Parquet compresses internally).
    """

    path: str  # a file or a glob pattern of files
    format: str = "auto"  # "jsonl", "csv", "parquet", or "auto": from the extension (.jsonl/.json, .csv, .parquet,
    # each optionally .gz)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ConfigError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")


@dataclasses.dataclass
class Inputs:
    """The raw tables: where each is and its format."""

    events: InputSpec  # the event log: impressions and behaviour events
    items: InputSpec  # the item catalog
    users: Optional[InputSpec] = None  # the user profile table (optional)


@dataclasses.dataclass
class EventFields:
    """Column names of the impression/behaviour log, one row per event."""

    user_id: str = "user_id"  # column of the user's id
    item_id: str = "item_id"  # column of the item's id
    timestamp: str = "timestamp"  # epoch seconds (int/float) or ISO-8601; naive times are UTC
    event_type: str = "event_type"  # column of the event's type: impression_type or one of behaviour_types
    clicked: str = "clicked"  # 0/1, required on impressions, ignored on behaviour events
    request_id: Optional[str] = "request_id"  # optional column
    position: Optional[str] = "position"  # optional column, 1-based slot of the impression
    context: list[str] = dataclasses.field(default_factory=lambda: ["query"])  # optional categoricals
    impression_type: str = "impression"  # the event type of an impression (an item shown, clicked or not)
    # the event types of the behaviour sequence; an event of neither these nor impression_type is rejected
    behaviour_types: list[str] = dataclasses.field(default_factory=lambda: ["click", "cart", "purchase"])
    # the behaviour type that logs a click: a clicked impression counts in `user_ctr` from its click event on
    click_type: Optional[str] = "click"

    def __post_init__(self):
        if not self.behaviour_types:
            raise ConfigError("behaviour_types must name at least one event type")
        if self.impression_type in self.behaviour_types:
            raise ConfigError("impression_type must not also be a behaviour type")
        if self.click_type is not None and self.click_type not in self.behaviour_types:
            raise ConfigError(f"events.click_type {self.click_type!r} is not one of events.behaviour_types "
                              f"{self.behaviour_types}: name the behaviour type that logs a click, or null when "
                              "the log has none (then user_ctr counts no clicks)")


@dataclasses.dataclass
class ItemFields:
    """Column names of the item catalog and the declared shapes of its content."""

    item_id: str = "item_id"  # column of the item's id
    # categorical columns of the ID modality besides the item id, each with its own vocabulary and embedding
    id_fields: list[str] = dataclasses.field(default_factory=lambda: ["shop_id", "brand_id", "category_id"])
    category_field: str = "category_id"  # the ID field reports slice modality weights by
    image: Optional[str] = "image_embedding"  # float vector of image_dim, may be null/empty
    image_dim: int = 64  # length of the image vectors
    title: Optional[str] = "title"  # free text, may be null/empty
    max_title_tokens: int = 16  # words of a title kept, the first ones
    # > 0: the item table (and examples, with pipeline.item_content: examples) hold the image vectors reduced to
    # this many dimensions by a PCA fitted in the job on the training window's items (image_pca.json says how)
    image_pca_dim: int = 0
    # catalog counter columns (the statistic modality), each bucketised (statistics.num_buckets)
    statistics: list[str] = dataclasses.field(default_factory=lambda: ["sales_count", "review_count"])
    # ISO date the catalog counters in `statistics` were read at: it must be no later than split.train_start (the
    # counters of a catalog exported later count sales the impressions had not seen yet)
    statistics_as_of: Optional[str] = None

    def __post_init__(self):
        if self.statistics_as_of is not None:
            parse_utc_seconds(self.statistics_as_of, "items.statistics_as_of")
        if self.category_field not in self.id_fields:
            raise ConfigError(f"category_field {self.category_field!r} must be one of id_fields")
        if self.image:
            check_range(self, ["image_dim"], 1, integer=True, meaning="the length of the image vectors")
        check_range(self, ["max_title_tokens"], 1, integer=True, meaning="the words of a title kept")
        check_range(self, ["image_pca_dim"], 0, integer=True, meaning="0 keeps the image vectors whole")
        if self.image_pca_dim and (not self.image or not 0 < self.image_pca_dim < self.image_dim):
            raise ConfigError(f"image_pca_dim is {self.image_pca_dim}: it must be between 1 and image_dim - 1 "
                              f"({self.image_dim - 1}) and needs items.image set, or 0 to keep the image vectors whole")

    @property
    def stored_image_dim(self) -> int:
        """The length of the image vectors the item table and examples hold: image_dim, or image_pca_dim."""
        return self.image_pca_dim or self.image_dim


@dataclasses.dataclass
class UserFields:
    """Column names of the optional user profile table (categorical features)."""

    user_id: str = "user_id"  # column of the user's id
    features: list[str] = dataclasses.field(default_factory=list)  # categorical columns the model reads


@dataclasses.dataclass
class SequenceConfig:
    """The behaviour sequence of each impression: the user's events before it."""

    max_length: int = 50  # behaviour items kept per impression, the most recent ones

    def __post_init__(self):
        check_range(self, ["max_length"], 1, integer=True, meaning="behaviour items kept per impression")


@dataclasses.dataclass
class VocabularyConfig:
    """Vocabularies are counted over the training window only; rarer values map to the OOV index 0."""

    min_count: int = 2  # the least count that gives a value its own index: events for an item id, distinct items
    # for a value of another ID field or a title word

    def __post_init__(self):
        check_range(self, ["min_count"], 1, integer=True, meaning="rarer values map to the OOV index 0")


@dataclasses.dataclass
class StatisticsConfig:
    """Bucketisation of counters (log2 buckets; bucket 0 means 'no data')."""

    num_buckets: int = 20  # buckets per counter, bucket 0 included

    def __post_init__(self):
        check_range(self, ["num_buckets"], 3, integer=True, meaning="bucket 0 means no data, then log2 buckets")


@dataclasses.dataclass
class SplitConfig:
    """Time split of impressions: train < train_end <= validation < valid_end <= test.

    Impressions before `train_start` (if set) only serve as history. Dates are ISO-8601 (UTC).
    """

    train_end: str  # training impressions are before it, validation ones from it on
    valid_end: str  # validation impressions are before it, test ones from it on
    train_start: Optional[str] = None  # impressions before it serve as history only; null: none do

    def __post_init__(self):
        start, end, valid_end = self.boundaries
        if not end < valid_end or (start is not None and not start < end):
            raise ConfigError("split dates must satisfy train_start < train_end < valid_end")

    @functools.cached_property
    def boundaries(self) -> tuple[Optional[int], int, int]:
        """(train_start or None, train_end, valid_end) in epoch seconds."""
        start = parse_utc_seconds(self.train_start, "train_start") if self.train_start else None
        return start, parse_utc_seconds(self.train_end, "train_end"), parse_utc_seconds(self.valid_end, "valid_end")


ITEM_CONTENT_SOURCES = ("table", "examples")


@dataclasses.dataclass
class PipelineConfig:
    """The Beam job: how many rejected records fail it, and what it writes."""

    max_dead_letter_rate: float = 0.05  # fail the job when more of a table's records are rejected
    max_file_dead_letter_rate: float = 0.5  # ...or when more of one file's records are rejected on reading
    # TFRecord shards per split. 0 lets the runner decide (a file per bundle): a fixed number adds a
    # shuffle of every example, measured 1.4x slower with 3.7x the peak memory on the local runner.
    num_shards: int = 0
    # Where training reads the item content (image, title, ID fields, catalog counters) from. "table": the item
    # table, held in the model (examples carry item ids only). "examples": every example carries its candidate's
    # and behaviour items' content (item_content_* and hist_content_* features), so training holds no per-item
    # content and its memory does not grow with the catalog; examples grow by the content of 1 + max_length items.
    item_content: str = "table"

    def __post_init__(self):
        check_range(self, ["max_dead_letter_rate"], 0, 1, meaning="the share of a table's records rejected")
        check_range(self, ["max_file_dead_letter_rate"], 0, 1, meaning="the share of one file's records rejected")
        check_range(self, ["num_shards"], 0, integer=True, meaning="0 lets the runner decide")
        if self.item_content not in ITEM_CONTENT_SOURCES:
            raise ConfigError(f"item_content is {self.item_content!r}: use one of {', '.join(ITEM_CONTENT_SOURCES)}")


@dataclasses.dataclass
class Config:
    inputs: Inputs
    split: SplitConfig
    events: EventFields = dataclasses.field(default_factory=EventFields)
    items: ItemFields = dataclasses.field(default_factory=ItemFields)
    users: UserFields = dataclasses.field(default_factory=UserFields)
    sequence: SequenceConfig = dataclasses.field(default_factory=SequenceConfig)
    vocabulary: VocabularyConfig = dataclasses.field(default_factory=VocabularyConfig)
    statistics: StatisticsConfig = dataclasses.field(default_factory=StatisticsConfig)
    pipeline: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def __post_init__(self):
        check_compatible(self.model, self.train, self.runtime)
        self._check_statistics_as_of()

    def _check_statistics_as_of(self) -> None:
        """Catalog counters read after the training window starts count the future of every impression."""
        if not self.items.statistics or self.items.statistics_as_of is None:
            return  # marn preprocess warns when counters carry no as-of date
        as_of = parse_utc_seconds(self.items.statistics_as_of, "items.statistics_as_of")
        start, train_end, _ = self.split.boundaries
        limit, limit_key = (start, "split.train_start") if start is not None else (train_end, "split.train_end")
        if as_of > limit:
            raise ConfigError(
                f"items.statistics_as_of {self.items.statistics_as_of} is later than {limit_key} "
                f"{self.split.train_start if start is not None else self.split.train_end}: the catalog counters "
                f"{self.items.statistics} would count sales and reviews the training impressions had not seen. "
                "Export the catalog as of the start of the training window, move split.train_start to "
                "statistics_as_of or later, or drop items.statistics")

    @classmethod
    def load(cls, path: str, overrides: Sequence[str] = (), presets: Sequence[str] = ()) -> "Config":
        """The file at `path`, with the registered `presets`' overrides applied in order, then `overrides`.
        A relative inputs path written in the file is read from the file's folder (one given by an override, from
        the working directory)."""
        overrides = overrides_of(presets) + list(overrides)
        given = {o.split("=", 1)[0].strip() for o in overrides}
        return load_yaml(cls, path, overrides,
                         migrate=lambda data: move_runtime_keys(resolve_input_paths(data, path, given)))

    @classmethod
    def load_run(cls, path: str) -> "Config":
        """A run's saved config (`run_config.yaml`), as `load` reads it, except that a model key added later whose
        default changed (`EARLIER_DEFAULTS`) takes the value the run was trained with when the file lacks it."""
        def migrate(data: dict) -> dict:
            if isinstance(data.get("model"), dict):
                data = {**data, "model": {**EARLIER_DEFAULTS, **data["model"]}}
            return move_runtime_keys(resolve_input_paths(data, path, set()))

        return load_yaml(cls, path, (), migrate=migrate)

    @classmethod
    def from_dict(cls, data: dict) -> "Config":
        return from_dict(cls, move_runtime_keys(data))

    def to_dict(self) -> dict:
        return to_dict(self)


def move_runtime_keys(data: dict) -> dict:
    """A config (or a run's saved one) written before `runtime:` existed has its keys under `train:`: moved there,
    with a warning, so older configs and run directories still load."""
    train = data.get("train")
    moved = [key for key in RUNTIME_KEYS if isinstance(train, dict) and key in train]
    if not moved:
        return data
    clashing = [key for key in moved if key in (data.get("runtime") or {})]
    if clashing:
        raise ConfigError(f"train.{clashing[0]} and runtime.{clashing[0]} are both set: keep runtime.{clashing[0]}")
    log.warning("%s moved to the runtime: section (runtime.%s): read from train: this time; update the config",
                ", ".join(f"train.{key}" for key in moved), moved[0])
    runtime = {**(data.get("runtime") or {}), **{key: train[key] for key in moved}}
    return {**data, "train": {k: v for k, v in train.items() if k not in moved}, "runtime": runtime}


def resolve_input_paths(data: dict, config_path: str, overridden: set) -> dict:
    """`data` with each relative `inputs.<table>.path` joined to the folder of `config_path` (local or a URL),
    except the paths in `overridden` keys."""
    inputs = data.get("inputs")
    if not isinstance(inputs, dict):
        return data
    url = "://" in config_path
    folder = config_path.rsplit("/", 1)[0] if url else os.path.dirname(os.path.abspath(config_path))
    resolved = {}
    for table, spec in inputs.items():
        path = spec.get("path") if isinstance(spec, dict) else None
        keep = not isinstance(path, str) or not path or "://" in path or os.path.isabs(path) or bool(
            {f"inputs.{table}.path", f"inputs.{table}", "inputs"} & overridden)
        resolved[table] = spec if keep else {**spec, "path": f"{folder}/{path}" if url else os.path.join(folder, path)}
    return {**data, "inputs": resolved}


def parse_utc_seconds(value: str, key: str = "timestamp") -> int:
    """ISO-8601 date or datetime -> epoch seconds; naive values are UTC."""
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as err:
        raise ConfigError(f"{key}: {value!r} is not an ISO-8601 date") from err
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp())
