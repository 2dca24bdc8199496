"""`marn embed-items`: a Beam job that writes every item's representation from an exported SavedModel.

    read item ids (the export's own item vocabulary, or text files of one id a line)
      -> check each line                                   an empty or undecodable line -> dead letter, with the reason
      -> join with the model's item vocabulary             an id it does not hold -> dead letter `unknown_item_id`
                                                           (the model would give it the out-of-vocabulary vector);
                                                           an id given again -> counted, written once
      -> RunInference(TensorFlow handler, item_representations signature)
      -> one row per item: item_id, representation [d], modality_weights [M], modality_mask [M]
         Parquet and TFRecord (tf.Example), keyed by item_id

This is the file a feature store or key-value cache loads, so that a ranking service can hold item vectors
apart from the model (`docs/scale_out.md`, catalogs too large for an in-model item table). It runs locally on Beam's FnApiRunner or on Dataflow /
Flink / Spark with the same pipeline options as `marn score`. Counts, computed as data (read = embedded +
repeated ids + dead-lettered, checked), go to `<output>-counts.json`; the output prefix is owned and cleared
as for `marn score` (`job_outputs.owned_prefix`).
"""
from __future__ import annotations

import functools
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from marn_tf import schema as S
from marn_tf.export.batch_scoring import INFERENCE_FAILED, ExportedModelHandler, dead_letter, failed_batch_letters
from marn_tf.export.job_outputs import (check_batch_size, check_num_shards, count, owned_prefix, run_and_check,
                                        tally, write_counts, write_dead_letters)
from marn_tf.export.errors import short_reason
from marn_tf.pipelines.beam_options import pipeline_options
from marn_tf.storage import ownership

COMMAND = "marn embed-items"
SIGNATURE = "item_representations"
OUTPUTS = ("representation", "modality_weights", "modality_mask")
OUTPUT_FORMATS = ("parquet", "tfrecord")
SUFFIXES = {"parquet": ".parquet", "tfrecord": ".tfrecord.gz"}
# Dead-letter reasons: a line that is no item id; an id the model's item vocabulary does not hold.
INVALID_ITEM_ID, UNKNOWN_ITEM_ID = "invalid_item_id", "unknown_item_id"
DUPLICATES = "duplicate_item_ids"  # ids given more than once: written once, the others counted here


def item_vocabulary(model_dir: str) -> str:
    """The export's item vocabulary file (its `assets/`): every item the model knows, one id a line."""
    schema = S.Schema.load(os.path.join(model_dir, "assets", S.SCHEMA_FILE))
    return os.path.join(model_dir, "assets", os.path.basename(schema.vocabularies[S.ITEM_VOCABULARY].file))


class ToItemId(beam.DoFn):
    """A line of an id file -> the item id, or a dead letter {reason, detail, record}."""

    DEAD = "dead_letter"

    def process(self, line: bytes):
        try:
            item = line.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter(INVALID_ITEM_ID, short_reason(err), line))
            return
        if not item:
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter(INVALID_ITEM_ID, "empty item id", line))
            return
        yield item


class OncePerKnownId(beam.DoFn):
    """(item id, {"given": [1, ...], "known": [True] or []}) -> (id, id bytes) once for an id the vocabulary holds,
    a dead letter for one it does not; (DUPLICATES, n) counts the repeats of an id given n + 1 times."""

    DEAD, COUNTS = "dead_letter", "counts"

    def __init__(self, vocabulary: str):
        self.vocabulary = vocabulary

    def process(self, joined: tuple):
        item, groups = joined
        given = sum(groups["given"])
        if not given:  # a vocabulary item nobody asked for
            return
        if given > 1:
            yield beam.pvalue.TaggedOutput(self.COUNTS, (DUPLICATES, given - 1))
        if not any(groups["known"]):
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter(
                UNKNOWN_ITEM_ID, f"{item!r} is not in the model's item vocabulary {self.vocabulary}: it would get "
                                 "the out-of-vocabulary representation", item))
            return
        yield item, item.encode("utf-8")


def item_representations_inference(model, batch: Sequence[bytes], inference_args: dict,
                                   model_id: Optional[str] = None) -> Iterable[PredictionResult]:
    import tensorflow as tf

    outputs = model.signatures[SIGNATURE](item_id=tf.constant(list(batch)), **inference_args)
    arrays = {name: outputs[name].numpy() for name in OUTPUTS}
    return [PredictionResult(item, {name: arrays[name][i] for name in OUTPUTS}, model_id)
            for i, item in enumerate(batch)]


def to_row(keyed: tuple) -> dict:
    item, result = keyed
    return {"item_id": item, **{name: [float(x) for x in result.inference[name]] for name in OUTPUTS}}


