"""marn-tf: Multimodal Adversarial Representation Network for CTR prediction on TensorFlow."""
from setuptools import find_packages, setup

# Direct dependencies, pinned to the verified stack (../shared/docs/STACK.md). The full resolved set
# lives in constraints.txt; install with `pip install -c constraints.txt -e .`.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",  # "tensorflow", never "tensorflow-cpu": tf-keras and tfrs require it
    "tf-keras==2.21.0",  # Keras 2 (tensorflow-recommenders refuses Keras 3)
    "tensorflow-recommenders==0.7.7",
    "tensorboard==2.21.0",
    "tensorflow-serving-api==2.21.0",
    "apache-beam==2.77.0",
    "tensorflow-hub==0.16.1",  # Beam's TensorFlow RunInference handler imports it
    "google-crc32c==1.9.0",  # WriteToTFRecord needs a crc32c implementation
    "pyarrow==25.0.1",
    "protobuf==6.33.6",
    "numpy==2.4.6",
    "PyYAML==6.0.3",
    "tqdm==4.70.1",
    "matplotlib==3.11.2",  # evaluation and run reports: PNG plots (Agg backend, no display)
]

setup(
    name="marn-tf",
    version="0.1.0",
    description="MARN (Multimodal Adversarial Representation Network) CTR model: Beam pipelines, "
    "Keras model, TF Serving export",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    # pipelines/ and export/ sit beside marn_tf/ in the source tree but install as marn_tf.pipelines and
    # marn_tf.export: the distribution owns one import name, never the generic `pipelines` or `export`.
    packages=find_packages(include=["marn_tf", "marn_tf.*"]) + ["marn_tf.pipelines", "marn_tf.export"],
    package_dir={"marn_tf.pipelines": "pipelines", "marn_tf.export": "export"},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest==9.2.0", "hypothesis==6.170.15"],
        "bench": ["deepctr==0.9.4"],  # the DIN/DIEN peer of benchmarks/train.py
    },
    entry_points={"console_scripts": ["marn=marn_tf.cli:main"]},
)
