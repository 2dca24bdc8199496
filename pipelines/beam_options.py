"""Beam pipeline options for every marn Beam job: the standard flags (--runner, --project, ...), and
without --runner the local FnApiRunner with a chosen number of worker processes."""
from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from marn_tf.config_loader import ConfigError


def pipeline_options(pipeline_args: list[str], num_workers: int) -> PipelineOptions:
    """Standard Beam options; without --runner, the local FnApiRunner with `num_workers` processes (1 or more:
    checked before any work, whatever the runner, so that a mistake does not wait for a run without --runner)."""
    if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
        raise ConfigError(f"--workers (or run.workers) must be 1 or more local worker processes, got {num_workers!r}")
    options = PipelineOptions(pipeline_args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "FnApiRunner"  # named: DirectRunner would first try to download Prism
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = num_workers
        direct.direct_running_mode = "multi_processing" if num_workers > 1 else "in_memory"
    return options
