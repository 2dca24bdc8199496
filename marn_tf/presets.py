"""Registered presets: named, described lists of `--set`-style overrides.

`marn train|run|preprocess|demo --preset NAME` (repeatable) applies each named preset's overrides in order, then
the command's `--set` overrides, so `--set` has the last word; `Config.load(path, overrides, presets=[...])` does
the same. `marn presets` prints every preset with its description and overrides. Registered here:

    demo                 the short training budgets and the ladder of `marn demo` (which applies it first)
    din, concat, man,    one per ladder rung: its `model.variant` (the structure keys follow from it; see
    maan, marn           marn_tf/model_config.py)

A preset that sets a key the config file also sets wins over the file, as `--set` does; a rung preset on a config
whose `model:` section sets `fusion`, `discriminators` or `sequence_encoder` to another structure is the usual
error naming the keys to drop. `register` adds one (a name is registered once).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from marn_tf.config_loader import ConfigError
from marn_tf.model_config import RUNGS


@dataclasses.dataclass(frozen=True)
class Preset:
    """`overrides` are `section.key=value`, as `--set` takes them."""

    name: str
    description: str
    overrides: tuple[str, ...]


PRESETS: dict[str, Preset] = {}


def register(name: str, description: str, overrides: Sequence[str]) -> Preset:
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    bad = [o for o in overrides if "=" not in o or "." not in o.split("=", 1)[0]]
    if bad:
        raise ValueError(f"preset {name!r}: override {bad[0]!r} must look like section.key=value")
    PRESETS[name] = Preset(name, description, tuple(overrides))
    return PRESETS[name]


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; registered presets: {', '.join(sorted(PRESETS))} "
                          "(`marn presets` describes them)")
    return PRESETS[name]


def overrides_of(names: Iterable[str]) -> list[str]:
    """The overrides of the presets `names`, in order (a later preset's key wins over an earlier one's)."""
    return [override for name in names for override in get(name).overrides]


def describe() -> str:
    """Every preset: its name, description and overrides (what `marn presets` prints)."""
    return "\n\n".join(f"{p.name}: {p.description}\n" + "\n".join(f"    --set {o}" for o in p.overrides)
                       for p in PRESETS.values())


# Budgets for the main model and the whole ladder (5 variants x 2 seeds; the main model is the marn rung with
# seed 1): validation on 10 batches every 40 steps of 1,024, at most 6 times, stopping after 2 passes without a
# better AUC. The models reach their best validation AUC within about one pass over the training split (80-160
# steps on the embedded data, marn the latest; `benchmarks/quality.py` measures it) and overfit after it;
# evaluation loads the best.
register("demo", "marn demo's short budgets (10-15 minutes on 2 CPU cores for the embedded data): validation on 10 "
                 "batches every 40 steps, at most 6 times, early stopping after 2; the whole ladder over 2 seeds", [
    "train.steps_per_epoch=40", "train.epochs=6", "train.validation_steps=10", "train.early_stopping_patience=2",
    "run.ladder=[din, concat, man, maan, marn]", "run.seeds=[1, 2]",
])
_RUNG_DESCRIPTIONS = {
    "din": "the DIN-style baseline: IDs + raw content concatenated, target attention over the behaviour items",
    "concat": "specific projections concatenated (every modality a fixed weight), GRU + target attention",
    "man": "multimodal attention over the specific projections, GRU + target attention",
    "maan": "MAN + invariant projections with one discriminator (D1 only)",
    "marn": "full MARN: MAN + the double-discriminator network (D0 weights, D1, Ds, alignment); the default",
}
for _variant, _structure in RUNGS.items():
    register(_variant, f"ladder rung {_variant}: {_RUNG_DESCRIPTIONS[_variant]} ("
                       + ", ".join(f"{k} {v}" for k, v in _structure.items()) + ")", [f"model.variant={_variant}"])
