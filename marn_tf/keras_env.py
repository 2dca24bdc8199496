"""Makes every marn-tf process use Keras 2 (tf-keras) before TensorFlow is imported.

TensorFlow 2.21 ships Keras 3 as `tf.keras` unless `TF_USE_LEGACY_KERAS` is set when TensorFlow is
first imported; tensorflow-recommenders only works with Keras 2. The variable is read once, at
import, so it has to be set before anything imports TensorFlow: importing `marn_tf` does that, and
Beam worker processes inherit it from the environment.
"""
import os
import sys

_TRUE_VALUES = ("1", "true", "True")


class KerasVersionError(RuntimeError):
    """TensorFlow was imported with Keras 3 before marn_tf could select Keras 2."""


def ensure_legacy_keras() -> None:
    """Sets TF_USE_LEGACY_KERAS=1, or fails if TensorFlow already runs with Keras 3."""
    if "tensorflow" in sys.modules:
        if os.environ.get("TF_USE_LEGACY_KERAS") in _TRUE_VALUES:
            return
        raise KerasVersionError(
            "TensorFlow was imported before marn_tf with Keras 3 as tf.keras; marn-tf needs Keras 2 "
            "(tf-keras). Import marn_tf before tensorflow, or set TF_USE_LEGACY_KERAS=1 in the "
            "environment before starting Python."
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
