"""`marn score`: a Beam job that scores TFRecords or Parquet with an exported SavedModel.

    read (TFRecord tf.Examples, or Parquet rows with one column per schema feature)
      -> validate each record against the model's schema        bad records -> dead letter, with the reason
      -> RunInference(TensorFlow handler, serving_default)       a record the model refuses -> dead letter, with
                                                                 its reason (a batch that fails is scored again
                                                                 record by record, so the others are scored)
      -> one output row per record: its ids (request id, user id, candidate item id, position, timestamp,
         label; null when the record has none), probability and modality weights      JSON lines or Parquet

It runs where the preprocessing job runs: locally on Beam's FnApiRunner, or on Dataflow / Flink / Spark
with the same pipeline options (the model directory must then be readable by the workers, e.g. gs://).

Counts are data: the job counts records read, rows written and dead letters by reason with a combiner and
writes them to `<output>-counts.json`, which is read back and checked (read = scored + dead-lettered), so the
check is exact on any runner, whatever metrics it reports (`job_outputs.py`, shared with `marn embed-items`).

The output prefix's directory belongs to the command (`marn_tf/storage/ownership.py`): a new or empty
directory is claimed, one that holds anything else without the command's marker is refused. Before the job, the
files an earlier run wrote under the same prefix are deleted, so `<output>-*` never mixes two runs' shards.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import reprlib
from typing import Any, Iterable, Mapping, Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor

from marn_tf import schema as S
from marn_tf.example_codec import ExampleError, decode
from marn_tf.models.network import request_features
from marn_tf.export.errors import short_reason
from marn_tf.export.job_outputs import (check_batch_size, check_num_shards, count, owned_prefix, run_and_check,
                                        tally, write_counts, write_dead_letters)
from marn_tf.export.request_features import RequestError, required_features, serialize_request
from marn_tf.pipelines.beam_options import pipeline_options
from marn_tf.pipelines.example_schema import POSITION
from marn_tf.storage import ownership

log = logging.getLogger(__name__)
# What bad record bytes or values make the checks raise; anything else is logged once per type as well.
_RECORD_ERRORS = (RequestError, ValueError, TypeError, KeyError, ArithmeticError, UnicodeError)
_LOGGED: set = set()
COMMAND = "marn score"
ERROR = "error"  # in a PredictionResult's inference: why the model refused that record
INPUT_FORMATS = ("tfrecord", "parquet")
OUTPUT_FORMATS = ("jsonl", "parquet")
# Dead-letter reasons: a record that cannot be read or validated; one the model refused or could not score.
INVALID_RECORD, INFERENCE_FAILED = "invalid_record", "inference_failed"


def id_features(schema: S.Schema) -> list[S.FeatureSpec]:
    """What identifies a scored record in the output: metadata (request id, timestamp), the user and candidate
    item ids, the position (two impressions of one item in one request differ there), the label."""
    return [f for f in schema.features
            if S.METADATA in f.tags or f.vocabulary == S.USER_VOCABULARY or f.name == POSITION
            or (S.CANDIDATE in f.tags and S.ITEM_KEY in f.tags) or f.name == schema.label]


def check_example(serialized: bytes, schema: S.Schema):
    """(request example bytes, ids) of a serialized tf.Example, or raises RequestError naming the feature."""
    requested = request_features(schema)
    names = {f.name for f in requested}
    try:
        values = decode(serialized, requested + [f for f in id_features(schema) if f.name not in names],
                        required_features(schema))
    except ExampleError as err:
        raise RequestError(str(err)) from err
    ids = {f.name: values[f.name][0].decode("utf-8") if f.dtype == "string" else values[f.name][0]
           for f in id_features(schema) if values.get(f.name)}
    return serialized, ids


_ID_TYPES = {"string": str, "int64": int, "float32": (int, float)}


def parquet_ids(schema: S.Schema, row: Mapping[str, Any]) -> dict:
    """The ids of a Parquet row (its own columns, null ones left out); raises RequestError for a column that
    holds no single value of the schema's type."""
    ids = {}
    for f in id_features(schema):
        value = row.get(f.name)
        if value is None:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if f.dtype == "string" and isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, _ID_TYPES[f.dtype]) or isinstance(value, bool):
            raise RequestError(f"column {f.name!r} must hold one {f.dtype} value, got {reprlib.repr(value)}")
        ids[f.name] = float(value) if f.dtype == "float32" else value
    return ids


