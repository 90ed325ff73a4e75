"""``kedro run --pipelines=seam_demo``: the training seam's demonstration model end to end."""

from microexpr.pipelines.seam_demo.pipeline import create_pipeline

__all__ = ["create_pipeline"]
