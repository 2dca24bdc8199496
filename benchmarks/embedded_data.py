"""The embedded dataset at its default size, generated and preprocessed once for a benchmark."""
from __future__ import annotations

import os


def ensure_embedded_data(data: str, raw: str, config: str | None) -> str:
    """The config of `data`: `config` if given, else the embedded dataset's, which is generated into `raw` and
    preprocessed into `data` first when `data` holds no `marn preprocess` output yet."""
    if os.path.exists(os.path.join(data, "schema.json")):
        return config or os.path.join(raw, "config.yaml")
    from marn_tf.config import Config
    from marn_tf.pipelines import preprocess
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, generate

    print(f"generating the embedded dataset into {raw} and {data} ...", flush=True)
    generate(GeneratorOptions(output=raw), progress=False)
    config = os.path.join(raw, "config.yaml")
    preprocess.run(Config.load(config), data, num_workers=2, overwrite=True)
    return config
