"""The `marn` command: `marn <subcommand> --help` explains each one."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

import marn_tf  # noqa: F401  (selects Keras 2 before anything imports TensorFlow)
from marn_tf import presets
from marn_tf.export.job_arguments import add_job_arguments, at_least
from marn_tf.schema import SPLITS
from marn_tf.storage import files
from marn_tf.storage.errors import reported


def _generate_data(args: argparse.Namespace) -> int:
    from marn_tf.pipelines import synthetic_data

    opts = synthetic_data.options_from_args(args)
    logging.info("generating %d users, %d items over %d days into %s (%s)", opts.users, opts.items, opts.days,
                 opts.output, opts.format)
    counts = synthetic_data.generate(opts, progress=not args.quiet)
    print(f"wrote {counts['events']:,} events ({counts['impressions']:,} impressions, {counts['clicks']:,} clicks, "
          f"{counts['bad_events']:,} deliberately broken records) to {opts.output}; "
          f"config: {opts.output}/config.yaml")
    return 0


def _preprocess(args: argparse.Namespace, beam_args: list[str]) -> int:
    from marn_tf.config import Config
    from marn_tf.pipelines import preprocess
    from marn_tf.pipelines.run_report import render_markdown

    config = Config.load(args.config, args.set, presets=args.preset)
    try:
        report = preprocess.run(config, args.output, beam_args, num_workers=args.workers, overwrite=args.overwrite,
                                config_path=args.config)
    except preprocess.PreprocessError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(render_markdown(report))
    print(f"outputs in {args.output} (schema.json, train/, validation/, test/, vocab/, item_table/, dead_letter/)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from marn_tf.config import Config
    from marn_tf.training.trainer import train

    config = Config.load(args.config, args.set, presets=args.preset)
    result = train(config, args.data, args.output, progress=False if args.no_progress else None)
    print(f"training {result.status} after {result.steps:,} steps ({result.epochs} epochs, {result.seconds:.0f} s, "
          f"{result.examples_per_second:,.0f} examples/s); best validation AUC "
          f"{result.best_val_auc if result.best_val_auc is not None else float('nan'):.4f} in {result.best_checkpoint}")
    if result.status == "nan":
        print(f"error: {result.failure()}.", file=sys.stderr)
        return 1
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from marn_tf.evaluation.evaluate import evaluate
    from marn_tf.training.training_directory import TrainingDirectory

    result = evaluate(args.run, args.data, args.split, args.output, max_batches=args.max_batches,
                      modality_importance=not args.no_modality_importance, world_file=args.world)
    print(f"{result['variant']} on {result['split']} ({result['examples']:,} examples): AUC {result['auc']:.4f}, "
          f"GAUC {result['gauc']:.4f}, log loss {result['logloss']:.4f}")
    floor = result["floor"]
    if floor:
        print(f"no-model floor (item + user click rates): AUC {floor['auc']:.4f}, GAUC {floor['gauc']:.4f}; "
              f"the model adds {result['auc'] - floor['auc']:+.4f} AUC")
    if result["d1_accuracy"] is not None:
        print(f"D1 accuracy {result['d1_accuracy']:.3f} (chance {result['chance_accuracy']:.3f}), "
              f"Ds accuracy {result['ds_accuracy']:.3f}")
    weights = ", ".join(f"{m} {w:.3f}" for m, w in result["modality_weights"].items() if w is not None)
    print(f"mean modality weights: {weights}")
    for name, s in result["slices"].items():
        if s.get("examples"):
            print(f"  {name:>18}: {s['examples']:>7,} examples, AUC {s['auc']:.4f}, GAUC {s['gauc']:.4f}")
    out = args.output or TrainingDirectory(args.run).evaluation(args.split)
    print(f"report: {out}/evaluation.html (and evaluation.json)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from marn_tf.export.saved_model import SERVING_BASE, export_model

    result = export_model(args.run, args.data, args.output, args.name, args.version, args.checkpoint,
                          args.warmup_batch_sizes, args.serving_base or SERVING_BASE, args.item_store)
    print(f"exported {result.checkpoint} as {result.path} ({result.warmup_requests} warmup requests, "
          f"{result.seconds:.0f} s); TF Serving config: {os.path.join(args.output, 'models.config')}")
    print(f"check it: marn check-export --model {result.path}")
    return 0


def _check_export(args: argparse.Namespace) -> int:
    from marn_tf.export.check import check_export

    report = check_export(args.model, args.run, args.data, args.examples, args.tolerance)
    if not args.quiet:
        print(report.saved_model_cli)
    for check in report.checks:
        print(f"[{'PASS' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    if args.json:
        files.write_text(args.json, json.dumps({"model": report.model_dir, "passed": report.passed,
                                                "checks": [dataclasses.asdict(c) for c in report.checks]}, indent=2))
    print(f"{report.model_dir}: {'all checks passed' if report.passed else 'FAILED'}")
    return 0 if report.passed else 1


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from marn_tf.workflow.main_job import run

    overrides = presets.overrides_of(args.preset) + args.set  # an unknown preset fails here, before any work
    return _stages_ran(lambda: run(args.config, overrides, args.output, beam_args,
                                   progress=False if args.no_progress else None))


def _demo(args: argparse.Namespace) -> int:
    from marn_tf.workflow.demo import demo

    return _stages_ran(lambda: demo(args.output, tuple(args.set), progress=False if args.no_progress else None,
                                    presets=args.preset))


def _presets(args: argparse.Namespace) -> int:
    print(presets.describe())
    return 0


def _add_preset_argument(parser: argparse.ArgumentParser, before: str = "") -> None:
    parser.add_argument(
        "--preset", action="append", default=[], metavar="NAME",
        help=f"apply a registered preset's overrides{before}, before --set (repeatable, in order): "
             f"{', '.join(presets.PRESETS)}; `marn presets` shows what each sets")


def _stages_ran(flow) -> int:
    """1 with the reason when a stage fails (its record says where to resume), else 0."""
    from marn_tf.workflow.stages import StageError
    from marn_tf.pipelines.preprocess import PreprocessError

    try:
        flow()
    except (StageError, PreprocessError) as err:
        print(f"error: {err}\nFix it and run the same command again: finished stages are skipped.", file=sys.stderr)
        return 1
    return 0


def _score(args: argparse.Namespace, beam_args: list[str]) -> int:
    from marn_tf.export import batch_scoring, job_outputs

    counts = batch_scoring.run(args.model, args.input, args.output, args.input_format, args.output_format,
                               args.batch_size, beam_args, args.workers, args.num_shards)
    print(batch_scoring.summary(counts, args.output, args.output_format))
    return _done(job_outputs.nothing_done(counts, "scored", args.output))


def _embed_items(args: argparse.Namespace, beam_args: list[str]) -> int:
    from marn_tf.export import item_embeddings, job_outputs

    counts = item_embeddings.run(args.model, args.output, args.items, args.format, args.batch_size, beam_args,
                                 args.workers, args.num_shards)
    print(item_embeddings.summary(counts, args.output, args.format))
    return _done(job_outputs.nothing_done(counts, "embedded", args.output, "item ids"))


def _done(nothing_done: str | None) -> int:
    """0, or 1 with why when a batch job wrote nothing: a scheduler must not take an empty output for a result."""
    if nothing_done:
        print(f"error: {nothing_done}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marn", description="MARN click-through-rate model: data pipeline, training, export.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, including Beam's runner and worker logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from marn_tf.pipelines.synthetic_data import add_arguments

    dm = sub.add_parser(
        "demo", help="the main job on the embedded dataset: generate, preprocess, train MARN and the ablation "
                     "ladder, evaluate, export, check, report (10-15 minutes on 2 CPU cores)",
        description="Generate the embedded synthetic dataset and run `marn run` on it with short training budgets: "
                    "the Beam job, MARN and the ablation ladder (din, concat, man, maan, marn; 2 seeds), "
                    "evaluation, export for TF Serving, the export check in a fresh process, a summary table and "
                    "<output>/report.html. Re-running skips every finished stage.",
        epilog="afterwards: open runs/demo/report.html; `marn run --config runs/demo/config.yaml` repeats the demo")
    dm.add_argument("--output", default=os.path.join("runs", "demo"), help="run directory (default %(default)s)")
    dm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set run.seeds=[1] (repeatable)")
    _add_preset_argument(dm, " after the demo preset's")
    dm.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch)")

    rn = sub.add_parser(
        "run", help="the main job on your data: preprocess, train (+ ablation ladder), evaluate, export, check, "
                    "report; resumable stage by stage",
        description="Run every stage on the data a config describes: the Beam job, the main model (model:/train: "
                    "sections), the ablation ladder (run: section: ladder, seeds, ladder_overrides), evaluation of "
                    "each, export of the main model for TF Serving, its check in a fresh process, a summary table "
                    "and <run>/report.html. A stage whose outputs exist and match its inputs is skipped with a "
                    "message; an interrupted one runs again (training resumes from its checkpoint). Arguments this "
                    "command does not know go to the Beam job as pipeline options, as for preprocess.",
        epilog="example: marn run --config my.yaml --preset demo --set run.ladder=[] --set train.epochs=5")
    rn.add_argument("--config", required=True, help="YAML config (docs/pipeline.md; the run: section: "
                                                    "marn_tf/run_config.py)")
    rn.add_argument("--output", help="run directory (default: run.output, else runs/<config file name>)")
    rn.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set run.seeds=[1,2,3] (repeatable)")
    _add_preset_argument(rn)
    rn.add_argument("--no-progress", action="store_true", help="no progress bars (one line per epoch)")

    gen = sub.add_parser("generate-data", help="write the embedded synthetic dataset in the raw input formats",
                         description="Write a synthetic e-commerce dataset (events, item catalog, user profiles) "
                                     "in the raw formats marn-tf reads, with a matching config.yaml.")
    add_arguments(gen)
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser(
        "presets", help="list the registered presets (--preset NAME): name, description and the overrides each sets",
        description="Print every registered preset (marn_tf/presets.py): its name, what it is for and the --set "
                    "overrides it stands for. `--preset NAME` on train, run, preprocess and demo applies them, in "
                    "the order given, before the command's --set overrides.",
        epilog="example: marn presets; marn train ... --preset din --set train.epochs=3")

    pre = sub.add_parser(
        "preprocess", help="run the Beam job: raw logs + catalog -> TFRecords, vocabularies, item table, schema",
        description="Run the Beam preprocessing job. Arguments this command does not know are passed to Beam "
                    "as pipeline options, e.g. --runner=DataflowRunner --project=P --region=R "
                    "--temp_location=gs://B/tmp, or --runner=FlinkRunner --flink_master=HOST:8081. "
                    "Without --runner it runs locally on the FnApiRunner.",
        epilog="example: marn preprocess --config data/raw/config.yaml --output data/prep --workers 2")
    pre.add_argument("--config", required=True, help="YAML config (see docs/pipeline.md)")
    pre.add_argument("--output", required=True, help="output directory (local or gs://)")
    pre.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set sequence.max_length=30 (repeatable)")
    _add_preset_argument(pre)
    pre.add_argument("--workers", type=at_least(1), default=2,
                     help="local runner processes (default %(default)s; ignored with --runner)")
    pre.add_argument("--overwrite", action="store_true",
                     help="replace an earlier output of marn preprocess (a directory it did not write, or one that "
                          "holds an input, is never deleted)")

    tr = sub.add_parser(
        "train", help="train MARN (or an ablation variant / the DIN baseline) on a preprocessed directory",
        description="Train on the output of `marn preprocess`. Model and training settings come from the model: and "
                    "train: sections of the YAML config (defaults in marn_tf/model_config.py and train_config.py); --preset applies a "
                    "registered preset (a ladder rung by name, or the demo's budgets), then --set overrides keys. "
                    "The structure is model.variant (din, concat, man, maan, marn) or the keys model.fusion, "
                    "model.discriminators and model.sequence_encoder; not both. "
                    "Re-running with the same --output resumes from the last checkpoint.",
        epilog="example: marn train --config data/raw/config.yaml --data data/prep --output runs/man "
               "--preset man --set train.epochs=5")
    tr.add_argument("--config", required=True, help="YAML config (the one `marn generate-data` writes works)")
    tr.add_argument("--data", required=True, help="output directory of `marn preprocess`")
    tr.add_argument("--output", required=True, help="run directory: checkpoints, TensorBoard logs, history")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set model.variant=din (repeatable)")
    _add_preset_argument(tr)
    tr.add_argument("--no-progress", action="store_true", help="one line per epoch instead of a progress bar")

    ev = sub.add_parser(
        "evaluate", help="AUC, GAUC, log loss, modality weights per category, D1/Ds accuracy, slices; HTML report",
        description="Evaluate the best checkpoint of a training run on a split and write evaluation.json, "
                    "evaluation.html and PNG plots.",
        epilog="example: marn evaluate --run runs/marn --data data/prep --split test")
    ev.add_argument("--run", required=True, help="run directory of `marn train`")
    ev.add_argument("--data", required=True, help="output directory of `marn preprocess`")
    ev.add_argument("--split", default="test", choices=SPLITS, help="default: %(default)s")
    ev.add_argument("--output", help="report directory (default: <run>/evaluation_<split>)")
    ev.add_argument("--max-batches", type=at_least(1), help="evaluate only this many batches of 1024 (a quick look)")
    ev.add_argument("--no-modality-importance", action="store_true", help="skip the AUC drop per hidden modality")
    ev.add_argument("--world", help="the generated data's world.json: the AUC drop per category kind too")

    ex = sub.add_parser(
        "export", help="write a training run's checkpoint as a versioned SavedModel for TF Serving",
        description="Export a run's best checkpoint (or --checkpoint) to <output>/<name>/<version>/: a SavedModel "
                    "with the serving_default (serialized tf.Example), predict (named raw tensors, for REST JSON), "
                    "predict_raw (raw counters and timestamps, the features computed inside) and "
                    "item_representations signatures, vocabularies and item table inside, the schema in assets/, "
                    "warmup requests in assets.extra/; and <output>/models.config for tensorflow_model_server.",
        epilog="example: marn export --run runs/marn --data data/prep --output runs/export")
    ex.add_argument("--run", required=True, help="run directory of `marn train`")
    ex.add_argument("--data", required=True, help="output directory of `marn preprocess` (vocabularies, item table, "
                                                  "validation examples for the warmup requests)")
    ex.add_argument("--output", required=True, help="model base directory (what TF Serving's --model_base_path "
                                                    "or models.config points at, one level up)")
    ex.add_argument("--name", default="marn", help="model name (default %(default)s)")
    ex.add_argument("--version", type=int, help="integer version (default: one more than the highest existing)")
    ex.add_argument("--checkpoint", help="a checkpoint prefix, e.g. runs/marn/checkpoints/ckpt-3 (default: the best)")
    ex.add_argument("--warmup-batch-sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[1, 100],
                    metavar="N,N", help="serving_default warmup request sizes (default 1,100; empty for none)")
    ex.add_argument("--serving-base", help="where --output is mounted on the server, for models.config "
                                           "(default /models, as in the Dockerfile's serve image)")
    ex.add_argument("--item-store", action="store_true",
                    help="export without the item table: the predict signature takes the candidate's and behaviour "
                         "items' representations (what `marn embed-items` writes for a feature store) in place of "
                         "item ids, so the SavedModel's size does not depend on the catalog")

    ck = sub.add_parser(
        "check-export", help="load an exported version in a fresh process and check it against the schema and "
                             "its checkpoint",
        description="Check an exported SavedModel version: signatures against the schema, the warmup requests "
                    "replayed, predictions against the in-memory model rebuilt from the same checkpoint, and "
                    "`saved_model_cli show --all`. Exit code 0 when every check passes, 1 otherwise.",
        epilog="example: marn check-export --model runs/export/marn/1")
    ck.add_argument("--model", required=True, help="the version directory, <output>/<name>/<version>")
    ck.add_argument("--run", help="run directory (default: the one recorded at export)")
    ck.add_argument("--data", help="preprocessed data directory (default: the one recorded at export)")
    ck.add_argument("--examples", type=at_least(1), default=256,
                    help="validation examples to compare (default %(default)s)")
    ck.add_argument("--tolerance", type=float, default=1e-5,
                    help="largest allowed |difference| of probabilities and weights (default %(default)g)")
    ck.add_argument("--quiet", action="store_true", help="do not print saved_model_cli's output")
    ck.add_argument("--json", metavar="PATH", help="also write the checks' results to this JSON file")

    sc = sub.add_parser(
        "score", help="batch-score TFRecords or Parquet with an exported model (Beam RunInference)",
        description="Score records with an exported SavedModel version in a Beam job (RunInference with the "
                    "TensorFlow model handler, serving_default signature). Writes one row per record with its ids, "
                    "probability and modality weights; invalid records and failed batches go to a dead-letter "
                    "output with the reason. Unknown arguments are Beam pipeline options, as for preprocess.",
        epilog="example: marn score --model runs/export/marn/1 --input 'data/prep/test/*.tfrecord.gz' "
               "--output runs/scores/test")
    sc.add_argument("--model", required=True, help="the version directory, <output>/<name>/<version>")
    sc.add_argument("--input", required=True, help="file pattern of the records to score (local or gs://)")
    sc.add_argument("--output", required=True,
                    help="output prefix: <output>-NNNNN-of-NNNNN.<format>; its directory is marn score's (a new or "
                         "empty one is claimed), and a run replaces the files an earlier run wrote under the prefix")
    sc.add_argument("--input-format", default="tfrecord", choices=["tfrecord", "parquet"],
                    help="tf.Example TFRecords (gzip by extension) or Parquet with one column per schema feature")
    sc.add_argument("--output-format", default="jsonl", choices=["jsonl", "parquet"], help="default: %(default)s")
    add_job_arguments(sc, batch_size=512, files_of="predictions")

    ei = sub.add_parser(
        "embed-items", help="write every item's representation with an exported model, for a feature store "
                            "(Beam RunInference)",
        description="Run an exported SavedModel version's item_representations signature over item ids in a Beam "
                    "job and write one row per item, keyed by item_id: its representation, modality weights and "
                    "modality mask, as Parquet and/or tf.Example TFRecords: what a feature store or key-value "
                    "cache loads. Each id is written once; empty or undecodable ids and ids the model's item "
                    "vocabulary does not hold go to a dead-letter output with the reason. Unknown "
                    "arguments are Beam pipeline options, as for preprocess.",
        epilog="example: marn embed-items --model runs/export/marn/1 --output runs/items/marn-1")
    ei.add_argument("--model", required=True, help="the version directory, <output>/<name>/<version>")
    ei.add_argument("--output", required=True,
                    help="output prefix: <output>-NNNNN-of-NNNNN.parquet and .tfrecord.gz; its directory is marn "
                         "embed-items' (as for marn score)")
    ei.add_argument("--items", help="file pattern of item id files, one id a line (default: every item of the "
                                    "model's own item vocabulary)")
    ei.add_argument("--format", nargs="+", default=["parquet", "tfrecord"], choices=["parquet", "tfrecord"],
                    help="output formats (default: both)")
    add_job_arguments(ei, batch_size=1024, files_of="each format")
    return parser


# Each subcommand's handler, called with the parsed arguments and the ones left for Beam.
COMMANDS = {"generate-data": lambda args, extra: _generate_data(args), "preprocess": _preprocess,
            "train": lambda args, extra: _train(args), "evaluate": lambda args, extra: _evaluate(args),
            "export": lambda args, extra: _export(args), "check-export": lambda args, extra: _check_export(args),
            "score": _score, "embed-items": _embed_items, "run": _run, "demo": lambda args, extra: _demo(args),
            "presets": lambda args, extra: _presets(args)}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if not args.verbose:  # Beam's per-stage and per-worker INFO lines drown what the job says; -v shows them
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines (imported later)
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        # Local workers' logs, forwarded: their warnings are start-up notices; errors still show.
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.WARNING)  # TF's per-checkpoint INFO lines
    if extra and args.command not in ("preprocess", "score", "embed-items", "run"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return reported(lambda: COMMANDS[args.command](args, extra))


if __name__ == "__main__":
    sys.exit(main())
