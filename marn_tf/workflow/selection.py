"""The best rung, chosen by validation: which rung of the ablation ladder is best on validation AUC, each rung's
difference to marn, and which model `marn run` exports (`run.export`).

A model's validation AUC is its best checkpoint's, measured on the validation split while it trained
(`TrainResult.best_val_auc`: on `train.validation_steps` batches, or the whole split when that is unset). That
checkpoint is the one every model is evaluated and exported from. The AUC on `run.evaluation_split` (test by
default) is reported beside it and never used to choose.

A rung's figure is the mean over its seeds that have one. Its difference to marn is paired: the mean over the
seeds both rungs measured of (rung - marn), each pair trained on the same data with the same seed (one seed: the
plain difference).
"""
from __future__ import annotations

import math
from typing import Optional, Union

REFERENCE = "marn"  # the rung every other is compared with


def _finite(value) -> Optional[float]:
    """`value` as a float, or None when it was not measured (None) or is not a number (NaN)."""
    return None if value is None or not math.isfinite(value) else float(value)


def _mean(values) -> Optional[float]:
    numbers = [v for v in values if v is not None]
    return sum(numbers) / len(numbers) if numbers else None


def paired_difference(rung: dict[int, Optional[float]], reference: dict[int, Optional[float]]) -> Optional[float]:
    """Mean over the seeds both measured of rung - reference ({seed: value}); None when they share none."""
    seeds = [s for s, v in rung.items() if v is not None and reference.get(s) is not None]
    return _mean([rung[s] - reference[s] for s in seeds])


def choose(ladder: dict[str, list[dict]], validation: dict[str, Optional[float]], main: dict) -> dict:
    """Each rung's validation and evaluation AUC with its difference to marn, and the best rung.

    Args:
        ladder: variant -> its evaluation results, one per seed (`name`, `seed`, `auc`), as the summary has them.
        validation: model name -> its validation AUC (None or NaN: not measured).
        main: the main model's evaluation result (`name`, `variant`): it wins a tie, so a tie exports what
            `run.export: true` would.

    Returns {"reference": "marn" or None (no marn rung), "rungs": [one row per variant, in ladder order], "best":
    None when no rung has a validation AUC, else the best rung (ties: the main model's variant, then ladder
    order) and its seed with the highest validation AUC (ties: the main model, then the seed listed first)}.
    """
    measured = {v: {r["seed"]: _finite(validation.get(r["name"])) for r in results} for v, results in ladder.items()}
    evaluated = {v: {r["seed"]: _finite(r["auc"]) for r in results} for v, results in ladder.items()}
    reference = REFERENCE if REFERENCE in ladder else None
    rows = []
    for variant, results in ladder.items():
        rows.append({
            "variant": variant, "seeds": [r["seed"] for r in results],
            "validated_seeds": [s for s, v in measured[variant].items() if v is not None],
            "validation_auc": _mean(measured[variant].values()), "auc": _mean(evaluated[variant].values()),
            "validation_auc_difference": paired_difference(measured[variant], measured[reference])
            if reference else None,
            "auc_difference": paired_difference(evaluated[variant], evaluated[reference]) if reference else None})
    candidates = [r for r in rows if r["validation_auc"] is not None]
    if not candidates:
        return {"reference": reference, "rungs": rows, "best": None}
    order = list(ladder)
    top = max(candidates, key=lambda r: (r["validation_auc"], r["variant"] == main["variant"],
                                         -order.index(r["variant"])))
    results, values = ladder[top["variant"]], measured[top["variant"]]
    model = max((r for r in results if values[r["seed"]] is not None),
                key=lambda r: (values[r["seed"]], r["name"] == main["name"], -results.index(r)))
    return {"reference": reference, "rungs": rows,
            "best": {"variant": top["variant"], "validation_auc": top["validation_auc"],
                     "seeds": len(top["validated_seeds"]), "name": model["name"], "seed": model["seed"],
                     "model_validation_auc": values[model["seed"]]}}


def exported_model(choice: Union[bool, str], selection: dict, main: dict, main_validation: Optional[float]) \
        -> Optional[dict]:
    """The model `run.export` (`choice`) exports and why: {"name", "variant", "seed", "reason"}; None for false.

    `main`: the main model's evaluation result (`name`, `variant`, `seed`); `main_validation`: its validation AUC.
    """
    if choice is False:
        return None
    main_model = {"name": main["name"], "variant": main["variant"], "seed": main["seed"]}
    if choice is True:
        return {**main_model, "reason": "main model"}
    best = selection["best"]
    if best is None:
        return {**main_model, "reason": "main model: no ladder rung has a validation AUC to choose by"}
    seeds = f"{best['seeds']} seed{'s' if best['seeds'] != 1 else ''}"
    against = ("the main model" if best["name"] == main["name"] else
               f"main model {main['variant']} " + ("without one" if _finite(main_validation) is None
                                                     else f"{main_validation:.4f}"))
    reason = (f"best on validation AUC {best['validation_auc']:.4f} (rung {best['variant']}, mean over {seeds}); "
              f"its seed {best['seed']}: {best['model_validation_auc']:.4f} ({against})")
    return {"name": best["name"], "variant": best["variant"], "seed": best["seed"], "reason": reason}
