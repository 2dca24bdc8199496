"""`marn check-export`: does an exported version keep the serving contract? Exit code 0 when every check passes.

Run it in its own process after `marn export` (the CLI does): it loads the SavedModel the way a server
does, then

1. signatures against the schema: `serving_default`, `predict`, `predict_raw` and `item_representations` take
   and give the names, dtypes and shapes the schema and the export contract say;
2. replays `assets.extra/tf_serving_warmup_requests` through the signatures they name;
3. compares predictions with the in-memory Keras model rebuilt from the same checkpoint, on N validation
   examples, through `serving_default` and `predict` (and item representations through
   `item_representations`), within a tolerance; and through `predict_raw`, given random raw counters and
   times for those examples, against the Keras model given the pipeline's Python buckets of the same values;
4. prints `saved_model_cli show --all`.

A store-mode export (`marn export --item-store`, `mode` in export_info.json) is checked the same way through its
one signature: `predict` / `serving_default` against the schema (the request features but the item keys, and
the representation inputs of the recorded width), and the store-mode model given the checkpoint's item
representations for N validation examples against the checkpoint's model given their item ids.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

from marn_tf import schema as S
from marn_tf.models.network import request_features
from marn_tf.storage import files
from marn_tf.training.training_run import restore_run
from marn_tf.export import item_store_serving as ISS
from marn_tf.export import serving_module as SM
from marn_tf.export.errors import short_reason
from marn_tf.export.raw_features import raw_request_specs, raw_requests
from marn_tf.export.request_features import serving_parse_spec
from marn_tf.export.saved_model import INFO_FILE, ITEM_IDS, ITEM_STORE
from marn_tf.export.warmup import WARMUP_FILE, read_examples, read_warmup

INFO_KEYS = ("model_name", "modalities", "run", "checkpoint", "data")


@dataclasses.dataclass
class Check:
    name: str
    passed: bool
    detail: str


@dataclasses.dataclass
class CheckReport:
    model_dir: str
    checks: list[Check]
    saved_model_cli: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def is_version_directory(model_dir: str) -> None:
    """Raises SchemaError unless `model_dir` holds a SavedModel (the user pointed at the wrong directory)."""
    if not files.exists(files.join(model_dir, "saved_model.pb")):
        raise S.SchemaError(f"{model_dir} is not a SavedModel version directory (no saved_model.pb): point at "
                            "<base>/<model_name>/<version>")


def read_info(model_dir: str) -> dict:
    """The export's `export_info.json`; SchemaError naming the file when it is missing, not JSON or incomplete."""
    is_version_directory(model_dir)
    path = files.join(files.join(model_dir, "assets.extra"), INFO_FILE)
    if not files.exists(path):
        raise S.SchemaError(f"{model_dir} has no assets.extra/{INFO_FILE}: it was not written by `marn export`")
    try:
        info = json.loads(files.read_bytes(path) or b"")
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise S.SchemaError(f"{path} cannot be read as JSON ({err}): the export is damaged; export it again") from err
    missing = [key for key in INFO_KEYS if not isinstance(info, dict) or key not in info]
    if missing:
        raise S.SchemaError(f"{path} lacks {missing}: the export is damaged; export it again")
    # The checkpoint is read from this file: it must lie in the run it names (a moved run is looked up by it).
    run, checkpoint = files.normal_path(str(info["run"])), files.normal_path(str(info["checkpoint"]))
    if not checkpoint.startswith(run.rstrip("/") + "/"):
        raise S.SchemaError(f"{path}: the checkpoint {info['checkpoint']!r} is not inside the run {info['run']!r}: "
                            "the export is damaged; export it again")
    return info


def _spec_text(spec: tf.TensorSpec) -> str:
    return f"{spec.dtype.name}{[d for d in spec.shape.as_list()]}".replace("None", "-1")


def _compare_specs(what: str, got: dict, want: dict) -> list[str]:
    problems = []
    if set(got) != set(want):
        problems.append(f"{what} are {sorted(got)}, expected {sorted(want)}")
    for name in sorted(set(got) & set(want)):
        if got[name].dtype != want[name].dtype or got[name].shape.as_list() != want[name].shape.as_list():
            problems.append(f"{what[:-1]} {name!r} is {_spec_text(got[name])}, expected {_spec_text(want[name])}")
    return problems


