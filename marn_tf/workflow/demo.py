"""`marn demo`: the main job on the embedded synthetic dataset, in 10-15 minutes on 2 CPU cores.

It writes `<output>/config.yaml` (the generated dataset's config plus the registered "demo" preset's short
budgets, `marn_tf/presets.py`, then the caller's presets and overrides), generates the
dataset into `<output>/raw/` (a stage like the others: skipped when already there) and runs `marn run` on
that config, so `marn run --config runs/demo/config.yaml` repeats (and resumes) exactly what the demo did.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import yaml

from marn_tf.config import Config
from marn_tf.config_loader import apply_overrides
from marn_tf.presets import overrides_of
from marn_tf.storage import ownership
from marn_tf.workflow import main_job
from marn_tf.workflow import run_directory as layout
from marn_tf.workflow.stages import Stage, StageRunner

DEFAULT_OUTPUT = os.path.join("runs", "demo")
COMMAND = "marn demo"
PRESET = "demo"  # its budgets and ladder, applied before the caller's presets and --set


def demo(output: str = DEFAULT_OUTPUT, overrides: Sequence[str] = (), progress: Optional[bool] = None,
         presets: Sequence[str] = ()) -> dict:
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, dataset_config, generate

    raw = os.path.join(output, "raw")
    options = GeneratorOptions(output=os.path.abspath(raw))
    settings = overrides_of([PRESET, *presets]) + [f"run.output={output}"] + list(overrides)
    data = apply_overrides(dataset_config(options), settings)
    config = Config.from_dict(data)  # a bad --set or --preset fails here, before any work
    config_path = os.path.join(output, "config.yaml")
    # The demo writes config.yaml and raw/ besides what `marn run` writes; nothing of the user's may be there.
    written = [config_path, raw] + [os.path.join(output, name) for name in layout.ENTRIES]
    with ownership.owned_directory(output, ownership.RUN, COMMAND, written=written):
        with open(config_path, "w") as f:
            f.write("# marn demo: the generated dataset's config with the demo's short training budgets (the "
                    "\"demo\" preset).\n"
                    f"# `marn run --config {config_path}` repeats (and resumes) the demo.\n")
            yaml.safe_dump(data, f, sort_keys=False)
        stages = StageRunner(output, 1 + main_job.stage_count(config, output), command=COMMAND)
        stages.run(Stage("generate", "generate the embedded dataset", dataclasses.asdict(options), [raw],
                         lambda: generate(options, progress=progress is not False)))
        return main_job.run(config_path, output=output, progress=progress, stages=stages)
