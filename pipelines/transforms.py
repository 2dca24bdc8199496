"""The Beam transforms of `marn preprocess` (`preprocess.build_pipeline` wires them): reading and parsing every
input file, the catalog, per-user timelines, tf.train.Examples, training-window counts, vocabularies and the
item table's rows. Each counts what it reads, writes and rejects (the run report's counts)."""
from __future__ import annotations

import collections
import json
import logging
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from marn_tf.config import Config
from marn_tf.pipelines import example_schema as ES
from marn_tf.pipelines import records as R
from marn_tf.pipelines.item_content import ItemContent
from marn_tf.pipelines.item_statistics import day_of
from marn_tf.pipelines.item_table import item_row
from marn_tf.pipelines.raw_io import InputFile, ReadFailure, read_records
from marn_tf.pipelines.run_report import unreadable_key
from marn_tf.example_codec import ExampleEncoder
from marn_tf.pipelines.user_history import HISTORY_ONLY, build_examples, sort_and_deduplicate, split_of
from marn_tf.pipelines.vocabulary import item_vocabulary, ordered_tokens, write_vocabulary

log = logging.getLogger(__name__)

DEAD = "dead"
COUNTS = "counts"
ITEM_COUNT_KEY = "__item__"  # vocabulary-count key of item ids, kept apart: every catalog item is listed


class _CountingDoFn(beam.DoFn):
    """Counts per bundle, emitted once at its end: exact counts on any runner, at little cost."""

    def start_bundle(self):
        self.counts = collections.Counter()

    def finish_bundle(self):
        for key, value in self.counts.items():
            yield beam.pvalue.TaggedOutput(COUNTS, GlobalWindows.windowed_value((key, value)))


# Events and profiles cross the user shuffle as plain tuples, tagged: Beam's coder encodes a plain
# tuple 3-9x faster than a NamedTuple, which it pickles (measured: one event, a 50-event timeline).
_EVENT, _PROFILE = 0, 1
_ITEM, _TIME, _TYPE, _CLICKED = (R.Event._fields.index(f) for f in ("item_id", "timestamp", "event_type", "clicked"))
ITEMS = "items"


class ReadAndParse(_CountingDoFn):
    """An input file -> its parsed records: events and profiles keyed by user (one PCollection, so
    the user shuffle needs no Flatten), catalog items (tagged ITEMS), and DeadLetters.

    Nothing a file holds stops the job: each record is parsed or dead-lettered (`records.parse_record`),
    and the rest of a file that cannot be read to its end is one dead letter naming where it stops.
    """

    def __init__(self, config: Config):
        self.config = config

    def process(self, file: InputFile):
        for raw in read_records(file):
            self.counts[f"in:{file.source}"] += 1
            if isinstance(raw, ReadFailure):
                yield beam.pvalue.TaggedOutput(DEAD, read_failure_letter(file, raw))
                if raw.rest_of_file:
                    self.counts[unreadable_key(file.path, raw.where)] += 1
                continue
            record = R.parse_record(raw, file.source, self.config)
            if isinstance(record, R.DeadLetter):
                yield beam.pvalue.TaggedOutput(DEAD, record)
            elif file.source == "items":
                yield beam.pvalue.TaggedOutput(ITEMS, record)
            else:
                yield record.user_id, (_EVENT if file.source == "events" else _PROFILE, tuple(record))


def read_failure_letter(file: InputFile, failure: ReadFailure) -> R.DeadLetter:
    if failure.rest_of_file:
        return R.DeadLetter(file.source, R.UNREADABLE, f"{file.path} cannot be read past {failure.where}: "
                                                       f"{failure.error}; the rest of the file is skipped",
                            failure.text, file.path)
    return R.DeadLetter(file.source, R.MALFORMED, f"{failure.where}: {failure.error}", failure.text, file.path)


def _dead(source: str, reason: str, detail: str, record) -> R.DeadLetter:
    return R.DeadLetter(source, reason, detail, json.dumps(record._asdict(), ensure_ascii=False))


