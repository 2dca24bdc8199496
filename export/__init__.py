"""Serving: SavedModels for TF Serving (`marn export`, `marn check-export`), batch scoring, request clients."""
