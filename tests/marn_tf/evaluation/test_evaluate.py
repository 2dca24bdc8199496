"""`marn evaluate` on a trained run: the JSON, the HTML report's sections and plots, and clear errors."""
import dataclasses
import json
import re

import pytest

from marn_tf import cli
from marn_tf.training.trainer import train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory):
    config, data, _ = prepared
    directory = tmp_path_factory.mktemp("run")
    train(dataclasses.replace(config, train=dataclasses.replace(config.train, steps_per_epoch=4, epochs=1,
                                                                validation_steps=1)), data, str(directory))
    return directory


def test_evaluate_writes_json_and_report(prepared, run, capsys):
    _, data, _ = prepared
    assert cli.main(["evaluate", "--run", str(run), "--data", data, "--split", "validation"]) == 0
    assert "AUC" in capsys.readouterr().out
    out = run / "evaluation_validation"
    result = json.loads((out / "evaluation.json").read_text())
    assert result["modalities"] == ["id", "image", "text", "statistic"] and result["chance_accuracy"] == 0.25
    assert 0 <= result["d1_accuracy"] <= 1 and 0 <= result["ds_accuracy"] <= 1
    slices = result["slices"]
    assert slices["cold_items"]["examples"] + slices["warm_items"]["examples"] == result["examples"]
    assert sum(c["examples"] for c in result["modality_weights_by_category"].values()) == result["examples"]
    assert {"missing_image", "missing_text", "missing_statistic"} <= set(slices)
    page = (out / "evaluation.html").read_text()
    for section in ("metrics", "slices", "modality-weights"):
        assert re.search(f'<section id="{section}">', page)
    for image in re.findall(r'<img src="([^"]+)"', page):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wrong_run_directory_is_a_clear_error(prepared, tmp_path, capsys):
    _, data, _ = prepared
    assert cli.main(["evaluate", "--run", str(tmp_path), "--data", data]) == 2
    assert "is not a training run" in capsys.readouterr().err