def expected_signatures(schema: S.Schema, modalities: int, representation_dim: Optional[int]) -> dict:
    """{signature: (inputs, outputs)} as TensorSpecs, from the schema and the export contract."""
    outputs = {"probability": tf.TensorSpec([None], tf.float32),
               "modality_weights": tf.TensorSpec([None, modalities], tf.float32)}
    outputs = {**outputs, SM.ITEM_KNOWN: tf.TensorSpec([None], tf.bool)}
    raw = {f.name: tf.TensorSpec([None, *f.shape], S.tf_dtype(f.dtype)) for f in request_features(schema)}
    items = {"representation": tf.TensorSpec([None, representation_dim], tf.float32),
             "modality_weights": tf.TensorSpec([None, modalities], tf.float32),
             "modality_mask": tf.TensorSpec([None, modalities], tf.float32)}
    return {SM.SERVING_DEFAULT: ({"examples": tf.TensorSpec([None], tf.string)}, outputs),
            SM.PREDICT: (raw, outputs),
            SM.PREDICT_RAW: ({name: tf.TensorSpec(s.shape, s.dtype) for name, s in raw_request_specs(schema).items()},
                             outputs),
            SM.ITEM_REPRESENTATIONS: ({SM.ITEM_INPUT: tf.TensorSpec([None], tf.string)}, items)}


def expected_item_store_signatures(schema: S.Schema, modalities: int, representation_dim: int) -> dict:
    """{signature: (inputs, outputs)} of a store-mode export (`--item-store`) as TensorSpecs."""
    outputs = {"probability": tf.TensorSpec([None], tf.float32),
               "modality_weights": tf.TensorSpec([None, modalities], tf.float32)}
    inputs = {f.name: tf.TensorSpec([None, *f.shape], S.tf_dtype(f.dtype)) for f in request_features(schema)
              if S.ITEM_KEY not in f.tags}
    inputs.update({ISS.CANDIDATE_REPRESENTATION: tf.TensorSpec([None, representation_dim], tf.float32),
                   ISS.CANDIDATE_MODALITY_WEIGHTS: tf.TensorSpec([None, modalities], tf.float32),
                   ISS.CANDIDATE_MODALITY_MASK: tf.TensorSpec([None, modalities], tf.float32),
                   ISS.BEHAVIOUR_REPRESENTATION: tf.TensorSpec([None, schema.sequence_length, representation_dim],
                                                               tf.float32)})
    return {name: (inputs, outputs) for name in ISS.SIGNATURES}


def _signature_problems(loaded, expected: dict) -> list[str]:
    problems = []
    for name, (inputs, outputs) in expected.items():
        function = loaded.signatures[name]
        got_inputs = dict(function.structured_input_signature[1])
        got_outputs = {key: tf.TensorSpec(t.shape, t.dtype) for key, t in function.structured_outputs.items()}
        problems += [f"{name}: {p}" for p in _compare_specs("inputs", got_inputs, inputs)]
        problems += [f"{name}: {p}" for p in _compare_specs("outputs", got_outputs, outputs)]
    return problems


def check_signatures(loaded, schema: S.Schema, modalities: int) -> Check:
    missing = [name for name in (SM.SERVING_DEFAULT, SM.PREDICT, SM.PREDICT_RAW, SM.ITEM_REPRESENTATIONS)
               if name not in loaded.signatures]
    if missing:
        return Check("signatures match the schema", False, f"missing signatures {missing}")
    items = loaded.signatures[SM.ITEM_REPRESENTATIONS].structured_outputs["representation"]
    problems = _signature_problems(loaded, expected_signatures(schema, modalities, items.shape[-1]))
    detail = "; ".join(problems) or (f"{SM.SERVING_DEFAULT}(examples string[-1]), {SM.PREDICT}("
                                     f"{len(request_features(schema))} request features), {SM.PREDICT_RAW}("
                                     f"{len(raw_request_specs(schema))} inputs), "
                                     f"{SM.ITEM_REPRESENTATIONS}({SM.ITEM_INPUT} string[-1])")
    return Check("signatures match the schema", not problems, detail)


def check_item_store_signatures(loaded, schema: S.Schema, modalities: int, representation_dim: int) -> Check:
    """The signatures of a store-mode export against the schema and the recorded representation width."""
    missing = [name for name in ISS.SIGNATURES if name not in loaded.signatures]
    if missing:
        return Check("signatures match the schema", False, f"missing signatures {missing}")
    problems = _signature_problems(loaded, expected_item_store_signatures(schema, modalities, representation_dim))
    inputs = len(loaded.signatures[SM.PREDICT].structured_input_signature[1])
    detail = "; ".join(problems) or (f"{' and '.join(ISS.SIGNATURES)}({inputs} inputs: the request features but "
                                     f"the item keys, item representations of width {representation_dim})")
    return Check("signatures match the schema", not problems, detail)


