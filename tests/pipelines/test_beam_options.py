"""Beam options: without --runner the local FnApiRunner with the asked worker processes; a given runner is kept."""
import pytest
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, StandardOptions

from marn_tf.config_loader import ConfigError
from marn_tf.pipelines.beam_options import pipeline_options


def test_without_a_runner_the_local_runner_with_its_workers():
    several = pipeline_options([], num_workers=3)
    assert several.view_as(StandardOptions).runner == "FnApiRunner"  # not DirectRunner: it would fetch Prism
    direct = several.view_as(DirectOptions)
    assert direct.direct_num_workers == 3 and direct.direct_running_mode == "multi_processing"
    assert pipeline_options([], num_workers=1).view_as(DirectOptions).direct_running_mode == "in_memory"


def test_a_named_runner_and_its_flags_are_kept():
    options = pipeline_options(["--runner", "DataflowRunner", "--project", "p", "--region", "r"], num_workers=4)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(GoogleCloudOptions).project == "p"
    assert options.view_as(DirectOptions).direct_num_workers != 4  # local workers only for the local runner


def test_no_local_worker_process_is_a_config_error_naming_the_flag():
    """0 or a negative number of local workers fails before any work, whatever the runner, naming --workers."""
    for workers in (0, -2):
        with pytest.raises(ConfigError, match=rf"--workers \(or run.workers\) must be 1 or more .* got {workers}"):
            pipeline_options(["--runner", "DataflowRunner"], num_workers=workers)
