"""``kedro run --pipelines=attr_contrast``: raw dataset -> attribute-embedding + contrastive result (paper 004)."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