def replay_warmup(loaded, model_dir: str, model_name: str) -> Check:
    path = files.join(files.join(model_dir, "assets.extra"), WARMUP_FILE)
    if not files.exists(path):
        return Check("warmup requests replay", False, f"no {path}")
    try:
        records = read_warmup(path)
    except (tf.errors.OpError, ValueError) as err:  # truncated or not PredictionLog records
        return Check("warmup requests replay", False, f"{path} cannot be read: {short_reason(err)}")
    replayed = []
    for i, record in enumerate(records):
        request = record.predict_log.request
        if request.model_spec.name != model_name:
            return Check("warmup requests replay", False, f"request {i} names model {request.model_spec.name!r}, "
                         f"the export is {model_name!r}")
        signature = request.model_spec.signature_name or SM.SERVING_DEFAULT
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        try:
            outputs = loaded.signatures[signature](**inputs)
        except Exception as err:  # noqa: BLE001  (report which request failed and why)
            return Check("warmup requests replay", False, f"request {i} ({signature}) failed: {short_reason(err)}")
        batch = next(iter(inputs.values())).shape[0]
        if any(o.shape[0] != batch or not np.all(np.isfinite(o.numpy())) for o in outputs.values()):
            return Check("warmup requests replay", False, f"request {i} ({signature}) gave a wrong shape or non-finite values")
        replayed.append(f"{signature}[{batch}]")
    return Check("warmup requests replay", bool(replayed), f"{len(replayed)} requests: {', '.join(replayed)}")


def compare_with_checkpoint(loaded, info: dict, run_dir: str, data_dir: str, examples: int,
                            tolerance: float) -> list[Check]:
    config, schema, network, _ = restore_run(run_dir, data_dir, info["checkpoint"])
    serialized = read_examples(data_dir, schema, "validation", examples)
    features = tf.io.parse_example(serialized, serving_parse_spec(schema))

    @tf.function
    def reference(features):  # the in-memory model, graph mode like the server's
        out = network.full(features, training=False)
        return out["probability"], out["modality_weights"]

    want, want_weights = (t.numpy() for t in reference(features))
    checks = []
    for signature, inputs in ((SM.SERVING_DEFAULT, {"examples": tf.constant(serialized)}), (SM.PREDICT, features)):
        out = loaded.signatures[signature](**inputs)
        gap = max(float(np.max(np.abs(out["probability"].numpy() - want))),
                  float(np.max(np.abs(out["modality_weights"].numpy() - want_weights))))
        checks.append(Check(f"{signature} matches the checkpoint", gap <= tolerance,
                            f"{len(serialized)} validation examples, max |difference| {gap:.2e} (tolerance {tolerance:g})"))
    raw, bucketed = raw_requests(schema, {name: value.numpy() for name, value in features.items()})
    want, want_weights = (t.numpy() for t in reference({name: tf.constant(v) for name, v in bucketed.items()}))
    out = loaded.signatures[SM.PREDICT_RAW](**{name: tf.constant(v) for name, v in raw.items()})
    gap = max(float(np.max(np.abs(out["probability"].numpy() - want))),
              float(np.max(np.abs(out["modality_weights"].numpy() - want_weights))))
    checks.append(Check(f"{SM.PREDICT_RAW} matches the checkpoint", gap <= tolerance,
                        f"{len(serialized)} validation examples with random raw values, the checkpoint given the "
                        f"pipeline's buckets of them: max |difference| {gap:.2e} (tolerance {tolerance:g})"))
    items = tf.constant(S.read_vocabulary(files.join(data_dir, schema.vocabularies[S.ITEM_VOCABULARY].file))[:examples])
    got = loaded.signatures[SM.ITEM_REPRESENTATIONS](**{SM.ITEM_INPUT: items})["representation"].numpy()
    lookup = network.lookup.get_layer(f"{S.ITEM_VOCABULARY}_lookup")
    want_items = tf.function(lambda ids: network.item_tower.encode(tf.cast(lookup(ids), tf.int32), training=False)
                             ["representation"])(items).numpy()
    gap = float(np.max(np.abs(got - want_items)))
    checks.append(Check(f"{SM.ITEM_REPRESENTATIONS} matches the checkpoint", gap <= tolerance,
                        f"{len(items)} items, max |difference| {gap:.2e} (tolerance {tolerance:g})"))
    return checks


