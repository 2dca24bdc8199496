"""marn-tf: the MARN click-through-rate model (Keras), its data contract and command line."""
from marn_tf.keras_env import ensure_legacy_keras

ensure_legacy_keras()

__version__ = "0.1.0"
