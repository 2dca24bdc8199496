"""The `model:` section of the config: MARN's architecture choices (the `train:` and `runtime:` sections are in
`marn_tf/train_config.py`).

Every place this implementation departs from the paper is a key here (docs/model.md, "Where this project
departs from the paper", lists them with their defaults), so it can be ablated with
`--set model.<key>=<value>`. Three keys choose the network's structure:

    fusion            raw_concat: IDs + the raw modality embeddings concatenated (DIN); concat: the specific
                      projections concatenated (every modality a fixed weight); attention: multimodal attention
                      over them (MAN)
    discriminators    none; single: + invariant projections with one discriminator (D1 only); double: + the
                      double-discriminator network (D0 importance weights, D1, Ds, alignment). Needs attention.
    sequence_encoder  none: target attention straight over the behaviour items (DIN); gru: a GRU, then target
                      attention; augru: DIEN's interest evolution

`variant` names a rung of the ablation ladder, a preset of the three (reports, run directories and the ladder
use it as the model's name):

    din     raw_concat  none    none
    concat  concat      none    gru
    man     attention   none    gru
    maan    attention   single  gru
    marn    attention   double  gru     (the default: full MARN)

A rung with a GRU takes `sequence_encoder: augru` as well (`variant: marn` with AUGRU is still marn). Set
either `variant` (the three keys follow) or the keys (`variant` becomes the rung they make, or "custom": a
`variant: custom` reads as no variant); both, disagreeing, is an error that says which to drop, and so is a
structure the network cannot build (discriminators without attention fusion). A config written before the
keys existed has `sequence_encoder: gru` beside `variant: din`: it always meant no encoder, and still loads as
DIN. `to_dict` writes all four resolved.

The paper's literal reading of the adversarial part is selectable, key by key (docs/model.md says why the
defaults differ, docs/experiments.md what was measured):

    --set model.adversarial_objective=reversal --set model.lambda_adv=0.1 --set model.share_discriminator=true \
    --set model.importance_weighting=scale --set model.lambda_align=0 --set model.normalize_modalities=false \
    --set model.attention_context=own --set model.lambda_s=0.1

A key the chosen structure does not read (a discriminator's weight with `discriminators: none`,
`cross_layers` without the DCN head, ...) set to anything but its default is an error (`check_settings_used`)
rather than silently ignored; a ladder rung is the main model's config with the rung's structure and the keys
it does not read reset (`for_variant`). Registered presets (`marn_tf/presets.py`) name such overrides.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from marn_tf.config_loader import ConfigError, ConfigKeyError, check_choice, check_range

STRUCTURE_KEYS = ("fusion", "discriminators", "sequence_encoder")
# Each rung of the ablation ladder: its structure. A rung with "gru" takes "augru" as well (`_agrees`).
RUNGS = {
    "din": {"fusion": "raw_concat", "discriminators": "none", "sequence_encoder": "none"},
    "concat": {"fusion": "concat", "discriminators": "none", "sequence_encoder": "gru"},
    "man": {"fusion": "attention", "discriminators": "none", "sequence_encoder": "gru"},
    "maan": {"fusion": "attention", "discriminators": "single", "sequence_encoder": "gru"},
    "marn": {"fusion": "attention", "discriminators": "double", "sequence_encoder": "gru"},
}
VARIANTS = tuple(RUNGS)
DEFAULT_VARIANT = "marn"  # the structure of a config that sets neither `variant` nor a key
CUSTOM = "custom"  # the variant of a structure no rung has
FUSIONS = ("raw_concat", "concat", "attention")
DISCRIMINATORS = ("none", "single", "double")
SEQUENCE_ENCODERS = ("none", "gru", "augru")
HEADS = ("mlp", "dcn")
OBJECTIVES = ("capped", "confusion", "reversal")
IMPORTANCE_WEIGHTINGS = ("loss", "scale")
ATTENTION_CONTEXTS = ("own", "item")
INVARIANT_RESIDUALS = ("add", "gated", "attended")


@dataclasses.dataclass
class ModelConfig:
    """The network: its structure, widths and losses, and where it departs from the paper (docs/model.md)."""
    variant: Optional[str] = None  # a rung of the ladder: din, concat, man, maan or marn (the three keys below),
    # or "custom"; the model's name in reports; null (resolved on loading): the keys' rung, marn if they are unset
    fusion: Optional[str] = None  # "raw_concat", "concat" or "attention"; null: the variant's
    discriminators: Optional[str] = None  # "none", "single", "double" (needs fusion "attention"); null: the variant's
    sequence_encoder: Optional[str] = None  # "none", "gru" or "augru" before target attention; null: the variant's
    units: int = 64  # width d of s^m, c^m and the item representation (the paper: 256)
    id_embedding_dim: int = 16  # per ID field (item id, shop, brand, category, ...), concatenated
    word_embedding_dim: int = 32  # per title word
    text_filters: int = 32  # filters of the title CNN per kernel size
    text_kernel_sizes: list[int] = dataclasses.field(default_factory=lambda: [2, 3, 4])  # title CNN windows, in words
    statistic_embedding_dim: int = 8  # per bucketised counter (the paper: two 8-d vectors)
    property_embedding_dim: int = 8  # behaviour type, time gap, point-in-time counters of an occurrence
    context_embedding_dim: int = 16  # user and context features
    # string user/context features hashed into this many buckets (Keras Hashing) instead of looked up in their
    # vocabulary, e.g. {user_id: 100000}: an unbounded or fast-changing id space needs no vocabulary, and ids
    # first seen at serving time get a bucket of their own (shared by collisions) instead of the OOV row
    hash_buckets: dict[str, int] = dataclasses.field(default_factory=dict)
    embedding_l2: float = 0.0  # L2 on every looked-up embedding row, weighted by use (DIN's mini-batch aware);
    # measured no better at 0.01 and worse at 0.1 on the embedded data (docs/experiments.md), hence 0
    common_units: int = 64  # P_m: every modality to this width before the shared invariant projector I
    attention_gate: str = "vector"  # MAN: "vector" (a^m in R^d) or "scalar"
    attention_normalize: str = "none"  # MAN: "none" (tanh, the paper) or "softmax" across modalities
    attention_context: str = "own"  # MAN gate input: "own" s^m (the paper) or "item" (+ the mean of the item's s^m)
    attention_bias: float = 0.0  # initial gate bias b_m; > 0 starts the gates open
    attention_unit_scale: bool = False  # MAN: each s^m divided by its RMS first, so only a^m sets its share
    attention_cost: float = 0.0  # MAN: L1 cost on the gates, so a gate stays open only where its modality helps
    normalize_modalities: bool = True  # layer-normalise each e^m before S_m and P_m (off: the paper)
    discriminator_hidden: list[int] = dataclasses.field(default_factory=lambda: [64])  # hidden widths of D0, D1, Ds
    lambda_d0: float = 0.05  # weight of D0, whose confidence sets the invariant vectors' importance weights w
    lambda_adv: float = 3.0  # weight of D1 and the encoder's side of the game (bounded: see adversarial_objective)
    lambda_s: float = 0.0  # Ds's weight on the specific vectors s^m (the paper: > 0); 0: Ds only measures them
    lambda_align: float = 1.0  # same-item cross-modal InfoNCE on the invariant vectors (marn; 0: the paper)
    adversarial_objective: str = "capped"  # "capped" reversal or "confusion" (D1 on stop-gradient), or "reversal"
    adversarial_margin: float = 0.0  # capped: push until CE(D1(c^m), m) >= log M + this (D1 a little under chance);
    # 0.3 brings D1 nearer chance but costs validation AUC and invariant agreement (docs/experiments.md)
    share_discriminator: bool = False  # Ds is D1's network (the paper) instead of its own
    importance_weighting: str = "loss"  # D0's w weighs D1's per-vector loss ("loss", IWAN) or scales c ("scale")
    importance_floor: float = 0.1  # w = 1 - D0(c)[m] clipped below at this
    alignment_items: int = 256  # items of a batch the alignment term compares
    alignment_temperature: float = 0.2  # of the alignment term's InfoNCE
    grl_coefficient: float = 1.0  # lambda_grl: the adversarial coefficient at full strength
    grl_ramp: bool = True  # ramp lambda_grl from 0 with the DANN schedule over adversarial_ramp_steps
    adversarial_ramp_steps: int = 100  # steps of the ramp: its own clock, whatever train.epochs is
    normalize_importance: bool = True  # D0 weights w scaled to mean 1 over the batch
    invariant_residual: str = "add"  # rep = s + c ("add", the paper), s + γ ⊙ c with γ learned from 0 ("gated"),
    # or c as one more slot of the modality attention ("attended"); chosen on validation AUC (docs/experiments.md)
    raw_path: bool = True  # concat/attention fusion: DIN's raw concatenation (see raw_units) is
    # the base of the item representation and the rung's own enters through a gate learned from 0; the game's
    # gradients stop at the embeddings (docs/model.md). It raised validation AUC on both worlds (docs/experiments.md)
    raw_units: Optional[int] = 0  # raw_path: 0 keeps DIN's concatenation itself as the base; n > 0 maps it
    # linearly to n columns (null: units), cheaper where the concatenation is wide. 0 raised marn's validation AUC
    # on two modalities and held it elsewhere (docs/experiments.md)
    modality_dropout: float = 0.0  # training only: drop each present modality of an item with this rate
    gru_units: int = 64  # width of the user interest GRU
    raw_interest: bool = True  # GRU rungs: DIN's target attention pooling of the behaviour items is the interest's
    # base, and the GRU's interest enters through a gate learned from 0 (docs/model.md, docs/experiments.md)
    gru_unroll: bool = True  # unrolled over the sequence length: ~2x faster interest layer on CPU (training)
    attention_hidden: list[int] = dataclasses.field(default_factory=lambda: [80, 40])  # target attention MLP widths
    target_attention_normalize: str = "none"  # "none" (DIN) or "softmax"
    head: str = "mlp"  # "mlp", or "dcn": tfrs Cross layers before the MLP
    cross_layers: int = 2  # Cross layers of the dcn head
    hidden_units: list[int] = dataclasses.field(default_factory=lambda: [200, 80])  # prediction MLP widths
    dropout: float = 0.2  # after each hidden layer of the prediction MLP (training only): the models overfit
    # after about one pass over the embedded data's training split
    rate_offset: bool = True  # add the click-rate features' logits, weighted (1/K at the start), to the logit: the
    # model starts at the no-model floor's ranking. It raised or held every rung's validation AUC on both worlds
    # (docs/experiments.md)
    deduplicate_items: bool = True  # run the item encoder once per unique item of a batch
    deduplicate_sequences: bool = True  # at inference, encode each distinct behaviour sequence once

    @property
    def specific_probe(self) -> bool:
        """Whether Ds only measures the specific vectors: it reads stop_gradient(s^m) and trains itself alone (maan
        always; marn at lambda_s 0), instead of training the specific projections to keep their modality."""
        return self.discriminators == "single" or (self.discriminators == "double" and self.lambda_s == 0)

    def unused_keys(self) -> dict[str, str]:  # the keys this configuration does not read, each with why
        unused = {}
        for keys, structure_key, values, why in _UNUSED_BY_STRUCTURE:
            value = getattr(self, structure_key)
            if value in values:
                unused.update({key: f"model.{structure_key} is {value!r} ({why})" for key in keys})
        if self.head != "dcn":
            unused["cross_layers"] = f"model.head is {self.head!r}, not 'dcn'"
        if not self.raw_path and "raw_units" not in unused:
            unused["raw_units"] = "model.raw_path is false"
        if not self.grl_ramp and "adversarial_ramp_steps" not in unused:
            unused["adversarial_ramp_steps"] = "model.grl_ramp is false"
        return unused

    def check_settings_used(self) -> None:
        """Raises when a key this configuration does not read is set to anything but its default (or the value a run
        saved before the key existed restores with, `EARLIER_DEFAULTS`)."""
        defaults = ModelConfig()
        idle = {key: why for key, why in self.unused_keys().items()
                if getattr(self, key) not in (getattr(defaults, key), EARLIER_DEFAULTS.get(key, getattr(defaults, key)))}
        if idle:
            raise ConfigError("; ".join(f"model.{key} is {getattr(self, key)!r}, but {why}, so it would change "
                                        "nothing" for key, why in idle.items())
                              + ": remove " + ("it" if len(idle) == 1 else "them") + " from the config, or choose "
                              "a model that reads " + ("it" if len(idle) == 1 else "them"))

    def for_variant(self, variant: str) -> "ModelConfig":
        """This config as ladder rung `variant`: the rung's structure (a GRU rung keeps this config's "augru"), the
        same settings otherwise, except those the rung does not read, at their default."""
        check_choice("variant", variant, VARIANTS)
        structure = dict(RUNGS[variant])
        if structure["sequence_encoder"] != "none" and self.sequence_encoder != "none":
            structure["sequence_encoder"] = self.sequence_encoder
        rung = dataclasses.replace(self, variant=variant, **structure)
        defaults = ModelConfig()
        return dataclasses.replace(rung, **{key: getattr(defaults, key) for key in rung.unused_keys()})

    def digest_dict(self) -> dict:
        """The plain-data form as written before the structure keys existed, for digests that name earlier runs
        (`marn run`'s stages, benchmarks/quality.py): a rung's `fusion` and `discriminators` left out, and DIN's
        `sequence_encoder` as the "gru" it was written with. A custom structure keeps every key."""
        data = dataclasses.asdict(self)
        unused = self.unused_keys()
        for key, off in LATER_KEYS.items():  # added after the runs they would rename
            if getattr(self, key) == off or key in unused:
                del data[key]
        data.update({key: value for key, value in UNREAD_DIGEST_VALUES.items() if key in unused})
        if self.variant in RUNGS:
            del data["fusion"], data["discriminators"]
            if self.sequence_encoder == "none":
                data["sequence_encoder"] = "gru"
        return data

    def _resolve_structure(self) -> None:
        """Fills the structure keys from `variant`, or `variant` from the keys; raises when they disagree or the
        network cannot build them (the module docstring)."""
        for key, choices in (("fusion", FUSIONS), ("discriminators", DISCRIMINATORS),
                             ("sequence_encoder", SEQUENCE_ENCODERS)):
            if getattr(self, key) is not None:
                check_choice(key, getattr(self, key), choices)
        if self.variant not in (None, CUSTOM):
            check_choice("variant", self.variant, VARIANTS + (CUSTOM,))
            if self.variant == "din" and self.sequence_encoder == "gru":
                # Written beside din by every config before the keys existed (the default then, and ignored).
                self.sequence_encoder = "none"
            preset = RUNGS[self.variant]
            clashes = [key for key in STRUCTURE_KEYS
                       if getattr(self, key) is not None and not _agrees(self.variant, key, getattr(self, key))]
            if clashes:
                given = {key: getattr(self, key) for key in STRUCTURE_KEYS}
                rung = _rung_of({key: given[key] or preset[key] for key in STRUCTURE_KEYS})
                raise ConfigError(
                    f"variant {self.variant!r} is " + ", ".join(f"{key} {preset[key]!r}" for key in STRUCTURE_KEYS)
                    + ", but " + ", ".join(f"{key} is {given[key]!r}" for key in clashes) + ": set one or the other, "
                    "not both: remove " + ", ".join(f"model.{key}" for key in clashes) + " to build "
                    f"{self.variant}, or remove model.variant to build the keys' structure"
                    + (f" ({rung})" if rung != CUSTOM else "") + " (in code: ModelConfig.for_variant changes a rung)")
            base = preset
        else:
            base = RUNGS[DEFAULT_VARIANT]
        defaulted = [key for key in STRUCTURE_KEYS if getattr(self, key) is None]
        for key in defaulted:
            setattr(self, key, base[key])
        if self.discriminators != "none" and self.fusion != "attention":
            unset = f" (unset: {DEFAULT_VARIANT}'s)" if "discriminators" in defaulted else ""
            raise ConfigError(f"discriminators {self.discriminators!r}{unset} need fusion 'attention' (the invariant "
                              f"part adds to the attended specific one), not {self.fusion!r}: set "
                              "model.fusion=attention, or model.discriminators=none")
        self.variant = _rung_of({key: getattr(self, key) for key in STRUCTURE_KEYS})

    def __post_init__(self):
        self._resolve_structure()
        check_choice("attention_gate", self.attention_gate, ("vector", "scalar"))
        check_choice("attention_normalize", self.attention_normalize, ("none", "softmax"))
        check_choice("target_attention_normalize", self.target_attention_normalize, ("none", "softmax"))
        check_choice("head", self.head, HEADS)
        check_choice("adversarial_objective", self.adversarial_objective, OBJECTIVES)
        check_choice("importance_weighting", self.importance_weighting, IMPORTANCE_WEIGHTINGS)
        check_choice("attention_context", self.attention_context, ATTENTION_CONTEXTS)
        check_choice("invariant_residual", self.invariant_residual, INVARIANT_RESIDUALS)
        _check_model_ranges(self)


def _agrees(variant: str, key: str, value: str) -> bool:
    """Whether structure key `key` at `value` is what rung `variant` builds."""
    preset = RUNGS[variant][key]
    if key == "sequence_encoder" and preset == "gru":
        return value in ("gru", "augru")  # DIEN's AUGRU in the GRU's place: still the rung
    return value == preset


def _rung_of(structure: dict) -> str:
    """The rung a structure builds, or "custom"."""
    return next((variant for variant in RUNGS if all(_agrees(variant, key, structure[key]) for key in STRUCTURE_KEYS)),
                CUSTOM)


# keys added after runs that benchmarks reuse, with their "off" value: left out of digest_dict while off
LATER_KEYS = {"hash_buckets": {}, "attention_unit_scale": False, "attention_cost": 0.0, "raw_path": False,
               "raw_interest": False, "raw_units": None}
# keys whose default changed after runs were saved without them: such a run was trained with this value
EARLIER_DEFAULTS = {"raw_path": False, "raw_interest": False, "rate_offset": False, "raw_units": None}
UNREAD_DIGEST_VALUES = {"lambda_s": 0.1}  # changed defaults, hashed as before where a rung does not read them
_ATTENTION_KEYS = ("attention_gate", "attention_normalize", "attention_context", "attention_bias",
                   "attention_unit_scale", "attention_cost")
_ADVERSARIAL_KEYS = ("common_units", "discriminator_hidden", "lambda_adv", "adversarial_objective",
                     "adversarial_margin", "share_discriminator", "grl_coefficient", "grl_ramp",
                     "adversarial_ramp_steps", "invariant_residual")
_DOUBLE_KEYS = ("lambda_d0", "lambda_s", "lambda_align", "alignment_items", "alignment_temperature",
                "importance_weighting", "importance_floor", "normalize_importance")
# (keys, the structure key, its values that do not read them, why): what `unused_keys` reports.
_UNUSED_BY_STRUCTURE = [
    (("units", "normalize_modalities", "raw_path", "raw_units"), "fusion", ("raw_concat",),
     "the raw modality embeddings concatenated, no projections"),
    (("gru_units", "gru_unroll", "raw_interest"), "sequence_encoder", ("none",),
     "target attention straight over the behaviour items"),
    (_ATTENTION_KEYS, "fusion", ("raw_concat", "concat"), "no modality attention"),
    (_ADVERSARIAL_KEYS, "discriminators", ("none",), "no invariant part or discriminator"),
    (_DOUBLE_KEYS, "discriminators", ("none", "single"), "no D0, Ds or alignment term: 'double' has them"),
]


def _check_model_ranges(model: ModelConfig) -> None:
    """The model's numbers in their ranges, before any work: a zero or negative width or kernel size would reach a
    Keras layer and fail there, or abort in TensorFlow, and a negative weight would turn a loss around."""
    check_range(model, ["units", "id_embedding_dim", "word_embedding_dim", "text_filters", "statistic_embedding_dim",
                        "property_embedding_dim", "context_embedding_dim", "common_units", "gru_units"], 1,
                integer=True, meaning="a width")
    check_range(model, ["hidden_units", "attention_hidden", "discriminator_hidden"], 1, integer=True,
                meaning="the width of a hidden layer")
    check_range(model, ["text_kernel_sizes"], 1, integer=True, meaning="a window of words")
    if not model.text_kernel_sizes:
        raise ConfigKeyError("text_kernel_sizes", "is []: name at least one kernel size, e.g. [2, 3, 4]")
    check_range(model, ["cross_layers", "adversarial_ramp_steps"], 1, integer=True)
    check_range(model, ["raw_units"], 0, integer=True, meaning="a width (0: no projection)")
    check_range(model, ["alignment_items"], 0, integer=True, meaning="items of a batch the alignment term compares")
    check_range(model, ["alignment_temperature"], 0, low_open=True)
    check_range(model, ["embedding_l2", "attention_cost", "lambda_d0", "lambda_adv", "lambda_s", "lambda_align",
                        "grl_coefficient", "adversarial_margin"], 0, meaning="a weight")
    check_range(model, ["modality_dropout", "dropout"], 0, 1, high_open=True, meaning="a rate")
    check_range(model, ["importance_floor"], 0, 1)
    for name, buckets in model.hash_buckets.items():
        if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 2:
            raise ConfigKeyError(f"hash_buckets.{name}", f"is {buckets!r}: it must be an integer >= 2 (hash buckets)")
