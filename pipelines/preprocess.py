"""`marn preprocess`: the Beam job from raw logs + catalog to TFRecords, vocabularies, item table, schema.

Stages (names as they appear in the Beam UI):
  Read and parse                      every input file; rejected records go to the dead-letter output
  Catalog                             one row per item id (later duplicates dead-lettered)
  Timelines                           group by user: drop events of unknown items, sort, deduplicate,
                                      attach the profile
  ItemDailyCounts                     impressions/clicks per (item, day) -> point-in-time statistics
  GlobalDailyCounts                   impressions/clicks per day, all items -> the prior of click rates
  Examples                            one tf.train.Example per impression, split by time
  Vocabularies, ItemTable             from the training window; item content indexed by vocabulary
  Counts                              every count of the run report, exact on any runner

Memory: a worker holds one user's timeline, the catalog's item ids, the per-(item, day) and per-day
counts (side inputs: their size grows with the catalog and the number of days, not with the events).
"""
from __future__ import annotations

import collections
import json
import logging
import time
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.transforms.window import GlobalWindows

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError
from marn_tf.schema import SCHEMA_FILE, SPLITS
from marn_tf.storage import files, ownership
from pipelines import example_schema as ES
from pipelines import records as R
from pipelines.item_statistics import CumulativeCounts, day_of
from pipelines.input_checks import check_inputs
from pipelines.item_table import arrow_schema, item_row
from pipelines.raw_io import InputFile, ReadFailure, list_input_files, read_records
from pipelines.run_report import COUNTS_FILE, finalize, unreadable_key, write_json
from pipelines.tf_example import ExampleEncoder
from pipelines.user_history import HISTORY_ONLY, build_examples, sort_and_deduplicate, split_of
from pipelines.vocabulary import item_vocabulary, ordered_tokens, write_vocabulary

log = logging.getLogger(__name__)

DEAD = "dead"
COUNTS = "counts"
ITEM_COUNT_KEY = "__item__"  # vocabulary-count key of item ids, kept apart: every catalog item is listed


