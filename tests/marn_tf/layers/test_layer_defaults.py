"""A layer built with its own defaults is the model the config's defaults build: every layer argument that a
`model:` key sets has that key's default (they disagreed: ModalityProjection 256 wide against `units` 64)."""
import inspect

import pytest

from marn_tf.layers.double_discriminator import DoubleDiscriminator
from marn_tf.layers.item_encoder import ItemEncoder
from marn_tf.layers.modality_attention import ModalityAttention
from marn_tf.layers.modality_embedding import ModalityEmbeddings
from marn_tf.layers.modality_projection import ModalityProjection
from marn_tf.layers.target_attention import TargetAttention
from marn_tf.layers.text_cnn import TextCNN
from marn_tf.layers.user_interest import UserInterest
from marn_tf.model_config import ModelConfig

# (layer, argument) -> the `model:` key that sets it (models/network.py)
SET_BY_CONFIG = {
    (ModalityProjection, "units"): "units", (ModalityProjection, "common_units"): "common_units",
    (ModalityProjection, "normalize_inputs"): "normalize_modalities",
    (ModalityAttention, "gate"): "attention_gate", (ModalityAttention, "normalize"): "attention_normalize",
    (ModalityAttention, "context"): "attention_context", (ModalityAttention, "bias_initializer"): "attention_bias",
    (ModalityAttention, "unit_scale"): "attention_unit_scale", (ModalityAttention, "cost"): "attention_cost",
    (DoubleDiscriminator, "hidden_units"): "discriminator_hidden",
    (DoubleDiscriminator, "grl_coefficient"): "grl_coefficient",
    (DoubleDiscriminator, "normalize_weights"): "normalize_importance",
    (DoubleDiscriminator, "objective"): "adversarial_objective",
    (DoubleDiscriminator, "share_discriminator"): "share_discriminator",
    (DoubleDiscriminator, "importance_weighting"): "importance_weighting",
    (DoubleDiscriminator, "importance_floor"): "importance_floor",
    (DoubleDiscriminator, "alignment_items"): "alignment_items",
    (DoubleDiscriminator, "alignment_temperature"): "alignment_temperature",
    (DoubleDiscriminator, "margin"): "adversarial_margin",
    **{(ItemEncoder, key): key for key in (
        "units", "common_units", "attention_gate", "attention_normalize", "discriminator_hidden", "grl_coefficient",
        "normalize_importance", "modality_dropout", "normalize_modalities", "attention_context", "attention_bias",
        "invariant_residual", "attention_unit_scale", "attention_cost", "raw_units")},
    **{(ModalityEmbeddings, key): key for key in (
        "id_embedding_dim", "word_embedding_dim", "text_filters", "text_kernel_sizes", "statistic_embedding_dim",
        "embedding_l2")},
    (TextCNN, "filters"): "text_filters", (TextCNN, "kernel_sizes"): "text_kernel_sizes",
    (UserInterest, "sequence_encoder"): "sequence_encoder", (UserInterest, "units"): "gru_units",
    (UserInterest, "attention_hidden"): "attention_hidden", (UserInterest, "attention_normalize"):
        "target_attention_normalize", (UserInterest, "unroll"): "gru_unroll",
    (TargetAttention, "hidden_units"): "attention_hidden", (TargetAttention, "normalize"): "target_attention_normalize",
}


@pytest.mark.parametrize("layer, argument", sorted(SET_BY_CONFIG, key=lambda k: (k[0].__name__, k[1])),
                         ids=lambda value: getattr(value, "__name__", value))
def test_a_layer_default_is_the_config_default(layer, argument):
    default = inspect.signature(layer.__init__).parameters[argument].default
    key = SET_BY_CONFIG[(layer, argument)]
    want = getattr(ModelConfig(), key)  # as the config resolves it (the structure keys follow `variant`)
    assert (list(default) if isinstance(default, tuple) else default) == want, f"{layer.__name__}({argument}=...)"
