"""One small `marn run` (tiny data and models, a two-variant ladder over two seeds) shared by the workflow tests."""
import io
import os

import pytest

from tests.testing import TINY_RUN, write_config


@pytest.fixture(scope="session")
def raw_dataset(tmp_path_factory):
    """(generated dataset's config as YAML data, directory): with broken records, so dead letters exist."""
    from marn_tf.pipelines.synthetic_data import GeneratorOptions, dataset_config, generate

    options = GeneratorOptions(output=str(tmp_path_factory.mktemp("workflow") / "raw"), users=40, items=150, days=8,
                               image_dim=8, bad_record_rate=0.01)
    generate(options, progress=False)
    return dataset_config(options), options.output


@pytest.fixture(scope="session")
def flow_run(raw_dataset):
    """(summary, run directory, config path, what the run printed) of one complete `marn run`."""
    from marn_tf.workflow.main_job import run

    data_config, raw = raw_dataset
    base = os.path.dirname(raw)
    config = write_config(os.path.join(base, "tiny.yaml"), data_config, TINY_RUN)
    run_dir = os.path.join(base, "run")
    printed = io.StringIO()
    summary = run(config, output=run_dir, progress=False, stream=printed)
    return summary, run_dir, config, printed.getvalue()
