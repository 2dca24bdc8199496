"""The MARN network as Keras functional models, built from the schema and the `model:` config.

Three parts, composed into the served network `lookup -> inference`:

* `lookup`: every string feature -> its vocabulary index (StringLookup over the pipeline's vocabulary
  files; OOV -> 0). Training runs it in the tf.data pipeline, in parallel and outside the compiled
  step (so the step can be XLA-compiled); the exported model carries it, so requests carry raw ids.
* `core`: indices -> outputs, the graph that trains.
* `inference`: the same layers (the same weights) in the graph that predicts: each distinct behaviour
  sequence of a batch is encoded once (`DistinctSequences`, when `model.deduplicate_sequences`), which a
  ranking request, one user's sequence with many candidates, gains most from. `Network.frozen()` gives
  the export's version, whose item tower is precomputed over the catalog (`PrecomputedItemTower`), and
  `Network.item_store()` the version without the item tower: the candidate's and behaviour items' tower
  outputs come with the request, from an item store, in place of item ids (`ProvidedItemTower`).

The two graphs are built by one function (`build_core`), so they differ only where said above;
`tests/marn_tf/models/test_network.py` checks that they score alike.

    candidate item index, behaviour item indices
        --ItemTower (item table + item encoder, once per unique item)--> rep_candidate, rep_behaviour[L]
        (with the schema's ITEM_CONTENT features, `pipeline.item_content: examples`, the tower reads the items'
        content from them and holds no table; `Schema.without_content_features()` builds the table version)
    candidate vector  q   = [rep_candidate, E(candidate's point-in-time counters)]
    behaviour vectors x_t = [rep_t, e^p_t],  e^p = E(type, time gap, point-in-time counters)
    interest u = UserInterest(q, x, mask)       GRU + target attention (AUGRU option; `raw_interest`: and DIN's)
    logit = MLP([u, q, E(user and context features)])                   (optional DCN cross layers first)

Inputs are picked by tag (`marn_tf.schema`), never by name. The core's outputs are

    "logit", "probability" [batch]; "modality_weights", "importance", "modality_mask" [batch, M] for the
    candidate item; "candidate_index" [batch]; and the discriminators' scalars (AUXILIARY_OUTPUTS).
"""
from __future__ import annotations

import dataclasses

import tensorflow as tf
import tensorflow_recommenders as tfrs

from marn_tf import schema as S
from marn_tf.config_loader import ConfigError
from marn_tf.layers.distinct_sequences import DistinctSequences
from marn_tf.layers.feature_embedding import FeatureEmbeddings
from marn_tf.layers.item_encoder import AUXILIARY_OUTPUTS
from marn_tf.layers.item_tower import ItemTower
from marn_tf.layers.precomputed_item_tower import PrecomputedItemTower
from marn_tf.layers.provided_item_tower import ProvidedItemTower
from marn_tf.layers.rate_offset import RateOffset
from marn_tf.layers.user_interest import UserInterest
from marn_tf.model_config import ModelConfig


@dataclasses.dataclass
class Network:
    lookup: tf.keras.Model  # raw features -> indices
    core: tf.keras.Model  # indices -> outputs: what trains
    inference: tf.keras.Model  # indices -> outputs: core's layers, predicting
    full: tf.keras.Model  # raw features -> outputs (lookup then inference), what is served
    schema: S.Schema
    config: ModelConfig

    @property
    def item_tower(self) -> ItemTower:
        return self.core.get_layer("item_tower")

    @property
    def modalities(self) -> list[str]:
        return self.item_tower.modalities

    def frozen(self) -> "Network":
        """This network for export: the same weights, with the item tower's outputs for every catalog item
        computed now and only gathered from then on. Freeze a network that is done training: the copy does not
        see later weight changes (the item tower's, that is; every other layer is shared)."""
        tower = PrecomputedItemTower.freeze(self.item_tower, name="precomputed_item_tower")
        inference = build_core(self.schema, self.config, trained=self.core, item_tower=tower)
        return dataclasses.replace(self, inference=inference, full=_full(self.lookup, inference, self.config))

    def item_store(self) -> "Network":
        """This network for serving from an item store: the same weights, with no item tower. `lookup` takes the
        request features except the item keys; `inference` and `full` take those plus the candidate's and behaviour
        items' tower outputs (`ProvidedItemTower.input_specs`), so the model holds nothing per item."""
        width = self.item_tower.encode(tf.zeros([1], tf.int32), training=False)["representation"].shape[-1]
        provided = ProvidedItemTower(int(width), len(self.modalities), name="provided_item_tower")
        inference = build_core(self.schema, self.config, trained=self.core, provided_items=provided)
        keys = {f.name for f in self.schema.features_with_tags(S.ITEM_KEY)}
        # the lookup of the features left: the item vocabulary's table stays out unless another feature uses it
        kept = [name for name in self.lookup.input if name not in keys]
        lookup = tf.keras.Model({name: self.lookup.input[name] for name in kept},
                                {name: self.lookup.output[name] for name in kept}, name="lookup_without_item_keys")
        raw = {name: tf.keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name) for name, t in lookup.input.items()}
        given = {name: tf.keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=name)
                 for name, spec in provided.input_specs(self.schema.sequence_length).items()}
        full = tf.keras.Model({**raw, **given}, inference({**lookup(raw), **given}),
                              name=f"{self.config.variant}_item_store")
        return dataclasses.replace(self, lookup=lookup, inference=inference, full=full)


