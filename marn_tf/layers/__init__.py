"""MARN's Keras layers, one component per module (see ../shared/docs/MARN_SPEC.md)."""
