"""``kedro run --pipelines=preprocess``: sample index -> every model's features (cached by content)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
