"""The table `marn run` and `marn demo` print at the end: every model's metrics, the export, the report."""
from __future__ import annotations

import math
import os
from typing import Optional

import numpy as np


def spread(values: list[Optional[float]]) -> Optional[tuple[float, float]]:
    """(mean, standard deviation) over seeds, or None when nothing was measured (no discriminators)."""
    numbers = [v for v in values if v is not None and not math.isnan(v)]
    if not numbers:
        return None
    return float(np.mean(numbers)), float(np.std(numbers))


def ladder_rows(summary: dict) -> list[dict]:
    """One row per ladder variant: seeds and mean ± std of each metric."""
    rows = []
    for variant, results in summary["ladder"].items():
        row = {"variant": variant, "seeds": [r["seed"] for r in results]}
        for key in ("auc", "gauc", "logloss", "d1_accuracy", "ds_accuracy"):
            row[key] = spread([r[key] for r in results])
        rows.append(row)
    return rows


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.4f} ± {std:.4f}"
    return f"{value:.4f}"


def render(summary: dict) -> str:
    main = summary["main"]
    lines = ["", f"Results on the {summary['split']} split ({main['examples']:,} examples); ladder: mean ± std over "
                 "seeds", "",
             "| model | seeds | AUC | GAUC | log loss | D1 accuracy | Ds accuracy |",
             "|---|---|---:|---:|---:|---:|---:|",
             f"| main model: {main['variant']} | {main['seed']} | {_cell(main['auc'])} | {_cell(main['gauc'])} | "
             f"{_cell(main['logloss'])} | {_cell(main['d1_accuracy'])} | {_cell(main['ds_accuracy'])} |"]
    for row in ladder_rows(summary):
        lines.append(f"| ladder: {row['variant']} | {','.join(map(str, row['seeds']))} | {_cell(row['auc'])} | "
                     f"{_cell(row['gauc'])} | {_cell(row['logloss'])} | {_cell(row['d1_accuracy'])} | "
                     f"{_cell(row['ds_accuracy'])} |")
    lines.append(f"\nD1 accuracy near chance ({main['chance_accuracy']:.2f}): the invariant vectors hide their modality "
                 "(well below chance: the encoder is beating D1 instead); Ds accuracy near 1: the specific ones keep it.")
    export = summary.get("export")
    if export:
        passed = sum(c["passed"] for c in export["checks"])
        lines.append(f"export: {export['path']} ({passed}/{len(export['checks'])} checks passed)")
    lines.append(f"report: {os.path.join(summary['run'], 'report.html')}")
    return "\n".join(lines)
