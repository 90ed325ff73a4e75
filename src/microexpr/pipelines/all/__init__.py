"""``kedro run --pipelines=all``: every compared model on the configured dataset, then the comparison."""

from microexpr.pipelines.all.pipeline import create_pipeline

__all__ = ["create_pipeline"]
