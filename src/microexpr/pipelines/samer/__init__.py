"""``kedro run --pipelines=samer``: raw dataset -> SAMER LOSO result, tracked in MLflow and reported."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
