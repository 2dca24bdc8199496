"""`marn export`: a training run's checkpoint -> a versioned SavedModel that TF Serving serves unchanged.

    <base>/<model_name>/<version>/        integer versions; TF Serving serves the highest
        saved_model.pb, variables/        signatures: see export.serving_module (export.item_store_serving
                                          with --item-store: item representations in requests, no item table)
        assets/schema.json                the schema the model was trained on (and the vocabulary files)
        assets.extra/tf_serving_warmup_requests   PredictionLog records from validation examples
        assets.extra/export_info.json     where the model came from: run, checkpoint, data, variant, modalities;
                                          mode: item_ids, or item_store (with representation_dim)
    <base>/models.config                  a TF Serving model config: this model's entry merged into what is
                                          there (export.serving_config; a file it cannot add to is refused)

A version is written under a temporary name and renamed into place when complete, so a server watching
<base>/<model_name> never loads a half-written version (on an object store such as gs://, which cannot rename,
its files are copied with saved_model.pb last: `marn_tf.storage.files.move_tree`). Its `.marn-owner.json` (kind `temporary`, the
writing process) goes in first: a staging directory left by a killed export is removed by the next one.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import tempfile
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from marn_tf.models.network import Network
from marn_tf.schema import ITEM_VOCABULARY, SchemaError, read_vocabulary
from marn_tf.training.training_run import restore_run
from marn_tf.storage import files, ownership
from marn_tf.export import item_store_serving as ISS
from marn_tf.export import serving_config
from marn_tf.export import serving_module as SM
from marn_tf.export.serving_config import MODELS_CONFIG  # noqa: F401  (where the Dockerfile's server reads it)
from marn_tf.export.raw_features import raw_requests
from marn_tf.export.request_features import serving_parse_spec
from marn_tf.export.warmup import WARMUP_FILE, predict_log, read_examples, write_warmup

log = logging.getLogger(__name__)
INFO_FILE = "export_info.json"
STAGING = ".staging-"  # a version being written: <base>/<model_name>/.staging-<version>-*
SERVING_BASE = "/models"  # where the serving image (Dockerfile) and the README's docker run mount the base
ITEM_IDS = "item_ids"  # export_info.json "mode": requests name items by id, the catalog is inside
ITEM_STORE = "item_store"  # requests carry item representations from a feature store (`--item-store`)


@dataclasses.dataclass
class ExportResult:
    path: str
    model_name: str
    version: int
    checkpoint: str
    warmup_requests: int
    seconds: float


def versions(model_dir: str) -> list[int]:
    """The integer version directories under `<base>/<model_name>`, ascending."""
    return sorted(int(d) for d in files.entries(model_dir)
                  if d.isdigit() and (files.is_remote(model_dir) or os.path.isdir(os.path.join(model_dir, d))))


def export_model(run_dir: str, data_dir: str, base_dir: str, model_name: str = "marn", version: Optional[int] = None,
                 checkpoint: Optional[str] = None, warmup_batch_sizes: Sequence[int] = (1, 100),
                 serving_base: str = SERVING_BASE, item_store: bool = False,
                 max_batch: int = SM.DEFAULT_MAX_BATCH) -> ExportResult:
    """Exports `checkpoint` (default: the run's best) of `run_dir` as `<base_dir>/<model_name>/<version>`.

    `version` defaults to one more than the highest existing one. `serving_base` is where `base_dir` is
    mounted for the server (the `base_path` prefix in models.config). `item_store`: the model without the
    item table, taking item representations (`marn embed-items`' output) in requests
    (`export.item_store_serving`), so that its size does not depend on the catalog. `max_batch`: the most rows
    the item-id signatures take in one request (more are refused, so one request cannot take gigabytes).
    """
    start = time.time()
    model_dir = files.join(base_dir, model_name)
    version = version if version is not None else (versions(model_dir) or [0])[-1] + 1
    if max_batch < 1:
        raise SchemaError(f"--max-batch must be 1 or more rows, got {max_batch}")
    if version < 1:
        raise SchemaError(f"--version must be a positive integer, got {version}")
    final = files.join(model_dir, str(version))
    if files.exists(final):
        raise SchemaError(f"{final} already exists: pass another --version, or leave it out to take the next one")

    if checkpoint and not files.normal_path(checkpoint).startswith(files.normal_path(run_dir).rstrip("/") + "/"):
        # check-export reads it back inside the run (and a moved run by it): another run's would not be found
        raise SchemaError(f"the checkpoint {checkpoint!r} is not inside the run {run_dir!r}: name one of its "
                          f"best/ckpt-N or checkpoints/ckpt-N, or pass that checkpoint's run as --run")
    serving_config.check(base_dir)  # a models.config marn cannot add to is refused before any work
    config, schema, network, checkpoint = restore_run(run_dir, data_dir, checkpoint)
    # Written under a new hidden name and renamed into place when complete; removed if anything fails first,
    # or by the next export when this process is killed first.
    ownership.remove_stale_temporaries(model_dir, STAGING)
    with ownership.temporary_directory(model_dir, f"{STAGING}{version}-", "marn export") as staging:
        # The schema asset is the schema the served network was built from: the pipeline's, less the item content
        # features when the examples carried them (requests carry item ids; the model holds the table).
        with tempfile.TemporaryDirectory(prefix="marn-export-schema-") as schema_dir:
            schema_file = schema.save(schema_dir)
            module = (ISS.ItemStoreServingModule(network, schema, schema_file) if item_store
                      else SM.ServingModule(network, schema, schema_file, max_batch))
            signatures = module.signatures()
            tf.saved_model.save(module, staging, signatures=signatures)

        logs = (item_store_warmup_requests(data_dir, schema, model_name, warmup_batch_sizes, network) if item_store
                else warmup_requests(data_dir, schema, model_name, warmup_batch_sizes))
        write_warmup(files.join(files.join(staging, "assets.extra"), WARMUP_FILE), logs)
        info = {
            "model_name": model_name, "version": version, "variant": config.model.variant,
            "run": files.normal_path(run_dir), "checkpoint": files.normal_path(checkpoint),
            "data": files.normal_path(data_dir),
            "modalities": list(network.modalities), "signatures": sorted(signatures),
            "outputs": list(SM.OUTPUTS) + ([] if item_store else [SM.ITEM_KNOWN]),
            "max_batch": None if item_store else max_batch, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "tensorflow": tf.__version__, "mode": ITEM_STORE if item_store else ITEM_IDS,
        }
        if item_store:
            info["representation_dim"] = module.representation_dim
        files.write_text(files.join(files.join(staging, "assets.extra"), INFO_FILE), json.dumps(info, indent=2))
        files.move_tree(staging, final, last=("saved_model.pb",))
    serving_config.merge(base_dir, model_name, serving_base,
                         (d for d in files.entries(base_dir) if versions(files.join(base_dir, d))))
    log.info("exported %s (checkpoint %s) to %s", config.model.variant, checkpoint, final)
    return ExportResult(final, model_name, version, checkpoint, len(logs), round(time.time() - start, 1))


def warmup_requests(data_dir: str, schema, model_name: str, batch_sizes: Sequence[int]) -> list:
    """One request per batch size for `serving_default`, plus one each for `predict`, `predict_raw` (random raw
    counters and times) and `item_representations`."""
    if not batch_sizes:
        return []
    examples = read_examples(data_dir, schema, "validation", max(batch_sizes))
    if not examples:
        raise SchemaError(f"the validation split in {data_dir} has no examples for the warmup requests")
    logs = [predict_log(model_name, SM.SERVING_DEFAULT, {"examples": np.array(examples[:n], dtype=object)})
            for n in batch_sizes]
    first = tf.io.parse_example(examples[:1], serving_parse_spec(schema))
    parsed = {name: value.numpy() for name, value in first.items()}
    logs.append(predict_log(model_name, SM.PREDICT, parsed))
    logs.append(predict_log(model_name, SM.PREDICT_RAW, raw_requests(schema, parsed)[0]))
    items = read_vocabulary(files.join(data_dir, schema.vocabularies[ITEM_VOCABULARY].file))[:max(batch_sizes)]
    logs.append(predict_log(model_name, SM.ITEM_REPRESENTATIONS, {SM.ITEM_INPUT: np.array(items, dtype=object)}))
    return logs


def item_store_warmup_requests(data_dir: str, schema, model_name: str, batch_sizes: Sequence[int],
                                network: Network) -> list:
    """One `predict` request per batch size for a store-mode export: validation examples with their items'
    representations computed by `network` (the exported checkpoint), as the feature store would give them."""
    if not batch_sizes:
        return []
    examples = read_examples(data_dir, schema, "validation", max(batch_sizes))
    if not examples:
        raise SchemaError(f"the validation split in {data_dir} has no examples for the warmup requests")
    parsed = {name: value.numpy() for name, value in
              tf.io.parse_example(examples, serving_parse_spec(schema)).items()}
    request = ISS.item_store_request(schema, parsed, ISS.network_item_representations(network))
    return [predict_log(model_name, SM.PREDICT, {name: value[:n] for name, value in request.items()})
            for n in batch_sizes]

