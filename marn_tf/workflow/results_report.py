"""`<run>/report.html` and `<run>/report/*.png`: the results of a `marn run` in one page.

Sections (each a `<section id=...>`, in this order): the run's overview (the main model against the no-model
floor), the pipeline's counts and dead-letter reasons, the main model's training curves, the ablation ladder's
AUC/GAUC with their spread over seeds against the floor and the rung best on validation AUC, the modality weights
per item category, D1/Ds accuracy over training and what it says, the slices (cold items, missing and single
modalities) and the exported model (which one and why) with its checks.
The PNGs are plain files beside the page, so the page works from disk, from a static file server or as a CI
artifact.
"""
from __future__ import annotations

import html
import json
from typing import Optional

import numpy as np

from marn_tf.evaluation.report import (discriminator_reading, html_page, html_table, plot_modality_weights,
                                       plot_slices, pyplot, save_figure)
from marn_tf.schema import SPLITS
from marn_tf.storage import files
from marn_tf.training.callbacks import read_history
from marn_tf.training.training_directory import TrainingDirectory
from marn_tf.workflow import run_directory as layout
from marn_tf.workflow.summary import ladder_rows, lift


def plot_dead_letters(report: dict, path: str) -> None:
    plt = pyplot()
    reasons = sorted({(s, r, n) for s, v in report["sources"].items() for r, n in v["dead_letter_reasons"].items()},
                     key=lambda x: -x[2])
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(len(reasons), 1) + 1.5))
    if reasons:
        ax.barh([f"{s}: {r}" for s, r, _ in reasons][::-1], [n for *_, n in reasons][::-1], color="#c44e52")
        ax.set_xlabel("records dead-lettered")
    else:
        ax.text(0.5, 0.5, "no record was rejected", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title("Dead-letter reasons")
    save_figure(fig, path)


def plot_training_curves(histories: dict[str, list[dict]], main: str, path: str) -> None:
    plt = pyplot()
    fig, (loss_ax, auc_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    history = histories[main]
    steps = [h["step"] for h in history]
    loss_ax.plot(steps, [h["ctr_loss"] for h in history], "o-", label="train CTR loss")
    loss_ax.plot(steps, [h.get("val_ctr_loss") for h in history], "s--", label="validation CTR loss")
    loss_ax.plot(steps, [h["total_loss"] for h in history], "^:", label="train total loss L")
    loss_ax.set_xlabel("step")
    loss_ax.set_title("Main model: losses")
    loss_ax.legend()
    for name, rows in histories.items():
        if name != main:
            auc_ax.plot([h["step"] for h in rows], [h.get("val_auc") for h in rows], color="grey", alpha=0.35,
                        linewidth=1)
    auc_ax.plot(steps, [h.get("auc") for h in history], "o-", label="main: train AUC")
    auc_ax.plot(steps, [h.get("val_auc") for h in history], "s--", label="main: validation AUC")
    auc_ax.plot([], [], color="grey", alpha=0.5, label="ladder runs: validation AUC")
    auc_ax.set_xlabel("step")
    auc_ax.set_title("AUC over training")
    auc_ax.legend()
    save_figure(fig, path)


def ladder_figure(rows: list[dict], floor: Optional[dict]):
    """The ladder's AUC and GAUC per variant (mean ± std and every seed) against the no-model floor's lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(rows))
    for offset, key, label, color in ((-0.15, "auc", "AUC", "C0"), (0.15, "gauc", "GAUC", "C1")):
        means = [r[key][0] if r[key] else np.nan for r in rows]
        stds = [r[key][1] if r[key] else 0.0 for r in rows]
        ax.errorbar(x + offset, means, yerr=stds, fmt="o", capsize=4, color=color,
                    label=f"{label} (mean ± std over seeds)")
        for i, r in enumerate(rows):  # every seed's value, so two seeds are not read as a tight interval
            ax.scatter([i + offset] * len(r[f"{key}_values"]), r[f"{key}_values"], s=10, color="black", alpha=0.5)
        if floor is not None:
            ax.axhline(floor[key], color=color, linestyle=":", label=f"no-model floor ({label})")
    ax.set_xticks(x, [r["variant"] for r in rows])
    ax.set_title("Ablation ladder")
    ax.legend(fontsize=8)
    return fig


def plot_discriminators(history: list[dict], chance: float, path: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    steps = [h["step"] for h in history]
    for key, style in (("d1_accuracy", "o-"), ("val_d1_accuracy", "o--"), ("ds_accuracy", "s-"),
                       ("val_ds_accuracy", "s--")):
        ax.plot(steps, [h.get(key) for h in history], style, label=key.replace("val_", "validation ").replace(
            "_accuracy", " accuracy"))
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance (most common modality) = {chance:.2f}")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("step")
    ax.set_title("Modality discriminators over training")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _read_json(path: str) -> dict:
    text = files.read_text(path)
    if text is None:
        raise FileNotFoundError(f"no {path}")
    return json.loads(text)


def _image(name: str, alt: str) -> str:
    return f'<img src="{layout.REPORT_DIR}/{name}" alt="{html.escape(alt)}">'


def _floor_note(floor: Optional[dict]) -> str:
    if floor is None:
        return "<p>No no-model floor: the data has no click-rate features.</p>"
    return (f"<p>no-model floor: each impression scored by the logit sum of its item's and its user's click rates, "
            f"nothing trained ({floor['examples']:,} examples, the same as the models'). AUC - floor: what a model "
            "adds to it.</p>")


def ladder_table(rows: list[dict], floor: Optional[dict]) -> str:
    """The ladder's table under its plot: the floor's row, then each variant's mean ± std and its AUC - floor."""
    base = floor or {}
    return html_table(["model", "seeds", "AUC mean", "AUC std", "AUC - floor", "GAUC mean", "GAUC std"],
                      [["no-model floor", None, base.get("auc"), None, None, base.get("gauc"), None]]
                      + [[r["variant"], ", ".join(map(str, r["seeds"])), *(r["auc"] or (None, None)),
                          lift(r["auc"], floor), *(r["gauc"] or (None, None))] for r in rows])


def selection_html(selection: Optional[dict], split: str) -> str:
    """The rungs chosen between by validation AUC, with each rung's difference to marn, and the best of them."""
    if not selection or not selection["rungs"]:
        return ""
    reference, best = selection["reference"] or "marn", selection["best"]
    verdict = ("No rung has a validation AUC to choose by." if best is None else
               f"Best rung on validation AUC: <b>{html.escape(best['variant'])}</b> ({best['validation_auc']:.4f}; its "
               f"best seed {best['seed']}: {best['model_validation_auc']:.4f}).")
    return (f"<h3>Chosen by validation AUC</h3><p>{verdict} Validation AUC: each model's best checkpoint, measured "
            f"while it trained (the checkpoint evaluated and exported); a rung's is the mean over its seeds. "
            f"- {html.escape(reference)}: the mean over the seeds both rungs have of the difference (same data, "
            f"same seed). The {html.escape(split)} AUC is shown, never used to choose.</p>"
            + html_table(["rung", "seeds with validation", "validation AUC", f"validation AUC - {reference}",
                          f"{split} AUC", f"{split} AUC - {reference}"],
                         [[r["variant"], ", ".join(map(str, r["validated_seeds"])) or None, r["validation_auc"],
                           r["validation_auc_difference"], r["auc"], r["auc_difference"]]
                          for r in selection["rungs"]]))


def exported_html(export: Optional[dict]) -> str:
    """Which model was exported and why, where, and its checks."""
    if not export:
        return "<p>Not exported (<code>run.export: false</code>).</p>"
    chosen = export.get("model")  # none in a summary written before the export could be chosen
    which = (f"<p>Exported: <b>{html.escape(chosen['name'])}</b> ({html.escape(chosen['variant'])}, seed "
             f"{chosen['seed']}): {html.escape(chosen['reason'])}.</p>" if chosen else "")
    return (which + f"<p><code>{html.escape(export['path'])}</code></p>"
            + html_table(["check", "result", "detail"],
                         [[c["name"], "PASS" if c["passed"] else "FAIL", c["detail"]] for c in export["checks"]]))


def write_results_report(run_dir: str, data_dir: str, summary: dict, model_dirs: dict[str, str]) -> dict:
    """Writes the page and its plots; returns {"report": path, "plots": [names]}."""
    plots = files.join(run_dir, layout.REPORT_DIR)
    files.makedirs(plots)
    pipeline = _read_json(files.join(data_dir, "report.json"))
    histories = {name: read_history(TrainingDirectory(d).history) for name, d in model_dirs.items()}
    main, floor = summary["main"], summary.get("floor")  # no floor in a summary written before it was measured
    measured = floor or {}
    main_eval = _read_json(main["evaluation"])
    rows = ladder_rows(summary)
    for row in rows:
        for key in ("auc", "gauc"):
            row[f"{key}_values"] = [r[key] for r in summary["ladder"][row["variant"]]]

    plot_dead_letters(pipeline, files.join(plots, "dead_letters.png"))
    plot_training_curves(histories, "model", files.join(plots, "training_curves.png"))
    plot_modality_weights(main_eval, files.join(plots, "modality_weights_by_category.png"))
    adversarial, chance = main["d1_accuracy"] is not None, main["chance_accuracy"]
    if adversarial:
        plot_discriminators(histories["model"], chance, files.join(plots, "discriminators.png"))
    if rows:
        save_figure(ladder_figure(rows, floor), files.join(plots, "ladder.png"))
    slices = {f"main ({main['variant']})": main_eval["slices"]}
    for variant, results in summary["ladder"].items():  # each variant's first seed
        slices[variant] = _read_json(results[0]["evaluation"])["slices"]
    plot_slices(slices, files.join(plots, "slices.png"))

    sections = {
        "overview": (
            "Overview",
            f"<p>Run <code>{html.escape(summary['run'])}</code> (its config with every default: "
            f"<a href=\"{layout.RESOLVED_CONFIG}\">{layout.RESOLVED_CONFIG}</a>; TensorBoard: <code>tensorboard --logdir "
            f"{html.escape(files.join(summary['run'], 'model', 'tensorboard'))}</code>); every model evaluated on the "
            f"<b>{html.escape(summary['split'])}</b> split ({main['examples']:,} examples).</p>"
            + html_table(["model", "seed", "AUC", "AUC - floor", "GAUC", "log loss", "D1 accuracy", "Ds accuracy"],
                         [["no-model floor", None, measured.get("auc"), None, measured.get("gauc"),
                           measured.get("logloss"), None, None],
                          [f"main model: {main['variant']}", main["seed"], main["auc"], lift(main["auc"], floor),
                           main["gauc"], main["logloss"], main["d1_accuracy"], main["ds_accuracy"]]])
            + _floor_note(floor)),
        "pipeline": (
            "Pipeline: records in = accepted + dead-lettered",
            html_table(["table", "in", "accepted", "dead-lettered", "rate", "balanced"],
                       [[s, v["in"], v["accepted"], v["dead_lettered"], f"{v['dead_letter_rate']:.3%}",
                         "yes" if v["balanced"] else "NO"] for s, v in pipeline["sources"].items()])
            + html_table(["split", "examples", "positive rate"],
                         [[s, pipeline["splits"][s]["examples"], pipeline["splits"][s]["positive_rate"]]
                          for s in SPLITS if s in pipeline["splits"]])
            + _image("dead_letters.png", "dead-letter reasons")
            + html_table(["table", "reason", "records"],
                         [[s, r, n] for s, v in pipeline["sources"].items()
                          for r, n in sorted(v["dead_letter_reasons"].items())])
            + f"<p>The rejected records themselves: <code>{html.escape(files.join(data_dir, 'dead_letter'))}"
              "</code>.</p>"),
        "training-curves": (
            "Training curves",
            _image("training_curves.png", "training curves")
            + html_table(["run", "steps", "status", "best validation AUC", "examples/s"],
                         [[name, t["steps"], t["status"], t["best_val_auc"], round(t["examples_per_second"])]
                          for name, t in summary["training"].items()])),
        "ladder": (
            "Ablation ladder",
            ((_image("ladder.png", "ablation ladder AUC and GAUC")
              + ladder_table(rows, floor)
              + "<p>din: DIN-style baseline; concat: specific projections concatenated; man: with modality "
                "attention; maan: + invariant part with D1; marn: the full model. Same data and budget.</p>"
              + selection_html(summary.get("selection"), summary["split"]))
             if rows else "<p>No ladder in this run (<code>run.ladder: []</code>).</p>")),
        "modality-weights": (
            "Modality weights by item category",
            _image("modality_weights_by_category.png", "modality weights by category")
            + html_table(["category", "examples"] + [f"|a| {m}" for m in main_eval["modalities"]],
                         [[c, v["examples"]] + [v["modality_weights"][m] for m in main_eval["modalities"]]
                          for c, v in sorted(main_eval["modality_weights_by_category"].items())])),
        "discriminators": (
            "D1 / Ds accuracy over training",
            (_image("discriminators.png", "D1 and Ds accuracy over training")
             + f"<p>On the {html.escape(summary['split'])} split: "
               f"{html.escape(discriminator_reading(main['d1_accuracy'], main['ds_accuracy'], chance))}</p>")
            if adversarial else
            f"<p>The main model's variant ({html.escape(main['variant'])}) has no discriminators.</p>"),
        "slices": (
            "Slices: cold items, missing and single modalities",
            _image("slices.png", "AUC by slice")
            + html_table(["slice", "examples", "positive rate", "AUC", "GAUC", "log loss"],
                         [[n, s.get("examples"), s.get("positive_rate"), s.get("auc"), s.get("gauc"), s.get("logloss")]
                          for n, s in main_eval["slices"].items()])),
        "export": ("Export for TF Serving", exported_html(summary.get("export"))),
    }
    body = "\n".join(f'<section id="{key}"><h2>{html.escape(title)}</h2>{content}</section>'
                     for key, (title, content) in sections.items())
    page = html_page("MARN run report", body)
    path = files.join(run_dir, layout.REPORT_PAGE)
    files.write_text(path, page)
    return {"report": path, "plots": files.entries(plots)}
