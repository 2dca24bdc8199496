"""The `run:` section of the config: what `marn run` does around the main model."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from marn_tf.config_loader import ConfigError, check_range
from marn_tf.model_config import VARIANTS
from marn_tf.train_config import SEED_LIMIT
from marn_tf.schema import EVALUATION_SPLITS


EXPORT_CHOICES = (True, False, "best")


@dataclasses.dataclass
class RunConfig:
    """`marn run` trains the main model (the `model:` and `train:` sections) and, beside it, the ablation
    ladder: every variant of `ladder` once per seed of `seeds`, with the `train:` section changed by
    `ladder_overrides` (e.g. a shorter budget). A rung is the main model's config with the rung's structure
    (`ModelConfig.for_variant`: fusion and discriminators of the rung; a GRU rung keeps the main model's
    `sequence_encoder: augru`) and the keys the rung does not read at their default. Everything is evaluated on
    `evaluation_split`.

    Attributes:
        output: the run directory (default: `runs/<name of the config file without .yaml>`).
        workers: local Beam worker processes of the preprocessing job (with no --runner).
        ladder: variants to compare (`[]`: the main model only).
        seeds: `train.seed` of each ladder run; more seeds give the spread of each variant's AUC.
        ladder_overrides: `key=value` overrides (as `--set` takes) applied to every ladder run.
        evaluation_split: where every model is evaluated.
        export: what to export for TF Serving, then check in a fresh process: `true` the main model, `false`
            nothing, `best` the ladder's rung that is best on validation AUC (`marn_tf/workflow/selection.py`).
    """

    output: Optional[str] = None
    workers: int = 2
    ladder: list[str] = dataclasses.field(default_factory=lambda: ["din", "concat", "man", "maan", "marn"])
    seeds: list[int] = dataclasses.field(default_factory=lambda: [1, 2])
    ladder_overrides: list[str] = dataclasses.field(default_factory=list)
    evaluation_split: str = "test"
    # true, false or "best" (EXPORT_CHOICES); typed Any because the loader converts a key to one type only.
    export: Any = True

    def __post_init__(self):
        unknown = [v for v in self.ladder if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"ladder: unknown variant {unknown[0]!r}; variants: {', '.join(VARIANTS)}")
        if len(set(self.ladder)) != len(self.ladder) or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("ladder and seeds must not repeat a value")
        if self.ladder and not self.seeds:
            raise ConfigError("seeds must name at least one seed when ladder names variants")
        # `is`: 1 and 0 equal True and False but are not what a user means by them
        if not any(self.export is c if isinstance(c, bool) else self.export == c for c in EXPORT_CHOICES):
            raise ConfigError(f"config key 'run.export' must be true (export the main model), false (export "
                              f"nothing) or best (the ladder's rung best on validation AUC), got {self.export!r}")
        if self.export == "best" and not self.ladder:
            raise ConfigError("config key 'run.export' is best, which picks a rung of run.ladder, but run.ladder is "
                              "empty: name variants in run.ladder or set run.export to true")
        check_range(self, ["workers"], 1, integer=True, meaning="local Beam worker processes")
        check_range(self, ["seeds"], 0, SEED_LIMIT, integer=True, meaning="train.seed of the ladder runs")
        if self.evaluation_split not in EVALUATION_SPLITS:
            raise ConfigError(f"evaluation_split must be one of {', '.join(EVALUATION_SPLITS)}")
        bad = [o for o in self.ladder_overrides if not o.startswith(("train.", "model.")) or "=" not in o]
        if bad:
            raise ConfigError(f"ladder_overrides: {bad[0]!r} must look like train.key=value or model.key=value")
        decided = ("model.variant=", "model.fusion=", "model.discriminators=", "model.sequence_encoder=none",
                   "train.seed=")
        if any(o.replace(" ", "").startswith(decided) for o in self.ladder_overrides):
            raise ConfigError("ladder_overrides must not set model.variant, model.fusion, model.discriminators, "
                              "model.sequence_encoder=none or train.seed: ladder and seeds do (a rung with a GRU "
                              "takes model.sequence_encoder=augru)")