def compare_item_store_with_checkpoint(loaded, info: dict, run_dir: str, data_dir: str, examples: int,
                                       tolerance: float) -> list[Check]:
    """A store-mode export given the checkpoint's item representations against the checkpoint's model given the
    item ids, on `examples` validation examples."""
    _, schema, network, _ = restore_run(run_dir, data_dir, info["checkpoint"])
    features = tf.io.parse_example(read_examples(data_dir, schema, "validation", examples), serving_parse_spec(schema))
    want = tf.function(lambda features: network.full(features, training=False))(features)
    request = ISS.item_store_request(schema, {name: value.numpy() for name, value in features.items()},
                                     ISS.network_item_representations(network))
    out = loaded.signatures[SM.PREDICT](**{name: tf.constant(value) for name, value in request.items()})
    gap = max(float(np.max(np.abs(out[key].numpy() - want[key].numpy()))) for key in SM.OUTPUTS)
    rows = len(request[ISS.CANDIDATE_REPRESENTATION])
    return [Check(f"{SM.PREDICT} matches the checkpoint", gap <= tolerance,
                  f"{rows} validation examples, the checkpoint's item representations in place of their ids: "
                  f"max |difference| {gap:.2e} (tolerance {tolerance:g})")]


def saved_model_cli_show(model_dir: str) -> tuple[bool, str]:
    """`saved_model_cli show --dir <model_dir> --all` (TensorFlow's own view of the signatures)."""
    run = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
                          model_dir, "--all"], capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return run.returncode == 0, run.stdout if run.returncode == 0 else run.stderr[-2000:]


def check_export(model_dir: str, run_dir: Optional[str] = None, data_dir: Optional[str] = None,
                 examples: int = 256, tolerance: float = 1e-5) -> CheckReport:
    """Runs every check; `run_dir` and `data_dir` default to those recorded at export (a `run_dir` given
    here is where the recorded run now lives: its checkpoint is looked up inside it)."""
    is_version_directory(model_dir)  # the wrong directory is a usage error (exit 2), not a failed check
    checks: list[Check] = []

    def attempt(name: str, step: Callable[[], Any]) -> Any:
        """`step()`, or None with a failed check saying why (a damaged export must not end in a traceback)."""
        try:
            return step()
        except S.SchemaError as err:
            checks.append(Check(name, False, str(err)))
        except (OSError, ValueError, KeyError, tf.errors.OpError) as err:  # what a damaged export raises
            checks.append(Check(name, False, short_reason(err)))
        except Exception as err:  # noqa: BLE001 -- still a [FAIL] line, but said to be ours, not the export's
            logging.getLogger(__name__).error("check %r: internal error", name, exc_info=True)  # the whole traceback
            checks.append(Check(name, False, f"internal error of check-export (please report it): {short_reason(err)}"))
        return None

    info = attempt(f"read assets.extra/{INFO_FILE}", lambda: read_info(model_dir))
    loaded = attempt("load the SavedModel", lambda: tf.saved_model.load(model_dir))
    schema = loaded and attempt("read the schema asset", lambda: S.Schema.load(
        loaded.schema_asset.asset_path.numpy().decode("utf-8")))
    if info and run_dir:  # the run moved (another machine, another mount): the same checkpoint inside it
        inside = files.normal_path(info["checkpoint"])[len(files.normal_path(info["run"]).rstrip("/")) + 1:]
        info = {**info, "checkpoint": files.join(run_dir, inside)}
    if info and loaded and schema:
        run_dir, data_dir = run_dir or info["run"], data_dir or info["data"]
        item_store = info.get("mode", ITEM_IDS) == ITEM_STORE  # exports before the mode was recorded: item ids
        if item_store:
            signatures = attempt("signatures match the schema", lambda: check_item_store_signatures(
                loaded, schema, len(info["modalities"]), int(info["representation_dim"])))
        else:
            signatures = attempt("signatures match the schema",
                                 lambda: check_signatures(loaded, schema, len(info["modalities"])))
        checks += [c for c in (signatures, replay_warmup(loaded, model_dir, info["model_name"])) if c]
        compare = compare_item_store_with_checkpoint if item_store else compare_with_checkpoint
        if signatures and signatures.passed:
            checks += attempt("compare with the checkpoint", lambda: compare(
                loaded, info, run_dir, data_dir, examples, tolerance)) or []
    cli_ok, cli_text = saved_model_cli_show(model_dir)
    checks.append(Check("saved_model_cli show --all", cli_ok, "ran" if cli_ok else "failed (output below)"))
    return CheckReport(model_dir, checks, cli_text)
