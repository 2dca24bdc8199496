"""One small `marn run` (tiny data and models, a two-variant ladder over two seeds) shared by the workflow tests."""
import io
import os

import pytest
import yaml

TINY = ["sequence.max_length=8", "model.units=8", "model.common_units=8", "model.gru_units=8",
        "model.hidden_units=[16]", "model.discriminator_hidden=[8]", "train.batch_size=32",
        "train.steps_per_epoch=4", "train.epochs=2", "train.validation_steps=2", "train.early_stopping_patience=0",
        "run.ladder=[concat, marn]", "run.seeds=[1, 2]", "run.workers=1"]


def write_config(path, data_config: dict, overrides) -> str:
    from marn_tf.config_loader import apply_overrides

    with open(path, "w") as f:
        yaml.safe_dump(apply_overrides(data_config, list(overrides)), f)
    return str(path)


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
    config = write_config(os.path.join(base, "tiny.yaml"), data_config, TINY)
    run_dir = os.path.join(base, "run")
    printed = io.StringIO()
    summary = run(config, output=run_dir, progress=False, stream=printed)
    return summary, run_dir, config, printed.getvalue()
