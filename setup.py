"""marn-tf: Multimodal Adversarial Representation Network for CTR prediction on TensorFlow."""
from setuptools import find_packages, setup

# Direct dependencies as compatible ranges around the tested stack, so that marn-tf installs beside other
# packages. constraints.txt holds the exact resolved set the tests run with (`make` installs it):
#     pip install -c constraints.txt -e .
INSTALL_REQUIRES = [
    # TensorFlow, tf-keras, TensorBoard and the serving API release together: one minor line.
    "tensorflow~=2.21.0",  # "tensorflow", never "tensorflow-cpu": tf-keras and tfrs require it
    "tf-keras~=2.21.0",  # Keras 2 (tensorflow-recommenders refuses Keras 3)
    "tensorboard~=2.21.0",
    "tensorflow-serving-api~=2.21.0",
    "tensorflow-recommenders~=0.7.7",
    "apache-beam>=2.77,<3",
    "tensorflow-hub~=0.16.1",  # Beam's TensorFlow RunInference handler imports it
    "setuptools>=64,<81",  # tensorflow-hub imports pkg_resources, which setuptools 81 drops and Python 3.12 lacks
    "google-crc32c~=1.9",  # WriteToTFRecord needs a crc32c implementation
    "grpcio~=1.85",  # the gRPC serving client
    "pyarrow~=25.0",
    "protobuf~=6.33",
    "numpy~=2.4",
    "PyYAML~=6.0",
    "tqdm~=4.70",
    "matplotlib~=3.11",  # evaluation and run reports: PNG plots (Agg backend, no display)
]

LONG_DESCRIPTION = """\
marn-tf is a TensorFlow/Keras implementation of MARN (Multimodal Adversarial Representation Network, Li et al.,
WWW 2020), a click-through-rate model that learns item representations from several modalities (IDs, an image
vector, title text, catalog counters): a modality-specific part weighted by attention and a modality-invariant
part learned adversarially. It comes with an Apache Beam pipeline from raw event logs to TFRecords, training on
one device or distributed, evaluation, versioned SavedModels for TF Serving, batch scoring, and `marn run`, which
chains these stages from one YAML config and writes a results report. See the repository's README for the two
commands that run it end to end.
"""

setup(
    name="marn-tf",
    version="0.1.0",
    description="MARN (Multimodal Adversarial Representation Network) CTR model: Beam pipelines, "
    "Keras model, TF Serving export",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    # The paper the model implements (the repository publishes no address of its own).
    project_urls={"Paper": "https://arxiv.org/abs/2003.07162"},
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.11,<3.13",
    # pipelines/ and export/ sit beside marn_tf/ in the source tree but install as marn_tf.pipelines and
    # marn_tf.export: the distribution owns one import name, never the generic `pipelines` or `export`.
    packages=find_packages(include=["marn_tf", "marn_tf.*"]) + ["marn_tf.pipelines", "marn_tf.export"],
    package_dir={"marn_tf.pipelines": "pipelines", "marn_tf.export": "export"},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest~=9.2", "hypothesis~=6.170"],
        "bench": ["deepctr~=0.9.4"],  # the DIN/DIEN peer of benchmarks/train.py
    },
    entry_points={"console_scripts": ["marn=marn_tf.cli:main"]},
)
