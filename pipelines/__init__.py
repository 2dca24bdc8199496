"""Apache Beam jobs that turn raw logs and an item catalog into TFRecords, vocabularies and a schema."""
import marn_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
