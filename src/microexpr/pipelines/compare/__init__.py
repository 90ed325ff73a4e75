"""``kedro run --pipelines=compare``: the comparison rebuilt from the stored prediction tables, without training."""

from microexpr.pipelines.compare.pipeline import create_pipeline

__all__ = ["create_pipeline"]
