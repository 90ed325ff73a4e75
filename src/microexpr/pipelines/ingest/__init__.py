"""``kedro run --pipelines=ingest``: raw dataset folder -> sample index."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
