"""`marn run --config my.yaml`: the main job, stage by stage, resumable.

The run directory's layout is `run_directory.py`: the config it used, the pipeline's output, the main
model and the ablation ladder, their evaluations, the export, the summary and the results report.

Re-running the same command skips every stage whose outputs exist and match its inputs; a stage that was
interrupted runs again (training resumes from its last checkpoint); a changed config re-runs the stages
it affects and those after them.

Before anything is written the config and the input files are checked, the run directory must be new, empty
or one that `marn run`/`marn demo` wrote (its `.marn-owner.json`), no input may lie in what the run writes
(`run_directory.ENTRIES`), and the run directory is locked for the whole run (`marn_tf/storage/`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Optional, Sequence, Union

import yaml

from marn_tf.config import Config
from marn_tf.config_loader import apply_overrides, to_dict
from marn_tf.storage import files, ownership
from marn_tf.workflow import run_directory as layout
from marn_tf.workflow import summary as summary_table
from marn_tf.workflow.selection import choose, exported_model
from marn_tf.workflow.stages import Stage, StageError, StageRunner

COMMAND = "marn run"
PIPELINE_SECTIONS = ("inputs", "events", "items", "users", "sequence", "vocabulary", "statistics", "split",
                     "pipeline")


@dataclasses.dataclass
class ModelRun:
    """One model the flow trains and evaluates: the main one or a rung of the ladder."""

    name: str  # layout.MODEL or "<variant>-seed<N>"
    variant: str
    seed: int
    config: Config
    directory: str
    main: bool
    rungs: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # the ladder's (variant, seed) it is


def default_output(config_path: str, config: Config) -> str:
    if config.run.output:
        return config.run.output
    stem = os.path.splitext(os.path.basename(config_path))[0]
    return os.path.join("runs", stem)


def input_files(config: Config) -> list:
    """(path, size, last update) of every raw input file: a new or rewritten file re-runs the pipeline."""
    from marn_tf.pipelines.raw_io import match_metadata

    return [(m.path, m.size_in_bytes, m.last_updated_in_seconds)
            for source in ("events", "items", "users") if getattr(config.inputs, source) is not None
            for m in match_metadata(getattr(config.inputs, source), source)]


def model_runs(config: Config, run_dir: str) -> list[ModelRun]:
    """The main model, then the ladder (a rung identical to the main model reuses it)."""
    main = ModelRun(layout.MODEL, config.model.variant, config.train.seed, config, files.join(run_dir, layout.MODEL),
                    True)
    runs = [main]
    base = to_dict(config)
    del base["model"]["variant"]  # the structure keys alone: a ladder override of sequence_encoder cannot clash
    for variant in config.run.ladder:
        for seed in config.run.seeds:
            overrides = list(config.run.ladder_overrides) + [f"train.seed={seed}"]
            rung = Config.from_dict(apply_overrides(base, overrides))
            rung = dataclasses.replace(rung, model=rung.model.for_variant(variant))  # its structure, what it reads
            if rung.model == config.model and rung.train == config.train:
                main.rungs.append((variant, seed))  # the main model is this rung: trained once
                continue
            name = f"{variant}-seed{seed}"
            runs.append(ModelRun(name, variant, seed, rung, files.join(run_dir, layout.LADDER, name), False,
                                 [(variant, seed)]))
    return runs


def stage_count(config: Config, run_dir: str) -> int:
    """preprocess, train + evaluate per model, export + check, report."""
    return 1 + 2 * len(model_runs(config, run_dir)) + (2 if config.run.export else 0) + 1


def ladder_members(config: Config, runs: list[ModelRun]) -> dict[str, list[str]]:
    """variant -> names of the model runs that stand for its seeds, in `run.seeds` order."""
    by_rung = {rung: r.name for r in runs for rung in r.rungs}
    return {variant: [by_rung[(variant, seed)] for seed in config.run.seeds] for variant in config.run.ladder}


def run(config_path: str, overrides: Sequence[str] = (), output: Optional[str] = None,
        beam_args: Sequence[str] = (), progress: Optional[bool] = None, stages: Optional[StageRunner] = None,
        stream=None) -> dict:
    """Runs (or resumes) the whole flow and returns the summary (also written to `<run>/summary.json`).

    `stages`: a runner that already ran stages of its own (`marn demo`'s data generation) and counts these too.
    `stream`: where progress and the summary go (default: stdout).
    """
    from marn_tf.pipelines.preprocess import input_paths
    from marn_tf.pipelines.raw_io import list_input_files

    config = Config.load(config_path, overrides)
    config.model.check_settings_used()
    run_dir = output or default_output(config_path, config)
    inputs = input_paths(config, list_input_files(config), config_path)  # every input file found and checked
    written = [files.join(run_dir, name) for name in layout.ENTRIES]
    with ownership.owned_directory(run_dir, ownership.RUN, COMMAND, inputs, written):
        return _run(config, run_dir, beam_args, progress, stages, stream)


def _run(config: Config, run_dir: str, beam_args: Sequence[str], progress: Optional[bool],
         stages: Optional[StageRunner], stream) -> dict:
    files.write_text(files.join(run_dir, layout.RESOLVED_CONFIG), yaml.safe_dump(to_dict(config), sort_keys=False))
    data_dir = files.join(run_dir, layout.PREPROCESSED)
    runs = model_runs(config, run_dir)
    split = config.run.evaluation_split
    stages = stages or StageRunner(run_dir, stage_count(config, run_dir), stream)

    def preprocess():
        from marn_tf.pipelines import preprocess as job
        from marn_tf.pipelines.run_report import render_markdown

        report = job.run(config, data_dir, list(beam_args), num_workers=config.run.workers, overwrite=True)
        print(render_markdown(report), file=stages.stream, flush=True)
        return {"sources": report["sources"], "splits": {s: v["examples"] for s, v in report["splits"].items()}}

    prep = stages.run(Stage(
        "preprocess", "preprocess: Beam job over the raw logs and catalog",
        # Not the runner or its options: where the job runs does not change what it writes.
        {"files": input_files(config), "config": {k: to_dict(config)[k] for k in PIPELINE_SECTIONS}},
        [data_dir], preprocess))

    evaluations = {}
    trained = {}
    for model in runs:
        trained[model.name] = _train_stage(stages, model, data_dir, prep.outputs_digest, progress)
    for model in runs:
        evaluations[model.name] = _evaluate_stage(stages, model, data_dir, split, trained[model.name],
                                                  files.join(run_dir, layout.EVALUATIONS, model.name))

    ladder = {v: [evaluations[n] for n in names] for v, names in ladder_members(config, runs).items()}
    validation = {name: t.result["best_val_auc"] for name, t in trained.items()}
    selection = choose(ladder, validation, evaluations[layout.MODEL])
    chosen = exported_model(config.run.export, selection, evaluations[layout.MODEL], validation[layout.MODEL])
    export = None
    if chosen is not None:
        model = next(r for r in runs if r.name == chosen["name"])
        export = _export_stages(stages, run_dir, model, chosen, config.run.export, data_dir, trained[model.name])

    summary = {
        "run": files.normal_path(run_dir), "split": split, "main": evaluations[layout.MODEL],
        # The floor every model's AUC is read against: the main model's split and examples (None before it existed).
        "floor": evaluations[layout.MODEL].get("floor"),
        "training": {name: t.result for name, t in trained.items()},
        "ladder": ladder, "selection": selection, "export": export, "pipeline": prep.result,
    }
    files.write_text(files.join(run_dir, layout.SUMMARY), json.dumps(summary, indent=2))

    def report():
        from marn_tf.workflow.results_report import write_results_report

        return write_results_report(run_dir, data_dir, summary, {r.name: r.directory for r in runs})

    stages.run(Stage("report", "results report: report.html and its plots",
                     {"summary": summary, "training": {n: t.outputs_digest for n, t in trained.items()}},
                     [files.join(run_dir, layout.REPORT_PAGE), files.join(run_dir, layout.REPORT_DIR)], report))
    print(summary_table.render(summary), file=stages.stream, flush=True)
    return summary


def _train_stage(stages: StageRunner, model: ModelRun, data_dir: str, data_digest: str, progress):
    from marn_tf.training.trainer import train

    def action():
        result = train(model.config, data_dir, model.directory, progress=progress)
        if result.status == "nan":
            raise StageError(f"training {model.name} in {model.directory} stopped: {result.failure()}")
        return dataclasses.asdict(result)

    title = "train the main model" if model.main else "train ladder rung"
    budget = model.config.train
    return stages.run(Stage(
        f"train-{model.name}", f"{title} {model.variant} (seed {model.seed}, {budget.epochs} x "
                               f"{budget.steps_per_epoch} steps of {budget.batch_size})",
        # the model as written before its structure keys: runs trained since then are not trained again
        {"data": data_digest, "model": model.config.model.digest_dict(), "train": model.config.train.digest_dict()},
        [model.directory], action))


def _evaluate_stage(stages: StageRunner, model: ModelRun, data_dir: str, split: str, trained, output: str) -> dict:
    from marn_tf.evaluation.evaluate import evaluate

    def action():
        result = evaluate(model.directory, data_dir, split, output)
        return {k: result[k] for k in ("variant", "split", "examples", "auc", "gauc", "logloss", "d1_accuracy",
                                       "ds_accuracy", "chance_accuracy", "modality_weights", "floor")} | {
            "seed": model.seed, "name": model.name, "evaluation": files.join(output, "evaluation.json")}

    title = f"evaluate {'the main model' if model.main else model.name} on the {split} split"
    result = stages.run(Stage(f"evaluate-{model.name}", title,
                              {"model": trained.outputs_digest, "split": split}, [output], action)).result
    # Paths the report reads come from the run's layout, never from a stage record (a file anyone could edit).
    return {**result, "evaluation": files.join(output, "evaluation.json")}


def _export_stages(stages: StageRunner, run_dir: str, model: ModelRun, chosen: dict, choice: Union[bool, str],
                   data_dir: str, trained) -> dict:
    """Exports `model` (`chosen`: `selection.exported_model`'s answer to `run.export`, `choice`) and checks it;
    `export_check.json` and the result name the model and why it was exported."""
    from marn_tf.export.saved_model import export_model

    base = files.join(run_dir, layout.EXPORT_DIR)
    path = files.join(base, layout.EXPORT_MODEL, "1")  # from the run's layout, never read back from a stage record

    def export_action():
        # Export again from scratch: a run stopped after the rename left version 1 complete but the stage
        # unfinished, and `export_model` never overwrites a version.
        ownership.remove(base, run_dir)
        result = export_model(model.directory, data_dir, base, model_name=layout.EXPORT_MODEL, version=1)
        return {"path": result.path, "checkpoint": result.checkpoint, "warmup_requests": result.warmup_requests}

    # Which model and the choice that named it: another choice or another best rung exports again.
    title = "export the main model" if model.main else f"export {model.name}"
    exported = stages.run(Stage("export", f"{title} for TF Serving",
                                {"model": trained.outputs_digest, "name": model.name, "choice": choice}, [base],
                                export_action))
    checks = files.join(run_dir, layout.EXPORT_CHECK)

    def check_action():
        # In a fresh process, the way a server loads it (and this process's memory stays as it was).
        done = subprocess.run([sys.executable, "-m", "marn_tf.cli", "check-export", "--model", path, "--quiet",
                               "--json", checks], capture_output=True, text=True)
        print(done.stdout.strip(), file=stages.stream, flush=True)
        if done.returncode not in (0, 1):
            raise StageError(f"marn check-export failed to run:\n{done.stderr[-3000:]}")
        report = json.loads(files.read_text(checks) or "null")
        if not isinstance(report, dict):
            raise StageError(f"marn check-export wrote no readable report to {checks}:\n{done.stderr[-3000:]}")
        report["exported"] = chosen  # which model it is and why: the check itself reads only the export
        files.write_text(checks, json.dumps(report, indent=2))
        if not report["passed"]:
            failed = [c["name"] for c in report["checks"] if not c["passed"]]
            raise StageError(f"the export {path} failed these checks: {', '.join(failed)} (details: {checks})")
        return report

    checked = stages.run(Stage("check-export", "check the export in a fresh process",
                               {"export": exported.outputs_digest, "exported": chosen}, [checks], check_action))
    return {**exported.result, "path": path, "model": chosen, "checks": checked.result["checks"],
            "passed": checked.result["passed"]}