class PreprocessError(RuntimeError):
    """The job ran but its output must not be used (e.g. too many rejected records)."""


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
    and prefixed to each impression's own features (see tf_example.py): 2x less CPU per example.
    """

    def __init__(self, config: Config):
        self.config = config
        shared, own = ES.split_by_sharing(ES.example_features(config))
        self.shared_encoder, self.own_encoder = ExampleEncoder(shared), ExampleEncoder(own)

    def process(self, timeline, stats, totals):
        user_id, events, profile = timeline_records(timeline)
        self.counts["accepted:events"] += len(events)
        last_shared, shared_bytes = None, b""
        for split, shared, own in build_examples(user_id, events, profile, stats.get, totals, self.config):
            if split == HISTORY_ONLY:
                self.counts["impressions:history_only"] += 1
                continue
            if shared is not last_shared:
                last_shared, shared_bytes = shared, self.shared_encoder.encode(shared)
            self.counts[f"examples:{split}"] += 1
            self.counts[f"positives:{split}"] += own["label"]
            self.counts[f"sequence_length:{split}:{shared['hist_length']}"] += 1
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
    """(item, count) -> item table row, using the vocabularies (a side input) for every index."""

    def __init__(self, config: Config):
        self.config = config
        self._vocabularies, self._indices = None, None

    def process(self, item_and_count, vocabularies):
        if vocabularies is not self._vocabularies:
            self._vocabularies = vocabularies
            self._indices = {name: {t: i + 1 for i, t in enumerate(tokens)}
                             for name, tokens in vocabularies["tokens"].items()}
        item, count = item_and_count
        self.counts["accepted:items"] += 1
        self.counts["items:missing_image"] += self.config.items.image is not None and item.image is None
        self.counts["items:missing_title"] += self.config.items.title is not None and item.title is None
        self.counts["items:cold"] += count == 0
        yield item_row(item, self._indices, self.config)


def _sum_pairs(pairs):
    impressions = clicks = 0
    for i, c in pairs:
        impressions += i
        clicks += c
    return impressions, clicks


def build_pipeline(p: beam.Pipeline, config: Config, output: str, files: Optional[list[InputFile]] = None) -> None:
    """Adds the whole job to `p`; outputs go under `output` (see marn_tf/schema.py for the layout).
    `files`: the input files, when already listed (default: listed here)."""
    join = lambda *parts: FileSystems.join(output, *parts)  # noqa: E731
    dead_letters, counts = [], []

    # Every input file, read and parsed in one stage; files are spread over the workers.
    records = (p | "Input files" >> beam.Create(files if files is not None else list_input_files(config))
               | "Spread files" >> beam.Reshuffle()
               | "Read and parse" >> beam.ParDo(ReadAndParse(config)).with_outputs(ITEMS, DEAD, COUNTS,
                                                                                  main="by_user"))
    dead_letters.append(records[DEAD])
    counts.append(records[COUNTS])

    # Catalog: one row per item id.
    catalog = (records[ITEMS] | "Key items" >> beam.Map(lambda it: (it.item_id, it))
               | "Group items" >> beam.GroupByKey()
               | "Catalog" >> beam.ParDo(KeepFirstItem()).with_outputs(DEAD, main="ok"))
    dead_letters.append(catalog[DEAD])
    catalog_ids = beam.pvalue.AsDict(catalog.ok | "Catalog ids" >> beam.Map(lambda kv: (kv[0], None)))

    timelines = (
        records.by_user
        | "Group by user" >> beam.GroupByKey()
        | "Timelines" >> beam.ParDo(BuildTimeline(config), catalog_ids).with_outputs(DEAD, COUNTS, main="ok"))
    dead_letters.append(timelines[DEAD])
    counts.append(timelines[COUNTS])

    # Point-in-time item statistics: per item, daily totals as prefix sums (a side input of Examples).
    item_day_counts = (
        timelines.ok
        | "Impressions per item-day" >> beam.FlatMap(daily_item_counts, config.events.impression_type)
        | "ItemDailyCounts" >> beam.CombinePerKey(_sum_pairs))
    item_stats = (
        item_day_counts
        | "Key by item" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1][0], kv[1][1])))
        | "Group days" >> beam.GroupByKey()
        | "Cumulative" >> beam.Map(lambda kv: (kv[0], CumulativeCounts.from_daily(kv[1]))))
    # All items together, per day: one small value (one entry a day); empty without impressions.
    global_totals = (
        item_day_counts
        | "Key by day" >> beam.Map(lambda kv: (kv[0][1], kv[1]))
        | "GlobalDailyCounts" >> beam.CombinePerKey(_sum_pairs)
        | "All days" >> beam.combiners.ToList()
        | "Global cumulative" >> beam.Map(lambda days: CumulativeCounts.from_daily(
            (day, impressions, clicks) for day, (impressions, clicks) in days)))

    examples = timelines.ok | "Examples" >> beam.ParDo(
        BuildExamples(config), beam.pvalue.AsDict(item_stats),
        beam.pvalue.AsSingleton(global_totals)).with_outputs(*SPLITS, COUNTS)
    counts.append(examples[COUNTS])
    for split in SPLITS:
        _ = examples[split] | f"Write {split}" >> beam.io.WriteToTFRecord(
            join(split, "part"), file_name_suffix=".tfrecord.gz", num_shards=config.pipeline.num_shards)

    # Vocabularies from the training window; every catalog item is in the item vocabulary.
    window_counts = (timelines.ok | "Training window" >> beam.ParDo(TrainingWindowCounts(config))
                     | "Sum window counts" >> beam.CombinePerKey(sum))
    item_counts = (window_counts | "Item counts" >> beam.Filter(lambda kv: kv[0][0] == ITEM_COUNT_KEY)
                   | "Key item counts" >> beam.Map(lambda kv: (kv[0][1], kv[1])))
    items_with_counts = (
        {"item": catalog.ok, "count": item_counts}
        | "Join counts" >> beam.CoGroupByKey()
        | "Item and count" >> beam.Map(lambda kv: (kv[1]["item"][0], sum(kv[1]["count"]))))
    catalog_counts = (items_with_counts
                      | "Catalog values" >> beam.FlatMap(catalog_value_counts, config)
                      | "Sum catalog values" >> beam.CombinePerKey(sum))
    all_item_counts = items_with_counts | "Every item" >> beam.Map(lambda ic: ((ITEM_COUNT_KEY, ic[0].item_id), ic[1]))
    other_counts = window_counts | "Not items" >> beam.Filter(lambda kv: kv[0][0] != ITEM_COUNT_KEY)
    vocabularies = (
        (other_counts, catalog_counts, all_item_counts) | "All token counts" >> beam.Flatten()
        | "By vocabulary" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
        | "Per vocabulary" >> beam.GroupByKey()
        | "Token lists" >> beam.combiners.ToDict()
        | "Vocabularies" >> beam.Map(build_vocabularies, config))
    counts.append(vocabularies | "Write vocabularies" >> beam.ParDo(WriteVocabularies(output)))

    rows = items_with_counts | "ItemTable" >> beam.ParDo(
        ItemRows(config), beam.pvalue.AsSingleton(vocabularies)).with_outputs(COUNTS, main="ok")
    counts.append(rows[COUNTS])
    _ = rows.ok | "Write item table" >> beam.io.WriteToParquet(
        join("item_table", "part"), arrow_schema(config), file_name_suffix=".parquet", codec="snappy")

    # Dead letters and their counts.
    dead = dead_letters | "All dead letters" >> beam.Flatten()
    _ = (dead | "Dead letter json" >> beam.Map(R.DeadLetter.to_json)
         | "Write dead letters" >> beam.io.WriteToText(join("dead_letter", "part"), file_name_suffix=".jsonl.gz"))
    counts.append(dead | "Dead letter reasons" >> beam.Map(lambda d: (f"dead_letter:{d.source}:{d.reason}", 1)))

    _ = (counts | "All counts" >> beam.Flatten()
         | "Counts" >> beam.CombinePerKey(sum)
         | "Counts dict" >> beam.combiners.ToDict()
         | "Write counts" >> beam.Map(lambda c: write_json(join(COUNTS_FILE), c)))


def pipeline_options(pipeline_args: list[str], num_workers: int) -> PipelineOptions:
    """Standard Beam options; without --runner, the local FnApiRunner with `num_workers` processes."""
    options = PipelineOptions(pipeline_args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "FnApiRunner"  # named: DirectRunner would first try to download Prism
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = num_workers
        direct.direct_running_mode = "multi_processing" if num_workers > 1 else "in_memory"
    return options


# Every entry `marn preprocess` writes directly under its output: --overwrite deletes these and nothing else.
OUTPUT_ENTRIES = (*SPLITS, "vocab", "item_table", "dead_letter", COUNTS_FILE, "report.json", "report.md",
                  SCHEMA_FILE, "beam-temp-*")
COMMAND = "marn preprocess"
_OVERWRITE_HINT = " (--overwrite replaces only an output that marn preprocess wrote)"


def input_paths(config: Config, files: list[InputFile], config_path: Optional[str] = None) -> list[tuple[str, str]]:
    """What the job reads, for the checks that keep it out of what the job deletes: the configured
    paths or globs (with the directories they read from), every file they match, the config file."""
    inputs = [(f"inputs.{source}.path", getattr(config.inputs, source).path)
              for source in ("events", "items", "users") if getattr(config.inputs, source) is not None]
    inputs += [(f"input file of {f.source}", f.path) for f in files]
    if config_path:
        inputs.append(("the config file", config_path))
    return inputs


def prepare_output(output: str, overwrite: bool) -> None:
    """Empties `output` for the job: only when marn preprocess wrote it (its marker) and --overwrite says so."""
    marker = ownership.check_claimable(output, ownership.PREPROCESS, COMMAND, _OVERWRITE_HINT)
    existing = [e for e in files.entries(output) if not ownership.is_own_file(e)]
    if existing and not overwrite:
        raise ConfigError(f"output directory {output} is not empty; pass --overwrite to replace it")
    if existing and marker is not None:
        ownership.clear(output, OUTPUT_ENTRIES, COMMAND)
        ownership.claim(output, ownership.PREPROCESS, COMMAND, fresh=True)  # this job's identity from now on


def run(config: Config, output: str, pipeline_args: Optional[list[str]] = None, num_workers: int = 1,
        overwrite: bool = False, config_path: Optional[str] = None) -> dict:
    """Runs the job to completion and returns the run report; raises PreprocessError past the
    dead-letter threshold (after writing everything, so the rejects can be inspected).

    Before anything is written: the inputs are listed and checked (`input_checks`: configured columns no file
    has, implausible timestamps), an output that is or holds an input (or
    `config_path`) is refused, and so is a non-empty output that marn preprocess did not write (its
    `.marn-owner.json`). The output is locked for the job (a second job on it fails at once).
    """
    files = list_input_files(config)
    check_inputs(config, files)
    options = pipeline_options(list(pipeline_args or []), num_workers)
    with ownership.owned_directory(output, ownership.PREPROCESS, COMMAND, input_paths(config, files, config_path),
                                   hint=_OVERWRITE_HINT):
        prepare_output(output, overwrite)
        return _run_job(config, output, files, options, num_workers)


def _run_job(config: Config, output: str, files: list[InputFile], options: PipelineOptions, num_workers: int) -> dict:
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, output, files)
    runner = options.view_as(StandardOptions).runner
    workers = f" with {num_workers} worker process(es)" if runner == "FnApiRunner" else ""
    log.info("running the preprocess job on %s%s; output: %s", runner, workers, output)
    started = time.monotonic()
    p.run().wait_until_finish()
    log.info("job finished in %.1f s; writing schema and report", time.monotonic() - started)
    report = finalize(config, output)
    too_many = report["dead_letter_rate_exceeded"]
    if too_many:  # one line: the rates, the files that stopped early (and where), where to look
        unreadable = "".join(f"; {u['file']} cannot be read past {u['where']}" for u in report["unreadable_files"])
        raise PreprocessError(
            "too many rejected records: " + "; ".join(f"{s}: {r:.2%}" for s, r in too_many.items())
            + f" (pipeline.max_dead_letter_rate is {config.pipeline.max_dead_letter_rate:.2%}){unreadable}; the "
            f"reasons are in {output}/report.md and the records in {output}/dead_letter/")
    return report
