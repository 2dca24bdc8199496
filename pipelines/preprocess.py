"""`marn preprocess`: the Beam job from raw logs + catalog to TFRecords, vocabularies, item table, schema.

Stages (names as they appear in the Beam UI):
  Read and parse                      every input file; rejected records go to the dead-letter output
  Catalog                             one row per item id (later duplicates dead-lettered)
  Timelines                           group by user: drop events of unknown items, sort, deduplicate,
                                      attach the profile
  ItemDailyCounts                     impressions/clicks per (item, day) -> point-in-time statistics
  GlobalDailyCounts                   impressions/clicks per day, all items -> the prior of click rates
  Vocabularies, ItemTable             from the training window; item content indexed by vocabulary (image
                                      vectors PCA-reduced first with items.image_pca_dim)
  Examples                            one tf.train.Example per impression, split by time (with the items'
                                      content, a side input, with pipeline.item_content: examples)
  Counts                              every count of the run report, exact on any runner

Memory: a worker holds one user's timeline, the catalog's item ids, the per-(item, day) and per-day
counts (side inputs: their size grows with the catalog and the number of days, not with the events), and
with pipeline.item_content: examples every item's content.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError
from marn_tf.schema import SCHEMA_FILE, SPLITS
from marn_tf.storage import files, ownership
from marn_tf.pipelines import records as R
from marn_tf.pipelines.beam_options import pipeline_options
from marn_tf.pipelines.image_pca import ImagePcaFn
from marn_tf.pipelines.input_checks import check_inputs
from marn_tf.pipelines.item_content import ItemContent
from marn_tf.pipelines.item_statistics import CumulativeCounts
from marn_tf.pipelines.item_table import arrow_schema
from marn_tf.pipelines.raw_io import InputFile, list_input_files
from marn_tf.pipelines.run_report import (COUNTS_FILE, IMAGE_PCA_FILE, field_dead_key, file_dead_key, file_records_key,
                                          finalize, write_json)
from marn_tf.pipelines.transforms import (COUNTS, DEAD, ITEM_COUNT_KEY, ITEMS, BuildExamples, BuildTimeline, ItemRows,
                                 KeepFirstItem, ReadAndParse, TrainingWindowCounts, WriteVocabularies,
                                 build_vocabularies, catalog_value_counts, daily_item_counts, sum_pairs)

log = logging.getLogger(__name__)


class PreprocessError(RuntimeError):
    """The job ran but its output must not be used (e.g. too many rejected records)."""


class ReadParseAndCountFiles(ReadAndParse):
    """ReadAndParse, also counting each file's records: the run report's per-file dead-letter rates."""

    def process(self, file: InputFile):
        key = f"in:{file.source}"
        before = self.counts[key]
        yield from super().process(file)
        self.counts[file_records_key(file.source, file.path)] += self.counts[key] - before


def field_dead_letters(keyed: tuple) -> list:
    """(item id, item) of the catalog -> a dead letter for each optional field dropped from the kept item."""
    item_id, item = keyed
    return [R.DeadLetter("items", reason, f"{detail}; item {item_id} is kept with {field} marked missing",
                         json.dumps({"item_id": item_id}), field=field)
            for field, reason, detail in item.field_errors]


def dead_letter_counts(letter: R.DeadLetter) -> list:
    """The count keys of one dead letter: its reason (or the field dropped from a kept record), and its file's
    when it was rejected on reading."""
    if letter.field:
        return [(field_dead_key(letter.source, letter.field, letter.reason), 1)]
    keys = [(f"dead_letter:{letter.source}:{letter.reason}", 1)]
    return keys + [(file_dead_key(letter.source, letter.file), 1)] if letter.file else keys


def build_pipeline(p: beam.Pipeline, config: Config, output: str, files: Optional[list[InputFile]] = None) -> None:
    """Adds the whole job to `p`; outputs go under `output` (see marn_tf/schema.py for the layout).
    `files`: the input files, when already listed (default: listed here)."""
    join = lambda *parts: FileSystems.join(output, *parts)  # noqa: E731
    dead_letters, counts = [], []

    # Every input file, read and parsed in one stage; files are spread over the workers.
    records = (p | "Input files" >> beam.Create(files if files is not None else list_input_files(config))
               | "Spread files" >> beam.Reshuffle()
               | "Read and parse" >> beam.ParDo(ReadParseAndCountFiles(config)).with_outputs(ITEMS, DEAD, COUNTS,
                                                                                            main="by_user"))
    dead_letters.append(records[DEAD])
    counts.append(records[COUNTS])

    # Catalog: one row per item id.
    catalog = (records[ITEMS] | "Key items" >> beam.Map(lambda it: (it.item_id, it))
               | "Group items" >> beam.GroupByKey()
               | "Catalog" >> beam.ParDo(KeepFirstItem()).with_outputs(DEAD, main="ok"))
    dead_letters.append(catalog[DEAD])
    field_letters = catalog.ok | "Dropped item fields" >> beam.FlatMap(field_dead_letters)
    dead_letters.append(field_letters)
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
        | "ItemDailyCounts" >> beam.CombinePerKey(sum_pairs))
    item_stats = (
        item_day_counts
        | "Key by item" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1][0], kv[1][1])))
        | "Group days" >> beam.GroupByKey()
        | "Cumulative" >> beam.Map(lambda kv: (kv[0], CumulativeCounts.from_daily(kv[1]))))
    # All items together, per day: one small value (one entry a day); empty without impressions.
    global_totals = (
        item_day_counts
        | "Key by day" >> beam.Map(lambda kv: (kv[0][1], kv[1]))
        | "GlobalDailyCounts" >> beam.CombinePerKey(sum_pairs)
        | "All days" >> beam.combiners.ToList()
        | "Global cumulative" >> beam.Map(lambda days: CumulativeCounts.from_daily(
            (day, impressions, clicks) for day, (impressions, clicks) in days)))

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

    image_pca = []
    if config.items.image_pca_dim:  # fitted on the images of the items the training window saw
        fitted = (items_with_counts
                  | "Training window images" >> beam.FlatMap(lambda ic: [ic[0].image] if ic[1] and ic[0].image else [])
                  | "Batch images" >> beam.BatchElements(min_batch_size=16, max_batch_size=1024)
                  | "Fit image PCA" >> beam.CombineGlobally(ImagePcaFn(config.items.image_pca_dim,
                                                                       config.items.image_dim)))
        _ = fitted | "Write image PCA" >> beam.Map(lambda pca: write_json(join(IMAGE_PCA_FILE), pca.to_dict()))
        image_pca = [beam.pvalue.AsSingleton(fitted)]
    rows = items_with_counts | "ItemTable" >> beam.ParDo(
        ItemRows(config), beam.pvalue.AsSingleton(vocabularies), *image_pca).with_outputs(COUNTS, main="ok")
    counts.append(rows[COUNTS])
    _ = rows.ok | "Write item table" >> beam.io.WriteToParquet(
        join("item_table", "part"), arrow_schema(config), file_name_suffix=".parquet", codec="snappy")

    # Examples, after the item table when they carry its content (pipeline.item_content: examples).
    contents = []
    if config.pipeline.item_content == "examples":
        content = ItemContent(config)
        contents = [beam.pvalue.AsDict(rows.ok | "Item content" >> beam.Map(content.entry))]
    examples = timelines.ok | "Examples" >> beam.ParDo(
        BuildExamples(config), beam.pvalue.AsDict(item_stats),
        beam.pvalue.AsSingleton(global_totals), *contents).with_outputs(*SPLITS, COUNTS)
    counts.append(examples[COUNTS])
    for split in SPLITS:
        _ = examples[split] | f"Write {split}" >> beam.io.WriteToTFRecord(
            join(split, "part"), file_name_suffix=".tfrecord.gz", num_shards=config.pipeline.num_shards)

    # Dead letters and their counts.
    dead = dead_letters | "All dead letters" >> beam.Flatten()
    _ = (dead | "Dead letter json" >> beam.Map(R.DeadLetter.to_json)
         | "Write dead letters" >> beam.io.WriteToText(join("dead_letter", "part"), file_name_suffix=".jsonl.gz"))
    counts.append(dead | "Dead letter reasons" >> beam.FlatMap(dead_letter_counts))

    _ = (counts | "All counts" >> beam.Flatten()
         | "Counts" >> beam.CombinePerKey(sum)
         | "Counts dict" >> beam.combiners.ToDict()
         | "Write counts" >> beam.Map(lambda c: write_json(join(COUNTS_FILE), c)))


# Every entry `marn preprocess` writes directly under its output: --overwrite deletes these and nothing else.
OUTPUT_ENTRIES = (*SPLITS, "vocab", "item_table", "dead_letter", COUNTS_FILE, "report.json", "report.md",
                  SCHEMA_FILE, IMAGE_PCA_FILE, "beam-temp-*")
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
    if config.items.statistics and config.items.statistics_as_of is None:
        log.warning("items.statistics (%s) carry no as-of date: a catalog exported after split.train_start "
                    "leaks the future into every split. Set items.statistics_as_of to the date the counters were "
                    "read (checked against the split), or drop items.statistics: the pipeline's own "
                    "point-in-time impression and click counters leak nothing", ", ".join(config.items.statistics))
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
    check_report(config, output, report)
    return report


def check_report(config: Config, output: str, report: dict) -> None:
    """Raises PreprocessError, in one line, when the output must not be used: a table or a file past its
    dead-letter limit, or a split with no example (nothing to train on, choose or measure a model by)."""
    too_many, files = report["dead_letter_rate_exceeded"], report["file_dead_letter_rate_exceeded"]
    if too_many or files:  # one line: the rates, the files that stopped early (and where), where to look
        unreadable = "".join(f"; {u['file']} cannot be read past {u['where']}" for u in report["unreadable_files"])
        limits = [f"pipeline.max_dead_letter_rate is {config.pipeline.max_dead_letter_rate:.2%}"] if too_many else []
        if files:
            limits.append(f"pipeline.max_file_dead_letter_rate is {config.pipeline.max_file_dead_letter_rate:.2%}")
        shown = list(files.items())[:5]
        raise PreprocessError(
            "too many rejected records: " + "; ".join(f"{s}: {r:.2%}" for s, r in [*too_many.items(), *shown])
            + (f" (and {len(files) - len(shown)} more files)" if len(files) > len(shown) else "")
            + f" ({', '.join(limits)}){unreadable}; the reasons are in {output}/report.md and the records in "
            f"{output}/dead_letter/")
    if report["empty_splits"]:
        raise PreprocessError(
            "; ".join(f"the {split} split has no example (impressions {window})"
                      for split, window in report["empty_splits"].items())
            + f": no model can be trained, chosen or measured on it. Set the split dates inside the events' time "
            f"range (the splits' examples are in {output}/report.md)")
