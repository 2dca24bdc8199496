"""The table `marn run` and `marn demo` print at the end: the no-model floor, every model's metrics and its AUC
over the floor, what the discriminators' accuracies say, the best rung on validation AUC with each rung's
difference to marn, the export (which model and why), the report."""
from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np

from marn_tf.evaluation.report import CHANCE_TOLERANCE, discriminator_reading


def spread(values: list[Optional[float]]) -> Optional[tuple[float, float]]:
    """(mean, sample standard deviation) over seeds, or None when nothing was measured (no discriminators). The
    sample std (ddof 1; 0 for one seed), as `benchmarks/quality.py` gives it: with the demo's 2 seeds numpy's
    default (ddof 0) would read 0.71x as large."""
    numbers = [v for v in values if v is not None and not math.isnan(v)]
    if not numbers:
        return None
    return float(np.mean(numbers)), float(np.std(numbers, ddof=1)) if len(numbers) > 1 else 0.0


def ladder_rows(summary: dict) -> list[dict]:
    """One row per ladder variant: seeds, chance (the most common modality) and mean ± std of each metric."""
    rows = []
    for variant, results in summary["ladder"].items():
        row = {"variant": variant, "seeds": [r["seed"] for r in results],
               "chance_accuracy": results[0]["chance_accuracy"]}
        for key in ("auc", "gauc", "logloss", "d1_accuracy", "ds_accuracy"):
            row[key] = spread([r[key] for r in results])
        rows.append(row)
    return rows


def lift(auc: Optional[float | tuple[float, float]], floor: Optional[dict]) -> Optional[float]:
    """AUC over the no-model floor's (of the mean over seeds for a ladder row); None without either."""
    value = auc[0] if isinstance(auc, tuple) else auc
    if value is None or floor is None:
        return None
    return value - floor["auc"]


def discriminator_notes(summary: dict) -> list[str]:
    """One reading of D1/Ds per model that has discriminators (ladder: means over seeds); none if no model has."""
    main = summary["main"]
    notes = []
    if main["d1_accuracy"] is not None:
        notes.append(f"main model {main['variant']}: " + discriminator_reading(
            main["d1_accuracy"], main["ds_accuracy"], main["chance_accuracy"]))
    for row in ladder_rows(summary):
        if row["d1_accuracy"] is not None:
            notes.append(f"ladder {row['variant']} (mean over seeds): " + discriminator_reading(
                row["d1_accuracy"][0], row["ds_accuracy"][0] if row["ds_accuracy"] else None, row["chance_accuracy"]))
    return notes


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.4f} ± {std:.4f}"
    return f"{value:.4f}"


def _signed(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:+.4f}"


def selection_lines(summary: dict) -> list[str]:
    """The rungs chosen between by validation AUC: a row per rung with its difference to marn, then the best;
    nothing without a ladder (or in a summary written before the choice was made)."""
    selection = summary.get("selection")
    if not selection or not selection["rungs"]:
        return []
    split, reference = summary["split"], selection["reference"] or "marn"
    lines = ["", "Chosen by validation AUC (each model's best checkpoint, measured while it trained; a rung: mean over "
                 f"its seeds; - {reference}: mean over the seeds both have of the difference, same data and seed)", "",
             f"| rung | seeds with validation | validation AUC | validation AUC - {reference} | {split} AUC | "
             f"{split} AUC - {reference} |", "|---|---|---:|---:|---:|---:|"]
    for row in selection["rungs"]:
        lines.append(f"| {row['variant']} | {','.join(map(str, row['validated_seeds'])) or '–'} | "
                     f"{_cell(row['validation_auc'])} | {_signed(row['validation_auc_difference'])} | "
                     f"{_cell(row['auc'])} | {_signed(row['auc_difference'])} |")
    best = selection["best"]
    if best is None:
        lines.append("\nbest rung on validation AUC: none, no rung has a validation AUC")
    else:
        lines.append(f"\nbest rung on validation AUC: {best['variant']} ({best['validation_auc']:.4f}; its best seed "
                     f"{best['seed']}: {best['model_validation_auc']:.4f})")
    return lines


def render(summary: dict) -> str:
    main, floor = summary["main"], summary.get("floor")  # no floor in a summary written before it was measured
    base = floor or {}
    lines = ["", f"Results on the {summary['split']} split ({main['examples']:,} examples); ladder: mean ± std over "
                 "seeds; AUC - floor: AUC over the no-model floor (logit sum of the click rates, nothing trained)", "",
             "| model | seeds | AUC | AUC - floor | GAUC | log loss | D1 accuracy | Ds accuracy |",
             "|---|---|---:|---:|---:|---:|---:|---:|",
             f"| no-model floor | – | {_cell(base.get('auc'))} | – | {_cell(base.get('gauc'))} | "
             f"{_cell(base.get('logloss'))} | – | – |",
             f"| main model: {main['variant']} | {main['seed']} | {_cell(main['auc'])} | "
             f"{_signed(lift(main['auc'], floor))} | {_cell(main['gauc'])} | {_cell(main['logloss'])} | "
             f"{_cell(main['d1_accuracy'])} | {_cell(main['ds_accuracy'])} |"]
    for row in ladder_rows(summary):
        lines.append(f"| ladder: {row['variant']} | {','.join(map(str, row['seeds']))} | {_cell(row['auc'])} | "
                     f"{_signed(lift(row['auc'], floor))} | {_cell(row['gauc'])} | {_cell(row['logloss'])} | "
                     f"{_cell(row['d1_accuracy'])} | {_cell(row['ds_accuracy'])} |")
    if floor is None:
        lines.append("\nno-model floor: not measured (the data has no click-rate features)")
    notes = discriminator_notes(summary)
    if notes:
        lines.append(f"\nDiscriminators (near chance: within ±{CHANCE_TOLERANCE} of always naming the most common "
                     "modality):")
        lines += [f"- {note}" for note in notes]
    lines += selection_lines(summary)
    export = summary.get("export")
    if export:
        passed = sum(c["passed"] for c in export["checks"])
        chosen = export.get("model")  # none in a summary written before the export could be chosen
        lines.append(f"export: {export['path']} ({passed}/{len(export['checks'])} checks passed)"
                     + (f": {chosen['name']} ({chosen['variant']}, seed {chosen['seed']}), {chosen['reason']}"
                        if chosen else ""))
    lines.append(f"report: {os.path.join(summary['run'], 'report.html')}")
    return "\n".join(lines)