class ToRequest(beam.DoFn):
    """A record -> (ids, serialized tf.Example), or a dead letter {reason, detail, record}."""

    DEAD = "dead_letter"

    def __init__(self, schema_dict: dict, input_format: str):
        self.schema_dict, self.input_format = schema_dict, input_format

    def setup(self):
        self.schema = S.Schema.from_dict(self.schema_dict)

    def process(self, record):
        try:
            if self.input_format == "parquet":  # the ids from the row itself: the request leaves metadata out
                ids = parquet_ids(self.schema, record)
                serialized, _ = check_example(
                    serialize_request(self.schema, {k: v for k, v in record.items() if v is not None},
                                      log_rates=False), self.schema)
            else:
                serialized, ids = check_example(record, self.schema)
            yield ids, serialized
        except Exception as err:  # noqa: BLE001 -- whatever a record holds, it is dead-lettered, never the job
            if not isinstance(err, _RECORD_ERRORS) and type(err) not in _LOGGED:  # likely a bug of ours: say so
                _LOGGED.add(type(err))
                log.exception("unexpected %s checking a record to score (a bug in marn?)", type(err).__name__)
            detail = str(err) if isinstance(err, RequestError) else short_reason(err)
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter(INVALID_RECORD, detail, record))


def dead_letter(reason: str, detail: str, record) -> dict:
    """A dead letter: the reason, a short detail, and the record (hex of bytes, or JSON) cut to 2,000 characters."""
    text = record.hex()[:2000] if isinstance(record, bytes) else json.dumps(record, default=str)[:2000]
    return {"reason": reason, "detail": detail[:500], "record": text}


class ExportedModelHandler(TFModelHandlerTensor):
    """Beam's TensorFlow handler for a `marn export` SavedModel, run through the signature `inference_fn` calls.

    The SavedModel is a plain `tf.Module` (not a Keras model), so it is loaded with `tf.saved_model.load`;
    a batch is a list of byte strings (serialized tf.Examples for `serving_default`, item ids for
    `item_representations`).
    """

    def load_model(self):
        import tensorflow as tf

        return tf.saved_model.load(self._model_uri)

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(b) for b in batch)


def serving_default_inference(model, batch: Sequence[bytes], inference_args: dict,
                              model_id: Optional[str] = None) -> Iterable[PredictionResult]:
    """Scores the batch; when the model refuses it (a request check failed), scores each record alone, so only
    the records it refuses get an `ERROR` result (with the reason) and the rest are scored."""
    import tensorflow as tf

    signature = model.signatures["serving_default"]

    def score(examples: list[bytes]) -> list[dict]:
        outputs = {name: value.numpy() for name, value in signature(examples=tf.constant(examples),
                                                                    **inference_args).items()}
        return [{name: value[i] for name, value in outputs.items()} for i in range(len(examples))]

    try:
        inferences = score(list(batch))
    except tf.errors.InvalidArgumentError:
        inferences = []
        for example in batch:
            try:
                inferences += score([example])
            except tf.errors.InvalidArgumentError as err:
                inferences.append({ERROR: short_reason(err)})
    return [PredictionResult(example, inference, model_id) for example, inference in zip(batch, inferences)]


class ToRow(beam.DoFn):
    """(ids, PredictionResult) -> an output row, or a dead letter when the model refused the record."""

    DEAD = "dead_letter"

    def __init__(self, modalities: Sequence[str], id_names: Sequence[str]):
        self.modalities, self.id_names = list(modalities), list(id_names)

    def process(self, keyed: tuple):
        ids, result = keyed
        if ERROR in result.inference:
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter(INFERENCE_FAILED, result.inference[ERROR],
                                                                  result.example))
            return
        weights = result.inference["modality_weights"]
        yield {**{name: ids.get(name) for name in self.id_names}, "probability": float(result.inference["probability"]),
               **{f"weight_{m}": float(w) for m, w in zip(self.modalities, weights)}}


def failure_reason(error: tuple) -> str:
    """`Type: message` of an exception that Beam's exception handling caught, from what it passes on:
    (type, repr, formatted traceback lines), whose last line is `module.Type: message`."""
    kind, _, lines = error
    last = "".join(lines[-1:]).strip()
    message = last.split(": ", 1)[1] if ": " in last else ""
    return short_reason(type(getattr(kind, "__name__", "Error"), (Exception,), {})(message))


def failed_batch_letters(failed: tuple) -> list[dict]:
    """A batch that failed outside the model's request checks (the model could not be run): every record of it."""
    batch, error = failed
    reason = failure_reason(error)
    return [dead_letter(INFERENCE_FAILED, reason, ids) for ids, _ in batch]


