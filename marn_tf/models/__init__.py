"""MARN and its ablation variants, built from the schema (`network.py`), and the training model (`marn_model.py`)."""
