"""Serving: SavedModels for TF Serving (`marn export`, `marn check-export`), batch scoring, request clients.

Installed as `marn_tf.export` (setup.py's package_dir): import it under that name."""