def to_example(row: dict) -> bytes:
    import tensorflow as tf

    feature = {"item_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["item_id"].encode("utf-8")]))}
    feature.update({name: tf.train.Feature(float_list=tf.train.FloatList(value=row[name])) for name in OUTPUTS})
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parquet_schema():
    import pyarrow as pa

    return pa.schema([("item_id", pa.string())] + [(name, pa.list_(pa.float32())) for name in OUTPUTS])


def run(model_dir: str, output_prefix: str, items: Optional[str] = None,
        output_formats: Sequence[str] = OUTPUT_FORMATS, batch_size: int = 1024,
        pipeline_args: Optional[list[str]] = None, num_workers: int = 1, num_shards: int = 0) -> dict[str, Any]:
    """Writes the representation of every item id in `items` (a file pattern; default: the export's own item
    vocabulary) to `<output_prefix>-NNNNN-of-NNNNN.parquet` / `.tfrecord.gz` (`num_shards` files of each, 0: as
    the runner chooses), each id once; returns the counts. An output prefix whose directory holds files
    `marn embed-items` did not write is refused before any work (`job_outputs.owned_prefix`)."""
    unknown = [f for f in output_formats if f not in OUTPUT_FORMATS]
    if unknown or not output_formats:
        raise S.SchemaError(f"--format must be among {', '.join(OUTPUT_FORMATS)}, got {', '.join(unknown) or 'none'}")
    check_num_shards(num_shards)
    check_batch_size(batch_size)
    if not FileSystems.exists(os.path.join(model_dir, "saved_model.pb")):
        raise S.SchemaError(f"{model_dir} holds no SavedModel: give an export's version directory, "
                            "<output>/<name>/<version>")
    vocabulary = item_vocabulary(model_dir)
    if not FileSystems.exists(vocabulary):
        raise S.SchemaError(f"{model_dir} has no item vocabulary ({vocabulary}): give a version that `marn export` "
                            "wrote without --item-store")
    items = items or vocabulary
    matched = FileSystems.match([items])[0].metadata_list
    if not matched:
        raise S.SchemaError(f"no item id files match {items}")
    handler = KeyedModelHandler(ExportedModelHandler(model_dir, inference_fn=item_representations_inference,
                                                     min_batch_size=1, max_batch_size=batch_size))
    inputs = [("--model", model_dir), ("--items", items)] + [("item id file", m.path) for m in matched]

    options = pipeline_options(pipeline_args or [], num_workers)  # checked before the prefix is claimed
    with owned_prefix(output_prefix, ownership.EMBED_ITEMS, COMMAND, list(SUFFIXES.values()), inputs,
                      example="runs/items/marn-1"):
        pipeline = beam.Pipeline(options=options)
        lines = pipeline | "Read item ids" >> beam.io.ReadFromText(items, coder=beam.coders.BytesCoder())
        ids = lines | "Check" >> beam.ParDo(ToItemId()).with_outputs(ToItemId.DEAD, main="ok")
        known = (pipeline | "Read vocabulary" >> beam.io.ReadFromText(vocabulary)
                 | "Known" >> beam.Map(lambda item: (item, True)))
        given = ids.ok | "Given" >> beam.Map(lambda item: (item, 1))
        once = ({"given": given, "known": known} | "Join vocabulary" >> beam.CoGroupByKey()
                | "Once per known id" >> beam.ParDo(OncePerKnownId(vocabulary)).with_outputs(
                    OncePerKnownId.DEAD, OncePerKnownId.COUNTS, main="ok"))
        embedded, failed = once.ok | "Embed" >> RunInference(handler).with_exception_handling()
        rows = embedded | "To rows" >> beam.Map(to_row)
        if "parquet" in output_formats:
            _ = rows | "Write Parquet" >> beam.io.WriteToParquet(output_prefix, parquet_schema(),
                                                                  file_name_suffix=SUFFIXES["parquet"],
                                                                  num_shards=num_shards)
        if "tfrecord" in output_formats:
            _ = rows | beam.Map(to_example) | "Write TFRecords" >> beam.io.WriteToTFRecord(
                output_prefix, file_name_suffix=SUFFIXES["tfrecord"], num_shards=num_shards)
        failed_letters = failed.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch_letters)
        dead = write_dead_letters((ids[ToItemId.DEAD], once[OncePerKnownId.DEAD], failed_letters), output_prefix)
        summary = functools.partial(tally, done="embedded", folded=(DUPLICATES,),
                                    reasons=(INVALID_ITEM_ID, UNKNOWN_ITEM_ID, INFERENCE_FAILED))
        write_counts([count(lines, "read", "Count read"), count(rows, "embedded", "Count embedded"),
                      once[OncePerKnownId.COUNTS], dead], output_prefix, summary)
        return run_and_check(pipeline, output_prefix, "embedded", (DUPLICATES,))


def summary(counts: Mapping[str, Any], output_prefix: str, formats: Sequence[str]) -> str:
    """What `marn embed-items` prints when it is done: the counts and where each output is."""
    dead = counts["dead_letters"]
    suffixes = ",".join(SUFFIXES[f].lstrip(".") for f in formats)
    return (f"read {counts['read']:,} item ids: {counts['embedded']:,} embedded, {counts['duplicate_item_ids']:,} "
            f"repeated (written once), {counts['dead_lettered']:,} dead-lettered ({dead['invalid_item_id']:,} "
            f"invalid, {dead['unknown_item_id']:,} not in the model's vocabulary, {dead[INFERENCE_FAILED]:,} failed "
            f"in the model)\nrepresentations: {output_prefix}-?????-of-?????.{{{suffixes}}}; dead letters: "
            f"{output_prefix}-dead_letter-*.jsonl; counts: {output_prefix}-counts.json")
