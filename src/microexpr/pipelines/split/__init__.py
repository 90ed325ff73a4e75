"""``kedro run --pipelines=split``: sample index -> folds table (LOSO, MEGC2019, cross-dataset, hold-out)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
