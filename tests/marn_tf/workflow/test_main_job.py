"""`marn run`: every stage on a small dataset, the summary, and resuming stage by stage."""
import io
import json
import os

import pytest

from marn_tf.config import Config
from marn_tf.config_loader import ConfigError
from marn_tf.workflow.main_job import model_runs, run
from tests.testing import TINY_RUN, write_config

pytestmark = pytest.mark.integration


def stages_that(printed: str, outcome: str) -> list[str]:
    """Titles of the stages whose progress line says `outcome` ("done in" or "skipped")."""
    return [line.split("] ", 1)[1].split(f": {outcome}")[0] for line in printed.splitlines()
            if line.startswith("[") and f": {outcome}" in line]


def test_the_flow_trains_evaluates_exports_and_summarises_every_model(flow_run):
    summary, run_dir, _, printed = flow_run
    assert list(summary["ladder"]) == ["concat", "marn"]
    evaluated = {}  # model directory -> log loss
    for variant, results in summary["ladder"].items():
        assert [r["seed"] for r in results] == [1, 2] and all(r["variant"] == variant for r in results)
        for r in results:  # each rung's figures are its own evaluation's
            with open(r["evaluation"]) as f:
                evaluation = json.load(f)
            assert (evaluation["variant"], evaluation["auc"], evaluation["logloss"]) == (variant, r["auc"], r["logloss"])
            evaluated[evaluation["run"]] = evaluation["logloss"]
    assert len(evaluated) == 4 and len(set(evaluated.values())) == 4  # four models, each trained and evaluated
    # The main model (marn, seed 1, the same budget) is the ladder's marn seed-1 rung, trained once.
    assert summary["ladder"]["marn"][0] == summary["main"]
    assert not os.path.exists(os.path.join(run_dir, "ladder", "marn-seed1"))
    assert sorted(os.listdir(os.path.join(run_dir, "ladder"))) == ["concat-seed1", "concat-seed2", "marn-seed2"]
    assert summary["ladder"]["concat"][0]["d1_accuracy"] is None  # concat has no discriminators
    assert summary["export"]["passed"] and len(summary["export"]["checks"]) == 7
    assert summary["export"]["model"] == {"name": "model", "variant": "marn", "seed": 1, "reason": "main model"}
    with open(os.path.join(run_dir, "export_check.json")) as f:
        assert json.load(f)["exported"] == summary["export"]["model"]
    validation = {name: t["best_val_auc"] for name, t in summary["training"].items()}
    best = summary["selection"]["best"]  # the rung with the highest mean validation AUC over its seeds
    assert best["validation_auc"] == max(sum(validation[r["name"]] for r in results) / 2
                                         for results in summary["ladder"].values())
    assert f"best rung on validation AUC: {best['variant']} ({best['validation_auc']:.4f}" in printed
    assert os.path.exists(os.path.join(summary["export"]["path"], "saved_model.pb"))
    sources = summary["pipeline"]["sources"]
    assert all(s["balanced"] for s in sources.values()) and sources["events"]["dead_lettered"] > 0
    with open(os.path.join(run_dir, "summary.json")) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    records = os.listdir(os.path.join(run_dir, "stages"))
    assert len(records) == 12  # preprocess, 4 x (train, evaluate), export, check-export, report
    for name in records:
        with open(os.path.join(run_dir, "stages", name)) as f:
            assert json.load(f)["status"] == "done", name
    assert "| ladder: concat | 1,2 |" in printed and "| main model: marn | 1 |" in printed
    with open(summary["main"]["evaluation"]) as f:
        floor = json.load(f)["floor"]
    assert summary["floor"] == floor and floor["examples"] == summary["main"]["examples"]
    assert f"| no-model floor | – | {floor['auc']:.4f} |" in printed
    assert f"| main model: marn | 1 | {summary['main']['auc']:.4f} | {summary['main']['auc'] - floor['auc']:+.4f} |" \
        in printed
    assert f"report: {os.path.abspath(run_dir)}/report.html" in printed


def test_running_it_again_skips_every_stage(flow_run):
    summary, run_dir, config, _ = flow_run
    printed = io.StringIO()
    again = run(config, output=run_dir, progress=False, stream=printed)
    assert len(stages_that(printed.getvalue(), "skipped, its outputs exist and match its inputs")) == 12
    assert stages_that(printed.getvalue(), "done in") == []
    assert again == summary