def _parquet_schema(schema: S.Schema, modalities: Sequence[str]):
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float32": pa.float32()}
    fields = [(f.name, types[f.dtype]) for f in id_features(schema)]
    return pa.schema(fields + [("probability", pa.float64())] + [(f"weight_{m}", pa.float64()) for m in modalities])


def run(model_dir: str, input_pattern: str, output_prefix: str, input_format: str = "tfrecord",
        output_format: str = "jsonl", batch_size: int = 512, pipeline_args: Optional[list[str]] = None,
        num_workers: int = 1, num_shards: int = 0) -> dict[str, Any]:
    """Scores every record matching `input_pattern`; returns the counts (also written to <output>-counts.json).

    `num_shards`: files of predictions (0: as the runner chooses). An output prefix whose directory holds files
    `marn score` did not write is refused before any work (`owned_prefix`).
    """
    from marn_tf.export.check import read_info

    if input_format not in INPUT_FORMATS:
        raise S.SchemaError(f"--input-format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if output_format not in OUTPUT_FORMATS:
        raise S.SchemaError(f"--output-format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    check_num_shards(num_shards)
    check_batch_size(batch_size)
    info = read_info(model_dir)
    schema = S.Schema.load(os.path.join(model_dir, "assets", S.SCHEMA_FILE))
    matched = FileSystems.match([input_pattern])[0].metadata_list
    if not matched:
        raise S.SchemaError(f"no input files match {input_pattern}")
    modalities = info["modalities"]
    # the export refuses a batch above its max_batch: RunInference's batches stay within it
    batch_size = min(batch_size, info.get("max_batch") or batch_size)
    handler = KeyedModelHandler(ExportedModelHandler(model_dir, inference_fn=serving_default_inference, min_batch_size=1,
                                                     max_batch_size=batch_size))
    inputs = [("--model", model_dir), ("--input", input_pattern)] + [("input file", m.path) for m in matched]

    options = pipeline_options(pipeline_args or [], num_workers)  # checked before the prefix is claimed
    with owned_prefix(output_prefix, ownership.SCORE, COMMAND, (".jsonl", ".parquet"), inputs,
                      example="runs/scores/test"):
        pipeline = beam.Pipeline(options=options)
        if input_format == "tfrecord":
            records = pipeline | "Read TFRecords" >> beam.io.ReadFromTFRecord(input_pattern)
        else:
            records = pipeline | "Read Parquet" >> beam.io.ReadFromParquet(input_pattern)
        requests = records | "Validate" >> beam.ParDo(ToRequest(schema.to_dict(), input_format)).with_outputs(
            ToRequest.DEAD, main="ok")
        scored, failed = requests.ok | "Score" >> RunInference(handler).with_exception_handling()
        rows = scored | "To rows" >> beam.ParDo(ToRow(modalities, [f.name for f in id_features(schema)])).with_outputs(
            ToRow.DEAD, main="ok")
        if output_format == "jsonl":
            _ = rows.ok | beam.Map(json.dumps) | "Write predictions" >> beam.io.WriteToText(
                output_prefix, file_name_suffix=".jsonl", num_shards=num_shards)
        else:
            _ = rows.ok | "Write predictions" >> beam.io.WriteToParquet(
                output_prefix, _parquet_schema(schema, modalities), file_name_suffix=".parquet", num_shards=num_shards)
        failed_letters = failed.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch_letters)
        dead = write_dead_letters((requests[ToRequest.DEAD], rows[ToRow.DEAD], failed_letters), output_prefix)
        write_counts([count(records, "read", "Count read"), count(rows.ok, "scored", "Count scored"), dead],
                     output_prefix, functools.partial(tally, done="scored", reasons=(INVALID_RECORD, INFERENCE_FAILED)))
        return run_and_check(pipeline, output_prefix, "scored")


def summary(counts: Mapping[str, Any], output_prefix: str, output_format: str) -> str:
    """What `marn score` prints when it is done: the counts and where each output is."""
    dead = counts["dead_letters"]
    return (f"read {counts['read']:,} records: {counts['scored']:,} scored, {counts['dead_lettered']:,} dead-lettered "
            f"({dead[INVALID_RECORD]:,} invalid, {dead[INFERENCE_FAILED]:,} failed in the model)\n"
            f"predictions: {output_prefix}-?????-of-?????.{output_format}; dead letters: "
            f"{output_prefix}-dead_letter-*.jsonl; counts: {output_prefix}-counts.json")
