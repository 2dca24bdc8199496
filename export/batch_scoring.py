"""`marn score`: a Beam job that scores TFRecords or Parquet with an exported SavedModel.

    read (TFRecord tf.Examples, or Parquet rows with one column per schema feature)
      -> validate each record against the model's schema        bad records -> dead letter, with the reason
      -> RunInference(TensorFlow handler, serving_default)       a record the model refuses -> dead letter, with
                                                                 its reason (a batch that fails is scored again
                                                                 record by record, so the others are scored)
      -> one output row per record: its ids (request id, user id, candidate item id, label when present),
         probability and modality weights                        JSON lines or Parquet

It runs where the preprocessing job runs: locally on Beam's FnApiRunner, or on Dataflow / Flink / Spark
with the same pipeline options (the model directory must then be readable by the workers, e.g. gs://).
Counts (read = scored + dead-lettered, checked) go to `<output>-counts.json`.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor

from marn_tf import schema as S
from marn_tf.example_codec import ExampleError, decode
from marn_tf.models.network import request_features
from marn_tf.export.errors import short_reason
from marn_tf.export.request_features import RequestError, required_features, serialize_request
from marn_tf.pipelines.beam_options import pipeline_options

log = logging.getLogger(__name__)
# What bad record bytes or values make the checks raise; anything else is logged once per type as well.
_RECORD_ERRORS = (RequestError, ValueError, TypeError, KeyError, ArithmeticError, UnicodeError)
_LOGGED: set = set()
NAMESPACE = "marn_score"
ERROR = "error"  # in a PredictionResult's inference: why the model refused that record
INPUT_FORMATS = ("tfrecord", "parquet")
OUTPUT_FORMATS = ("jsonl", "parquet")


def id_features(schema: S.Schema) -> list[S.FeatureSpec]:
    """What identifies a scored record in the output: metadata ids, the user and candidate item ids, the label."""
    wanted = []
    for f in schema.features:
        if (S.METADATA in f.tags and f.dtype == "string") or f.vocabulary == S.USER_VOCABULARY \
                or (S.CANDIDATE in f.tags and S.ITEM_KEY in f.tags) or f.name == schema.label:
            wanted.append(f)
    return wanted


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


class ToRequest(beam.DoFn):
    """A record -> (ids, serialized tf.Example), or a dead letter {reason, detail, record}."""

    DEAD = "dead_letter"

    def __init__(self, schema_dict: dict, input_format: str):
        self.schema_dict, self.input_format = schema_dict, input_format
        self.read = beam.metrics.Metrics.counter(NAMESPACE, "read")
        self.rejected = beam.metrics.Metrics.counter(NAMESPACE, "rejected_records")

    def setup(self):
        self.schema = S.Schema.from_dict(self.schema_dict)

    def process(self, record):
        self.read.inc()
        try:
            if self.input_format == "parquet":
                record = serialize_request(self.schema, {k: v for k, v in record.items() if v is not None})
            serialized, ids = check_example(record, self.schema)
            yield ids, serialized
        except Exception as err:  # noqa: BLE001 -- whatever a record holds, it is dead-lettered, never the job
            self.rejected.inc()
            if not isinstance(err, _RECORD_ERRORS) and type(err) not in _LOGGED:  # likely a bug of ours: say so
                _LOGGED.add(type(err))
                log.exception("unexpected %s checking a record to score (a bug in marn?)", type(err).__name__)
            detail = str(err) if isinstance(err, RequestError) else short_reason(err)
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter("invalid_record", detail, record))


def dead_letter(reason: str, detail: str, record) -> str:
    """A dead-letter line: the reason, a short detail, and the record (hex of bytes, or JSON) cut to 2,000 characters."""
    text = record.hex()[:2000] if isinstance(record, bytes) else json.dumps(record, default=str)[:2000]
    return json.dumps({"reason": reason, "detail": detail[:500], "record": text})


class Count(beam.DoFn):
    """Passes elements through, counting them under `name` (the counter is made once, not per element)."""

    def __init__(self, name: str, namespace: str = NAMESPACE):
        self.counter = beam.metrics.Metrics.counter(namespace, name)

    def process(self, element):
        self.counter.inc()
        yield element


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

    def __init__(self, modalities: Sequence[str]):
        self.modalities = list(modalities)
        self.scored = beam.metrics.Metrics.counter(NAMESPACE, "scored")
        self.failed = beam.metrics.Metrics.counter(NAMESPACE, "failed_inference")

    def process(self, keyed: tuple):
        ids, result = keyed
        if ERROR in result.inference:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(self.DEAD, dead_letter("inference_failed", result.inference[ERROR],
                                                                  result.example))
            return
        self.scored.inc()
        weights = result.inference["modality_weights"]
        yield {**ids, "probability": float(result.inference["probability"]),
               **{f"weight_{m}": float(w) for m, w in zip(self.modalities, weights)}}


def failed_batch_letters(failed: tuple) -> list[str]:
    """A batch that failed outside the model's request checks (the model could not be run): every record of it."""
    batch, error = failed
    return [dead_letter("inference_failed", short_reason(error), ids) for ids, _ in batch]


