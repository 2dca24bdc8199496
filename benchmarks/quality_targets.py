"""The targets `benchmarks/quality.py` checks, per world: what MARN must show to earn its place.

    planted world     marn - man >= 0, man - concat >= 0, marn - din >= +0.003 (means of paired differences);
                      hiding the image costs >= 1.3x more AUC in visual than in popularity categories, hiding
                      the statistics >= 1.3x more in popularity than in visual ones (marn, means over seeds; a
                      cost under 0.002, within the seeds' spread, counts as 0.002 in the denominator)
    realistic world   marn - din >= 0, man - concat >= 0 (means of paired differences); every rung's mean
                      test AUC at or above the no-model floor
    both              marn's mean test AUC >= the floor + 0.02; marn's D1 accuracy, median over seeds, within
                      chance +- 0.07

Each target is {"name", "measured", "target", "met"}; a target whose figures are missing (a rung not run) is
left out rather than reported as failed.
"""
from __future__ import annotations

import numpy as np

CHANCE_TOLERANCE = 0.07
IMPORTANCE_RATIO = 1.3
# A hiding cost below this is within the spread between seeds: the ratio's denominator is at least this, so a
# modality whose hiding costs nothing anywhere does not pass on a cost of noise.
NOISE_COST = 0.002
# (world, better, worse, least mean difference) of test AUC, paired by seed
DIFFERENCES = [("default", "marn", "man", 0.0), ("default", "man", "concat", 0.0), ("default", "marn", "din", 0.003),
               ("realistic", "marn", "din", 0.0), ("realistic", "man", "concat", 0.0)]
# (modality, the kind where hiding it must cost more, the kind it is compared with)
IMPORTANCE = [("image", "visual", "popularity"), ("statistic", "popularity", "visual")]


def target(name: str, measured, goal: str, met: bool) -> dict:
    return {"name": name, "measured": measured, "target": goal, "met": bool(met)}


def paired_mean(results: dict, better: str, worse: str):
    """Mean over the seeds both ran of better's test AUC minus worse's, or None."""
    by_seed = {r["seed"]: r["test_auc"] for r in results.get(worse, [])}
    pairs = [r["test_auc"] - by_seed[r["seed"]] for r in results.get(better, []) if r["seed"] in by_seed]
    return float(np.mean(pairs)) if pairs else None


def importance_ratio(runs: list[dict], modality: str, high: str, low: str):
    """(mean AUC drop of hiding `modality` in `high` categories, in `low` ones, their ratio) over the runs; the ratio
    divides by at least `NOISE_COST`."""
    drops = {kind: [r["importance_by_kind"][kind][modality] for r in runs
                    if modality in r.get("importance_by_kind", {}).get(kind, {})] for kind in (high, low)}
    if not drops[high] or not drops[low]:
        return None
    high_drop, low_drop = float(np.mean(drops[high])), float(np.mean(drops[low]))
    return high_drop, low_drop, high_drop / max(low_drop, NOISE_COST)


def targets_of(worlds: dict[str, dict]) -> list[dict]:
    """`worlds`: world name -> {"results": {variant: [run, ...]}, "floor_auc": float or None}."""
    found = []
    for world, better, worse, least in DIFFERENCES:
        if world in worlds:
            mean = paired_mean(worlds[world]["results"], better, worse)
            if mean is not None:
                found.append(target(f"{world}: test AUC {better} - {worse}, mean over paired seeds", round(mean, 4),
                                    f">= {least:+.3f}", mean >= least))
    for world, figures in worlds.items():
        results, floor = figures["results"], figures.get("floor_auc")
        aucs = {variant: float(np.mean([r["test_auc"] for r in runs])) for variant, runs in results.items() if runs}
        if floor is not None and "marn" in aucs:
            lift = aucs["marn"] - floor
            found.append(target(f"{world}: marn test AUC - no-model floor", round(lift, 4), ">= +0.02", lift >= 0.02))
        if world == "realistic" and floor is not None:
            for variant, auc in aucs.items():
                found.append(target(f"{world}: {variant} test AUC - no-model floor", round(auc - floor, 4), ">= 0",
                                    auc >= floor))
        d1 = [r["d1_accuracy"] for r in results.get("marn", []) if r.get("d1_accuracy") is not None]
        if d1:
            chance, median = results["marn"][0]["chance"], float(np.median(d1))
            found.append(target(f"{world}: marn D1 accuracy, median over seeds", round(median, 3),
                                f"{chance:.2f} ± {CHANCE_TOLERANCE}", abs(median - chance) <= CHANCE_TOLERANCE))
    if "default" in worlds:
        for modality, high, low in IMPORTANCE:
            measured = importance_ratio(worlds["default"]["results"].get("marn", []), modality, high, low)
            if measured is not None:
                high_drop, low_drop, ratio = measured
                met = ratio >= IMPORTANCE_RATIO
                found.append(target(f"default: AUC cost of hiding {modality} in {high} / in {low} categories "
                                    "(marn; [cost there, cost here, ratio])",
                                    [round(v, 4) for v in measured], f">= {IMPORTANCE_RATIO}",
                                    met))
    return found
