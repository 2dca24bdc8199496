"""Beam pipeline options for every marn Beam job: the standard flags (--runner, --project, ...), and
without --runner the local FnApiRunner with a chosen number of worker processes."""
from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions


def pipeline_options(pipeline_args: list[str], num_workers: int) -> PipelineOptions:
    """Standard Beam options; without --runner, the local FnApiRunner with `num_workers` processes."""
    options = PipelineOptions(pipeline_args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "FnApiRunner"  # named: DirectRunner would first try to download Prism
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = num_workers
        direct.direct_running_mode = "multi_processing" if num_workers > 1 else "in_memory"
    return options
