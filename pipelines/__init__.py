"""Apache Beam jobs that turn raw logs and an item catalog into TFRecords, vocabularies and a schema.

Installed as `marn_tf.pipelines` (setup.py's package_dir): import it under that name."""
