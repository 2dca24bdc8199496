"""Keras 2 is selected in every process, and a process that imported Keras 3 first is told what to do."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def run_python(code: str, env_legacy=None):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if env_legacy is not None:
        env["TF_USE_LEGACY_KERAS"] = env_legacy
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_importing_marn_tf_first_gives_keras_2():
    r = run_python("import marn_tf, tensorflow as tf; print(tf.keras.__name__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith("tf_keras.")  # Keras 3 would be keras.*


def test_tensorflow_imported_first_with_keras_3_fails_with_instructions():
    r = run_python("import tensorflow, marn_tf")
    assert r.returncode != 0
    assert "KerasVersionError" in r.stderr and "set TF_USE_LEGACY_KERAS=1" in r.stderr


def test_tensorflow_imported_first_with_the_variable_set_is_fine():
    r = run_python("import tensorflow as tf, marn_tf; print(tf.keras.__name__)", env_legacy="true")
    assert r.returncode == 0 and r.stdout.strip().startswith("tf_keras."), r.stderr