class KeepFirstItem(beam.DoFn):
    """(item id, [items]) -> the first item (in a deterministic order); the others are duplicates."""

    def process(self, keyed):
        item_id, items = keyed
        first, *rest = sorted(items, key=repr)
        yield item_id, first
        for other in rest:
            yield beam.pvalue.TaggedOutput(DEAD, _dead("items", R.DUPLICATE, f"item_id {item_id} repeats", other))


class BuildTimeline(_CountingDoFn):
    """(user, tagged events and profiles) -> (user, (sorted deduplicated event tuples, profile tuple)).

    Events whose item is not in the catalog (a side input of its ids) are dead-lettered here.
    """

    def __init__(self, config: Config):
        self.config = config

    def process(self, keyed, catalog_ids):
        user_id, tagged = keyed
        known, profiles = [], []
        for tag, record in tagged:
            if tag == _PROFILE:
                profiles.append(record)
                continue
            event = R.Event._make(record)
            if event.item_id in catalog_ids:
                known.append(event)
            else:
                yield beam.pvalue.TaggedOutput(DEAD, _dead("events", R.UNKNOWN_ITEM,
                                                           f"item_id {event.item_id} is not in the catalog", event))
        events, duplicates = sort_and_deduplicate(known, self.config.events.behaviour_types)
        for e in duplicates:
            yield beam.pvalue.TaggedOutput(DEAD, _dead("events", R.DUPLICATE, "same user, item, time, type, request "
                                                                              "and position as an earlier event", e))
        profiles.sort()
        for p in profiles[1:]:
            yield beam.pvalue.TaggedOutput(DEAD, _dead("users", R.DUPLICATE, f"user_id {user_id} repeats",
                                                       R.UserProfile._make(p)))
        if profiles:
            self.counts["accepted:users"] += 1
        if events:
            yield user_id, ([tuple(e) for e in events], profiles[0] if profiles else None)


def timeline_records(timeline) -> tuple[str, list, Optional[R.UserProfile]]:
    user_id, (events, profile) = timeline
    return user_id, [R.Event._make(e) for e in events], R.UserProfile._make(profile) if profile else None


def daily_item_counts(timeline, impression_type: str):
    """((item, day), (impressions, clicks)) of one user's impressions, summed per item and day."""
    counts = collections.defaultdict(lambda: [0, 0])
    for e in timeline[1][0]:  # plain event tuples: indexed, not rebuilt as Events, on this hot path
        if e[_TYPE] == impression_type:
            c = counts[(e[_ITEM], day_of(e[_TIME]))]
            c[0] += 1
            c[1] += e[_CLICKED]
    return [(key, tuple(c)) for key, c in counts.items()]


class BuildExamples(_CountingDoFn):
    """Timeline -> serialized tf.train.Example per impression, tagged by split.

    The user and sequence features, common to the impressions of one timestamp, are serialized once
    and prefixed to each impression's own features (see marn_tf/example_codec.py): 2x less CPU per example.
    With `pipeline.item_content: examples`, `contents` (item id -> `ItemContent.entry` values) adds the items'
    content to both parts.
    """

    def __init__(self, config: Config):
        self.config = config
        shared, own = ES.split_by_sharing(ES.example_features(config))
        self.shared_encoder, self.own_encoder = ExampleEncoder(shared), ExampleEncoder(own)
        self.content = ItemContent(config) if config.pipeline.item_content == "examples" else None

    def process(self, timeline, stats, totals, contents=None):
        user_id, events, profile = timeline_records(timeline)
        self.counts["accepted:events"] += len(events)
        last_shared, shared_bytes = None, b""
        for split, shared, own in build_examples(user_id, events, profile, stats.get, totals, self.config):
            if split == HISTORY_ONLY:
                self.counts["impressions:history_only"] += 1
                continue
            if shared is not last_shared:
                if self.content is not None:
                    content, missing = self.content.behaviour(shared[ES.HIST_ITEM_ID], contents)
                    shared.update(content)
                    self.counts["examples:behaviour_items_without_content"] += missing
                last_shared, shared_bytes = shared, self.shared_encoder.encode(shared)
            if self.content is not None:
                content, found = self.content.candidate(own[ES.ITEM_ID], contents)
                own.update(content)
                self.counts["examples:candidates_without_content"] += not found
            self.counts[f"examples:{split}"] += 1
            self.counts[f"positives:{split}"] += own[ES.LABEL]
            self.counts[f"sequence_length:{split}:{shared[ES.HIST_LENGTH]}"] += 1
            yield beam.pvalue.TaggedOutput(split, shared_bytes + self.own_encoder.encode(own))


