"""MARN's Keras layers, one component per module (docs/model.md describes the components)."""
