"""`marn embed-items`: a Beam job that writes every item's representation from an exported SavedModel.

    read item ids (the export's own item vocabulary, or text files of one id a line)
      -> check each line                                   an empty or undecodable line -> dead letter, with the reason
      -> RunInference(TensorFlow handler, item_representations signature)
      -> one row per item: item_id, representation [d], modality_weights [M], modality_mask [M]
         Parquet and TFRecord (tf.Example), keyed by item_id

This is the file a feature store or key-value cache loads, so that a ranking service can hold item vectors
apart from the model (`docs/scale_out.md`, section 4). It runs locally on Beam's FnApiRunner or on Dataflow /
Flink / Spark with the same pipeline options as `marn score`. Counts (read = embedded + dead-lettered,
checked) go to `<output>-counts.json`.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from marn_tf import schema as S
from marn_tf.export.batch_scoring import (Count, ExportedModelHandler, dead_letter, failed_batch_letters,
                                          run_and_count)
from marn_tf.export.errors import short_reason
from marn_tf.pipelines.beam_options import pipeline_options

NAMESPACE = "marn_embed_items"
SIGNATURE = "item_representations"
OUTPUTS = ("representation", "modality_weights", "modality_mask")
OUTPUT_FORMATS = ("parquet", "tfrecord")


def item_vocabulary(model_dir: str) -> str:
    """The export's item vocabulary file (its `assets/`): every item the model knows, one id a line."""
    schema = S.Schema.load(os.path.join(model_dir, "assets", S.SCHEMA_FILE))
    return os.path.join(model_dir, "assets", os.path.basename(schema.vocabularies[S.ITEM_VOCABULARY].file))


class ToItemId(beam.DoFn):
    """A line of an id file -> the item id, or a dead letter {reason, detail, record}."""

    DEAD = "dead_letter"

    def __init__(self):
        self.read = beam.metrics.Metrics.counter(NAMESPACE, "read")
        self.rejected = beam.metrics.Metrics.counter(NAMESPACE, "rejected_records")

    def process(self, line: bytes):
        self.read.inc()
        try:
            item = line.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter("invalid_item_id", short_reason(err), line))
            return
        if not item:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter("invalid_item_id", "empty item id", line))
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
        pipeline_args: Optional[list[str]] = None, num_workers: int = 1) -> dict[str, Any]:
    """Writes the representation of every item id in `items` (a file pattern; default: the export's own item
    vocabulary) to `<output_prefix>-NNNNN-of-NNNNN.parquet` / `.tfrecord.gz`; returns the counts."""
    unknown = [f for f in output_formats if f not in OUTPUT_FORMATS]
    if unknown or not output_formats:
        raise S.SchemaError(f"--format must be among {', '.join(OUTPUT_FORMATS)}, got {', '.join(unknown) or 'none'}")
    if not FileSystems.exists(os.path.join(model_dir, "saved_model.pb")):
        raise S.SchemaError(f"{model_dir} holds no SavedModel: give an export's version directory, "
                            "<output>/<name>/<version>")
    items = items or item_vocabulary(model_dir)
    if not FileSystems.match([items])[0].metadata_list:
        raise S.SchemaError(f"no item id files match {items}")
    handler = KeyedModelHandler(ExportedModelHandler(model_dir, inference_fn=item_representations_inference,
                                                     min_batch_size=1, max_batch_size=batch_size))

    pipeline = beam.Pipeline(options=pipeline_options(pipeline_args or [], num_workers))
    lines = pipeline | "Read item ids" >> beam.io.ReadFromText(items, coder=beam.coders.BytesCoder())
    ids = lines | "Check" >> beam.ParDo(ToItemId()).with_outputs(ToItemId.DEAD, main="ok")
    embedded, failed = ids.ok | "Embed" >> RunInference(handler).with_exception_handling()
    rows = embedded | "To rows" >> beam.Map(to_row) | "Count embedded" >> beam.ParDo(Count("embedded", NAMESPACE))
    if "parquet" in output_formats:
        _ = rows | "Write Parquet" >> beam.io.WriteToParquet(output_prefix, parquet_schema(),
                                                              file_name_suffix=".parquet")
    if "tfrecord" in output_formats:
        _ = rows | beam.Map(to_example) | "Write TFRecords" >> beam.io.WriteToTFRecord(
            output_prefix, file_name_suffix=".tfrecord.gz")
    failed_letters = failed.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch_letters) \
        | "Count failed" >> beam.ParDo(Count("failed_inference", NAMESPACE))
    _ = (ids[ToItemId.DEAD], failed_letters) | beam.Flatten() | "Write dead letters" >> beam.io.WriteToText(
        f"{output_prefix}-dead_letter", file_name_suffix=".jsonl")

    return run_and_count(pipeline, NAMESPACE, "embedded", output_prefix)
