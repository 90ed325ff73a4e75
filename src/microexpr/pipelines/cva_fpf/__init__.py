"""``kedro run --pipelines=cva_fpf``: raw dataset -> CVA-FPF LOSO result, tracked in MLflow and reported."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