def _parquet_schema(schema: S.Schema, modalities: Sequence[str]):
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float32": pa.float32()}
    fields = [(f.name, types[f.dtype]) for f in id_features(schema)]
    return pa.schema(fields + [("probability", pa.float64())] + [(f"weight_{m}", pa.float64()) for m in modalities])


def run(model_dir: str, input_pattern: str, output_prefix: str, input_format: str = "tfrecord",
        output_format: str = "jsonl", batch_size: int = 512, pipeline_args: Optional[list[str]] = None,
        num_workers: int = 1) -> dict[str, Any]:
    """Scores every record matching `input_pattern`; returns the counts (also written to <output>-counts.json)."""
    from marn_tf.export.check import read_info

    if input_format not in INPUT_FORMATS:
        raise S.SchemaError(f"--input-format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if output_format not in OUTPUT_FORMATS:
        raise S.SchemaError(f"--output-format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    info = read_info(model_dir)
    schema = S.Schema.load(os.path.join(model_dir, "assets", S.SCHEMA_FILE))
    if not FileSystems.match([input_pattern])[0].metadata_list:
        raise S.SchemaError(f"no input files match {input_pattern}")
    modalities = info["modalities"]
    handler = KeyedModelHandler(ExportedModelHandler(model_dir, inference_fn=serving_default_inference, min_batch_size=1,
                                                     max_batch_size=batch_size))

    pipeline = beam.Pipeline(options=pipeline_options(pipeline_args or [], num_workers))
    if input_format == "tfrecord":
        records = pipeline | "Read TFRecords" >> beam.io.ReadFromTFRecord(input_pattern)
    else:
        records = pipeline | "Read Parquet" >> beam.io.ReadFromParquet(input_pattern)
    requests = records | "Validate" >> beam.ParDo(ToRequest(schema.to_dict(), input_format)).with_outputs(
        ToRequest.DEAD, main="ok")
    scored, failed = requests.ok | "Score" >> RunInference(handler).with_exception_handling()
    rows = scored | "To rows" >> beam.ParDo(ToRow(modalities)).with_outputs(ToRow.DEAD, main="ok")
    if output_format == "jsonl":
        _ = rows.ok | beam.Map(json.dumps) | "Write predictions" >> beam.io.WriteToText(
            output_prefix, file_name_suffix=".jsonl")
    else:
        _ = rows.ok | "Write predictions" >> beam.io.WriteToParquet(
            output_prefix, _parquet_schema(schema, modalities), file_name_suffix=".parquet")
    failed_letters = failed.failed_inferences | "Failed batches" >> beam.FlatMap(failed_batch_letters) \
        | "Count failed" >> beam.ParDo(Count("failed_inference"))
    _ = (requests[ToRequest.DEAD], rows[ToRow.DEAD], failed_letters) | beam.Flatten() | "Write dead letters" >> beam.io.WriteToText(
        f"{output_prefix}-dead_letter", file_name_suffix=".jsonl")

    return run_and_count(pipeline, NAMESPACE, "scored", output_prefix)


def run_and_count(pipeline: beam.Pipeline, namespace: str, done: str, output_prefix: str) -> dict[str, Any]:
    """Runs `pipeline`, then its counters of `namespace`: read = `done` + dead-lettered (rejected records and
    failed inferences), written to `<output_prefix>-counts.json`; raises when they do not balance."""
    result = pipeline.run()
    result.wait_until_finish()
    counts = {name: 0 for name in ("read", done, "rejected_records", "failed_inference")}
    for counter in result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]:
        counts[counter.key.metric.name] += counter.committed or 0
    counts["dead_lettered"] = counts["rejected_records"] + counts["failed_inference"]
    counts["balanced"] = counts["read"] == counts[done] + counts["dead_lettered"]
    with FileSystems.create(f"{output_prefix}-counts.json") as f:
        f.write(json.dumps(counts, indent=2).encode("utf-8"))
    if not counts["balanced"]:
        raise RuntimeError(f"records read ({counts['read']}) != {done} + dead-lettered: {counts}")
    return counts
