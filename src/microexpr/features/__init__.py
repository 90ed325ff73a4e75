"""Per-clip feature recipes run by the feature store (see recipes.py)."""