class TrainingWindowCounts(beam.DoFn):
    """((vocabulary, token), count) for the training window's events, and the users' profiles."""

    def __init__(self, config: Config):
        self.config = config

    def process(self, timeline):
        user_id, events, profile = timeline_records(timeline)
        in_train = [e for e in events if split_of(e.timestamp, self.config) == "train"]
        if in_train:  # users without training-window events count in no vocabulary
            yield (ES.USER_VOCAB, user_id), len(in_train)
            items = collections.Counter(e.item_id for e in in_train)
            yield from (((ITEM_COUNT_KEY, item), n) for item, n in items.items())
            impression = self.config.events.impression_type
            for e in in_train:
                if e.event_type == impression:
                    for name, value in zip(self.config.events.context, e.context):
                        yield (ES.context_feature(name), value), 1
            if profile is not None:
                for name, value in zip(self.config.users.features, profile.features):
                    yield (ES.profile_feature(name), value), 1


def catalog_value_counts(item_and_count, config: Config):
    """((vocabulary, token), 1) per catalog item seen in the training window: ID values, title words."""
    item, count = item_and_count
    if count > 0:
        for name, value in zip(config.items.id_fields, item.id_values):
            yield (name, value), 1
        if config.items.title:
            for word in set(R.title_words(item.title, config.items.max_title_tokens)):
                yield (ES.WORD_VOCAB, word), 1


def build_vocabularies(counts: dict, config: Config) -> dict:
    """{vocabulary: [(token, count)]} -> {vocabulary: tokens} plus the item ID-embedding cut."""
    vocabularies = {name: ordered_tokens(counts.get(name, []), config.vocabulary.min_count)
                    for name in ES.vocabulary_names(config) if name != ES.ITEM_VOCAB}
    items, with_id_embedding = item_vocabulary(counts.get(ITEM_COUNT_KEY, []), config.vocabulary.min_count)
    vocabularies[ES.ITEM_VOCAB] = items
    return {"tokens": vocabularies, "num_with_id_embedding": with_id_embedding}


class WriteVocabularies(beam.DoFn):
    def __init__(self, output: str):
        self.output = output

    def process(self, vocabularies):
        for name, tokens in vocabularies["tokens"].items():
            write_vocabulary(FileSystems.join(self.output, ES.vocabulary_file(name)), tokens)
            yield f"vocabulary_size:{name}", len(tokens)
        yield "item_id_embeddings", vocabularies["num_with_id_embedding"]


class ItemRows(_CountingDoFn):
    """(item, count) -> item table row, using the vocabularies (a side input) for every index, and the image PCA
    (`ImagePca`, a side input when items.image_pca_dim is set) for the image vector."""

    def __init__(self, config: Config):
        self.config = config
        self._vocabularies, self._indices = None, None

    def process(self, item_and_count, vocabularies, image_pca=None):
        if vocabularies is not self._vocabularies:
            self._vocabularies = vocabularies
            self._indices = {name: {t: i + 1 for i, t in enumerate(tokens)}
                             for name, tokens in vocabularies["tokens"].items()}
        item, count = item_and_count
        self.counts["accepted:items"] += 1
        self.counts["items:missing_image"] += self.config.items.image is not None and item.image is None
        self.counts["items:missing_title"] += self.config.items.title is not None and item.title is None
        self.counts["items:cold"] += count == 0
        yield item_row(item, self._indices, self.config, image_pca)


def sum_pairs(pairs):
    impressions = clicks = 0
    for i, c in pairs:
        impressions += i
        clicks += c
    return impressions, clicks