def request_features(schema: S.Schema) -> list[S.FeatureSpec]:
    """The features a request carries: not the label, not metadata."""
    return [f for f in schema.features if S.LABEL not in f.tags and S.METADATA not in f.tags]


def _single(features: list[S.FeatureSpec], what: str) -> S.FeatureSpec:
    if len(features) != 1:
        raise S.SchemaError(f"the schema needs exactly one {what} feature, found {[f.name for f in features]}")
    return features[0]


def item_tower_config(schema: S.Schema, config: ModelConfig) -> dict:
    """The `ItemTower` config: which item table columns feed which modality, and their sizes."""
    table = schema.item_table
    id_fields = {c.name: schema.vocabularies[c.vocabulary].input_dim for c in schema.item_columns("id")}
    image = schema.item_columns("image")
    text = schema.item_columns("text")
    statistics = {c.name: c.cardinality for c in schema.item_columns("statistic")}
    embeddings = {
        "num_item_ids": table.num_with_id_embedding + 1, "id_fields": id_fields,
        "image_dim": image[0].shape[0] if image else 0,
        "word_vocabulary_size": schema.vocabularies[text[0].vocabulary].input_dim if text else 0,
        "statistics": statistics, "id_embedding_dim": config.id_embedding_dim,
        "word_embedding_dim": config.word_embedding_dim, "text_filters": config.text_filters,
        "text_kernel_sizes": config.text_kernel_sizes, "statistic_embedding_dim": config.statistic_embedding_dim,
        "embedding_l2": config.embedding_l2,
    }
    used = list(id_fields) + list(statistics)
    if image:
        used += [S.IMAGE_COLUMN, S.IMAGE_PRESENT_COLUMN]
    if text:
        used += [S.TITLE_COLUMN, S.TITLE_LENGTH_COLUMN]
    columns = {c.name: {"shape": list(c.shape), "dtype": c.dtype} for c in table.columns if c.name in used}
    encoder = {
        "embeddings": embeddings, "fusion": config.fusion, "discriminators": config.discriminators,
        "units": config.units, "common_units": config.common_units, "attention_gate": config.attention_gate,
        "attention_normalize": config.attention_normalize, "discriminator_hidden": config.discriminator_hidden,
        "grl_coefficient": config.grl_coefficient, "normalize_importance": config.normalize_importance,
        "modality_dropout": config.modality_dropout, "normalize_modalities": config.normalize_modalities,
        "attention_context": config.attention_context, "attention_bias": config.attention_bias,
        "invariant_residual": config.invariant_residual, "attention_unit_scale": config.attention_unit_scale,
        "attention_cost": config.attention_cost, "raw_path": config.raw_path,
        "raw_units": config.raw_units,
        "adversarial": {"objective": config.adversarial_objective, "share_discriminator": config.share_discriminator,
                        "importance_weighting": config.importance_weighting,
                        "importance_floor": config.importance_floor, "alignment_items": config.alignment_items,
                        "alignment_temperature": config.alignment_temperature,
                        "margin": config.adversarial_margin, "specific_probe": config.specific_probe},
    }
    num_items = schema.vocabularies[S.ITEM_VOCABULARY].input_dim
    return {"num_items": num_items, "columns": columns, "encoder": encoder, "deduplicate": config.deduplicate_items,
            "content_source": "examples" if schema.content_in_examples else "table"}


