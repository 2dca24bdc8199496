"""The embedded dataset at its default size, generated and preprocessed once for a benchmark."""
from __future__ import annotations

import json
import os


def _preprocessed_by_current_code(data: str) -> bool:
    """Whether `data` holds `marn preprocess` output with every field training reads: a cache made before
    `split_examples` existed (2026-11-30) cannot train at the default learning-rate decay."""
    path = os.path.join(data, "schema.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return bool(json.load(f).get("split_examples"))


def ensure_embedded_data(data: str, raw: str, config: str | None) -> str:
    """The config of `data`: `config` if given, else the embedded dataset's, which is generated into `raw` and
    preprocessed into `data` first when `data` holds no `marn preprocess` output yet, or output of an older
    version (preprocessed again; the generator is seeded, so the examples are the same)."""
    if config or _preprocessed_by_current_code(data):
        return config or os.path.join(raw, "config.yaml")
    from marn_tf.config import Config
    from marn_tf.pipelines import preprocess
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate

    config = os.path.join(raw, "config.yaml")
    if not os.path.exists(config):
        print(f"generating the embedded dataset into {raw} ...", flush=True)
        generate(GeneratorOptions(output=raw), progress=False)
    print(f"preprocessing it into {data} ...", flush=True)
    preprocess.run(Config.load(config), data, num_workers=2, overwrite=True)
    return config


REALISTIC_USERS = 1500  # about 150,000 impressions, as many as the embedded data's


def ensure_realistic_data(data: str, raw: str, config: str | None) -> str:
    """`ensure_embedded_data` for `marn generate-data --world realistic --users 1500`."""
    if config or _preprocessed_by_current_code(data):
        return config or os.path.join(raw, "config.yaml")
    from marn_tf.config import Config
    from marn_tf.pipelines import preprocess
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate

    config = os.path.join(raw, "config.yaml")
    if not os.path.exists(config):
        print(f"generating the realistic world into {raw} ...", flush=True)
        generate(GeneratorOptions(output=raw, world="realistic", users=REALISTIC_USERS), progress=False)
    print(f"preprocessing it into {data} ...", flush=True)
    preprocess.run(Config.load(config), data, num_workers=2, overwrite=True)
    return config