def test_rerunning_its_own_marked_directory_through_the_cli_skips_every_stage(flow_run, capsys):
    """The run directory carries the run's marker (kept across runs) and no lock once the run is over."""
    from marn_tf import cli
    from marn_tf.storage import locks, ownership

    _, run_dir, config, _ = flow_run
    with open(os.path.join(run_dir, ownership.MARKER)) as f:
        marker = json.load(f)
    assert marker["kind"] == "run" and marker["command"] == "marn run" and marker["run_id"]
    with open(os.path.join(run_dir, "preprocessed", ownership.MARKER)) as f:
        assert json.load(f)["kind"] == "preprocess"
    assert not os.path.exists(os.path.join(run_dir, locks.LOCK))
    assert cli.main(["run", "--config", config, "--output", run_dir, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert len(stages_that(printed, "skipped, its outputs exist and match its inputs")) == 12
    assert stages_that(printed, "done in") == []
    with open(os.path.join(run_dir, ownership.MARKER)) as f:
        assert json.load(f) == marker
    assert not os.path.exists(os.path.join(run_dir, locks.LOCK))


def test_a_changed_ladder_reruns_only_the_stages_it_changes(flow_run):
    _, run_dir, config, _ = flow_run
    printed = io.StringIO()
    summary = run(config, ["run.seeds=[1, 2, 3]"], output=run_dir, progress=False, stream=printed)
    assert stages_that(printed.getvalue(), "done in") == [
        "train ladder rung concat (seed 3, 2 x 4 steps of 32)", "train ladder rung marn (seed 3, 2 x 4 steps of 32)",
        "evaluate concat-seed3 on the test split", "evaluate marn-seed3 on the test split",
        "results report: report.html and its plots"]
    assert len(stages_that(printed.getvalue(), "skipped")) == 11  # 16 stages now; the report ran again
    assert [r["seed"] for r in summary["ladder"]["concat"]] == [1, 2, 3]


def test_the_main_model_is_not_trained_twice_unless_the_ladder_budget_differs(raw_dataset, tmp_path):
    data_config, _ = raw_dataset
    same = Config.load(write_config(tmp_path / "a.yaml", data_config, TINY_RUN))
    assert [r.name for r in model_runs(same, "r")] == ["model", "concat-seed1", "concat-seed2", "marn-seed2"]
    shorter = Config.load(write_config(tmp_path / "b.yaml", data_config,
                                       TINY_RUN + ["run.ladder_overrides=[train.epochs=1]"]))
    runs = model_runs(shorter, "r")
    assert [r.name for r in runs] == ["model", "concat-seed1", "concat-seed2", "marn-seed1", "marn-seed2"]
    assert runs[0].config.train.epochs == 2 and {r.config.train.epochs for r in runs[1:]} == {1}


def test_a_ladder_rung_has_its_structure_and_keeps_the_main_models_sequence_encoder(raw_dataset, tmp_path):
    data_config, _ = raw_dataset
    path = write_config(tmp_path / "a.yaml", data_config, TINY_RUN)
    ladder = ["run.ladder=[din, man, marn]", "run.seeds=[1]"]
    for main in (["model.variant=din"], ["model.fusion=raw_concat", "model.discriminators=none",
                                         "model.sequence_encoder=gru"]):  # a rung, and a custom main model
        runs = {r.name: r.config.model for r in model_runs(Config.load(path, main + ladder), "r")}
        assert [(m.variant, m.fusion, m.discriminators, m.sequence_encoder) for m in (
            runs.get("din-seed1", runs["model"]), runs["man-seed1"], runs["marn-seed1"])] == [
            ("din", "raw_concat", "none", "none"), ("man", "attention", "none", "gru"),
            ("marn", "attention", "double", "gru")]
    # An AUGRU for the whole ladder: din reads no encoder, the GRU rungs take it.
    augru = Config.load(path, ["model.variant=din", *ladder, "run.ladder_overrides=[model.sequence_encoder=augru]"])
    assert [(r.name, r.config.model.sequence_encoder) for r in model_runs(augru, "r")] == [
        ("model", "none"), ("din-seed1", "none"), ("man-seed1", "augru"), ("marn-seed1", "augru")]


@pytest.mark.parametrize("override, message", [
    ("run.ladder=[dien]", "ladder: unknown variant 'dien'"),
    ("run.ladder_overrides=[train.seed=3]", "must not set model.variant, model.fusion, model.discriminators, "
                                            "model.sequence_encoder=none or train.seed: ladder and seeds do"),
    ("run.ladder_overrides=[model.fusion=concat]", "must not set model.variant, model.fusion"),
    ("run.ladder_overrides=['model.sequence_encoder= none']", "must not set model.variant, model.fusion"),
    ("run.ladder_overrides=[epochs=3]", "must look like train.key=value"),
    ("run.evaluation_split=train", "evaluation_split must be one of validation, test"),
    ("run.export=bst", "run: config key 'run.export' must be true"),
])
def test_run_section_mistakes_fail_before_any_work(raw_dataset, tmp_path, override, message):
    config = write_config(tmp_path / "c.yaml", raw_dataset[0], TINY_RUN)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        run(config, [override], output=str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_a_failing_stage_exits_1_with_the_reason_and_keeps_its_record(raw_dataset, tmp_path, capsys):
    from marn_tf import cli

    config = write_config(tmp_path / "c.yaml", raw_dataset[0], TINY_RUN + ["pipeline.max_dead_letter_rate=0.0"])
    assert cli.main(["run", "--config", config, "--output", str(tmp_path / "run"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "too many rejected records" in err and "run the same command again" in err
    with open(tmp_path / "run" / "stages" / "preprocess.json") as f:
        assert json.load(f)["status"] == "started"  # not done: the next run redoes it


def test_a_run_stopped_after_the_export_rename_resumes(flow_run, tmp_path, capsys):
    """Killed after export/marn/1 was renamed into place, before the stage was recorded done (and before
    models.config): the same command exports again instead of asking for a --version `marn run` does not take."""
    import shutil

    from marn_tf import cli

    _, run_dir, config, _ = flow_run
    copy = str(tmp_path / "run")
    shutil.copytree(run_dir, copy)
    record_path = os.path.join(copy, "stages", "export.json")
    with open(record_path) as f:
        record = json.load(f)
    with open(record_path, "w") as f:
        json.dump({"status": "started", "inputs": record["inputs"], "input_values": record["input_values"]}, f)
    os.remove(os.path.join(copy, "export", "models.config"))
    os.makedirs(os.path.join(copy, "export", "marn", ".staging-1-left"))  # what a kill during the write leaves
    assert cli.main(["run", "--config", config, "--output", copy, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "export the main model for TF Serving (resuming: it stopped before finishing)" in printed
    assert "export the main model for TF Serving: done in" in printed
    assert sorted(os.listdir(os.path.join(copy, "export", "marn"))) == ["1"]
    assert os.path.exists(os.path.join(copy, "export", "models.config"))
    with open(os.path.join(copy, "summary.json")) as f:
        summary = json.load(f)
    assert summary["export"]["passed"] and summary["export"]["path"] == os.path.join(copy, "export", "marn", "1")


def test_export_best_exports_the_rung_best_on_validation_and_names_it(flow_run, tmp_path):
    """`run.export: best` exports the rung with the highest validation AUC (its best seed) instead of the main
    model, and the summary, the printed lines, the report and export_check.json name it and say why. A changed
    run.export or another best rung exports again; nothing else runs again."""
    import shutil

    _, run_dir, config, _ = flow_run
    copy = str(tmp_path / "run")
    shutil.copytree(run_dir, copy)

    def set_validation_auc(name: str, value: float) -> None:
        """What the rung's training recorded (its stage stays done): concat becomes the best rung."""
        path = os.path.join(copy, "stages", f"train-{name}.json")
        with open(path) as f:
            record = json.load(f)
        record["result"]["best_val_auc"] = value
        with open(path, "w") as f:
            json.dump(record, f)

    set_validation_auc("concat-seed1", 0.98)
    set_validation_auc("concat-seed2", 0.99)
    printed = io.StringIO()
    summary = run(config, ["run.export=best"], output=copy, progress=False, stream=printed)
    assert stages_that(printed.getvalue(), "done in") == [
        "export concat-seed2 for TF Serving", "check the export in a fresh process",
        "results report: report.html and its plots"]
    exported = summary["export"]["model"]
    assert exported == {"name": "concat-seed2", "variant": "concat", "seed": 2, "reason": (
        "best on validation AUC 0.9850 (rung concat, mean over 2 seeds); its seed 2: 0.9900 (main model marn "
        f"{summary['training']['model']['best_val_auc']:.4f})")}
    assert summary["export"]["passed"] and summary["export"]["path"] == os.path.join(copy, "export", "marn", "1")
    with open(os.path.join(summary["export"]["path"], "assets.extra", "export_info.json")) as f:
        assert json.load(f)["run"] == os.path.join(copy, "ladder", "concat-seed2")  # the rung's own checkpoint
    with open(os.path.join(copy, "export_check.json")) as f:
        check = json.load(f)
    assert check["passed"] and check["exported"] == exported
    assert f"(7/7 checks passed): concat-seed2 (concat, seed 2), {exported['reason']}" in printed.getvalue()
    with open(os.path.join(copy, "report.html")) as f:
        page = f.read()
    assert "Exported: <b>concat-seed2</b> (concat, seed 2): best on validation AUC 0.9850" in page
    assert "Best rung on validation AUC: <b>concat</b> (0.9850; its best seed 2: 0.9900)" in page

    set_validation_auc("concat-seed1", 0.995)  # the same rung, another seed
    printed = io.StringIO()
    summary = run(config, ["run.export=best"], output=copy, progress=False, stream=printed)
    assert stages_that(printed.getvalue(), "done in")[:2] == [
        "export concat-seed1 for TF Serving", "check the export in a fresh process"]
    with open(os.path.join(copy, "export_check.json")) as f:
        assert json.load(f)["exported"]["name"] == summary["export"]["model"]["name"] == "concat-seed1"