def build_lookup(schema: S.Schema, data_dir: str, hash_buckets: dict[str, int] | None = None) -> tf.keras.Model:
    """Raw request features -> the same features with every string replaced by its vocabulary index, or by its
    hash bucket for the features of `hash_buckets` (`model.hash_buckets`)."""
    from apache_beam.io.filesystems import FileSystems

    hash_buckets = hash_buckets or {}
    check_hashed_features(schema, hash_buckets)
    inputs = {f.name: tf.keras.Input(shape=f.shape, dtype=S.tf_dtype(f.dtype), name=f.name)
              for f in request_features(schema)}
    lookups, outputs = {}, {}
    for f in request_features(schema):
        if f.dtype != "string":
            outputs[f.name] = tf.keras.layers.Identity(name=f"{f.name}_passthrough")(inputs[f.name])
            continue
        if f.name in hash_buckets:
            outputs[f.name] = tf.keras.layers.Hashing(hash_buckets[f.name], name=f"{f.name}_hashing")(inputs[f.name])
            continue
        if f.vocabulary is None:
            raise S.SchemaError(f"string feature {f.name!r} has no vocabulary: the model cannot index it")
        if f.vocabulary not in lookups:  # features sharing a vocabulary share its table
            path = FileSystems.join(data_dir, schema.vocabularies[f.vocabulary].file)
            lookups[f.vocabulary] = tf.keras.layers.StringLookup(vocabulary=path, num_oov_indices=1,
                                                                 name=f"{f.vocabulary}_lookup")
        outputs[f.name] = lookups[f.vocabulary](inputs[f.name])
    return tf.keras.Model(inputs, outputs, name="lookup")


def check_hashed_features(schema: S.Schema, hash_buckets: dict[str, int]) -> None:
    """Only string user and context features can be hashed: an item key indexes the item table's rows."""
    hashable = [f.name for f in request_features(schema)
                if f.dtype == "string" and S.ITEM_KEY not in f.tags and (S.USER in f.tags or S.CONTEXT in f.tags)]
    wrong = [name for name in hash_buckets if name not in hashable]
    if wrong:
        raise ConfigError(f"model.hash_buckets names {wrong[0]!r}, which is not a string user or context feature of "
                          f"the schema (item keys index the item table and cannot be hashed); hashable here: "
                          f"{', '.join(hashable) or 'none'}")


def _feature_spec(schema: S.Schema, f: S.FeatureSpec, config: ModelConfig) -> dict:
    if S.RATE in f.tags:
        return {"kind": "rate"}
    if f.name in config.hash_buckets:
        return {"kind": "categorical", "rows": config.hash_buckets[f.name]}
    if f.vocabulary is not None:
        return {"kind": "categorical", "rows": schema.vocabularies[f.vocabulary].input_dim}
    if f.cardinality:
        return {"kind": "categorical", "rows": f.cardinality}
    return {"kind": "numeric"}


def build_network(schema: S.Schema, config: ModelConfig, data_dir: str) -> Network:
    """The lookup, training (`core`), inference and full models; `data_dir` is the pipeline output holding the
    vocabulary files."""
    lookup = build_lookup(schema, data_dir, config.hash_buckets)
    core = build_core(schema, config)
    inference = build_core(schema, config, trained=core)
    return Network(lookup, core, inference, _full(lookup, inference, config), schema, config)


def _full(lookup: tf.keras.Model, inference: tf.keras.Model, config: ModelConfig) -> tf.keras.Model:
    raw = {name: tf.keras.Input(shape=t.shape[1:], dtype=t.dtype, name=name) for name, t in lookup.input.items()}
    return tf.keras.Model(raw, inference(lookup(raw)), name=f"{config.variant}")


def build_core(schema: S.Schema, config: ModelConfig, trained: tf.keras.Model | None = None,
               item_tower: tf.keras.layers.Layer | None = None,
               provided_items: ProvidedItemTower | None = None) -> tf.keras.Model:
    """Indexed features -> outputs: the training graph, or with `trained` (a training graph) the inference graph
    over its layers, with `item_tower` in place of its item tower when given. With `provided_items` (and
    `trained`), the inference graph has no item tower and no item key inputs: the tower's outputs are inputs (named by
    `provided_items.input_specs`), and the outputs have no "candidate_index"."""
    inference = trained is not None

    def layer(name: str, make):  # the inference graph reuses the trained layers, and so their weights
        return trained.get_layer(name) if inference else make(name=name)

    item_keys = {f.name for f in schema.features_with_tags(S.ITEM_KEY)} if provided_items is not None else set()
    inputs = {f.name: tf.keras.Input(shape=f.shape, dtype=tf.int64 if f.dtype == "string" else S.tf_dtype(f.dtype),
                                     name=f.name) for f in request_features(schema) if f.name not in item_keys}
    candidate = _single(schema.features_with_tags(S.CANDIDATE, S.ITEM_KEY), "candidate item key")
    behaviour = _single(schema.features_with_tags(S.BEHAVIOUR, S.ITEM_KEY), "behaviour item key")
    length = _single(schema.features_with_tags(S.SEQUENCE_LENGTH), "sequence length")
    if candidate.vocabulary != behaviour.vocabulary:
        raise S.SchemaError(f"{candidate.name!r} and {behaviour.name!r} must share the item vocabulary")
    candidate_index = inputs.get(candidate.name)
    behaviour_names = [f.name for f in schema.features_with_tags(S.BEHAVIOUR) if f.name in inputs]
    sequences, rows = {name: inputs[name] for name in behaviour_names}, []
    if inference and config.deduplicate_sequences and provided_items is None:
        # Everything computed from the behaviour sequence alone runs once per distinct sequence: `sequences`
        # holds one row per distinct sequence, `rows` says which one each batch row has.
        first, position = DistinctSequences(name="distinct_sequences")(list(sequences.values()))
        sequences, rows = {name: tf.gather(value, first) for name, value in sequences.items()}, [position]
    sequence_mask = tf.sequence_mask(sequences[length.name], schema.sequence_length, dtype=tf.float32)

    if provided_items is not None:
        given = {name: tf.keras.Input(shape=spec.shape[1:], dtype=spec.dtype, name=name)
                 for name, spec in provided_items.input_specs(schema.sequence_length).items()}
        inputs.update(given)
        items = provided_items(given)
    else:
        tower = item_tower or layer("item_tower",
                                    lambda name: ItemTower(**item_tower_config(schema, config), name=name))
        content = []
        if schema.content_in_examples and item_tower is None:  # the items' content comes with the examples
            content = [{column: inputs[S.candidate_content_feature(column)] for column in tower.columns},
                       {column: sequences[S.behaviour_content_feature(column)] for column in tower.columns}]
        items = tower([candidate_index, sequences[behaviour.name], sequence_mask, *content])

    def embed(features: list[S.FeatureSpec], name: str, dim: int, values=inputs):
        specs = {f.name: _feature_spec(schema, f, config) for f in features}
        if not specs:
            return None
        return layer(name, lambda name: FeatureEmbeddings(specs, dim, config.embedding_l2, name=name))(values)

    candidate_extra = embed([f for f in schema.features_with_tags(S.CANDIDATE)
                             if S.ITEM_KEY not in f.tags and S.ITEM_CONTENT not in f.tags],
                            "candidate_occurrence", config.property_embedding_dim)
    behaviour_extra = embed([f for f in schema.features_with_tags(S.BEHAVIOUR)
                             if S.PROPERTY in f.tags or S.STATISTIC in f.tags], "behaviour_property",
                            config.property_embedding_dim, values=sequences)
    user_context = embed(schema.features_with_tags(S.USER) + schema.features_with_tags(S.CONTEXT), "user_context",
                         config.context_embedding_dim)
    query = items["candidate"] if candidate_extra is None else tf.concat([items["candidate"], candidate_extra], -1)
    sequence = items["behaviour"] if behaviour_extra is None else tf.concat([items["behaviour"], behaviour_extra], -1)

    interest, _ = layer("user_interest", lambda name: UserInterest(
        config.sequence_encoder, config.gru_units, config.attention_hidden, config.target_attention_normalize,
        unroll=config.gru_unroll, raw_attention=config.raw_interest and config.sequence_encoder != "none",
        name=name))([query, sequence, sequence_mask] + rows)
    hidden = tf.concat([interest, query] + ([user_context] if user_context is not None else []), axis=-1)
    if config.head == "dcn":
        x0 = hidden
        for i in range(config.cross_layers):
            hidden = layer(f"cross_{i}", lambda name: tfrs.layers.dcn.Cross(name=name))(x0, hidden)
    for i, units in enumerate(config.hidden_units):
        hidden = layer(f"mlp_{i}", lambda name: tf.keras.layers.Dense(units, activation="relu", name=name))(hidden)
        if config.dropout:
            hidden = layer(f"mlp_dropout_{i}", lambda name: tf.keras.layers.Dropout(config.dropout, name=name))(hidden)
    logit = tf.squeeze(layer("logit", lambda name: tf.keras.layers.Dense(1, dtype="float32", name=name))(hidden), -1)
    rates = [f.name for f in schema.features_with_tags(S.RATE)]
    if config.rate_offset and rates:  # the deep part learns on top of the floor's ranking
        offset = layer("rate_offset", lambda name: RateOffset(rates, dtype="float32", name=name))
        logit += offset({name: inputs[name] for name in rates})
    outputs = {
        "logit": logit,
        "probability": tf.keras.layers.Activation("sigmoid", dtype="float32", name="probability")(logit),
        "modality_weights": tf.cast(items["modality_weights"], tf.float32),
        "importance": tf.cast(items["importance"], tf.float32),
        "modality_mask": tf.cast(items["modality_mask"], tf.float32),
        "candidate_index": candidate_index,
        **{key: items[key] for key in AUXILIARY_OUTPUTS},
    }
    if provided_items is not None:  # a request from the item store names no item index
        del outputs["candidate_index"]
    return tf.keras.Model(inputs, outputs, name=f"{config.variant}_{'inference' if inference else 'core'}")
