"""Every compared model (MICROEXPR_MODELS, default: every non-demonstration model) end to end, then the comparison."""

from kedro.pipeline import Pipeline

from microexpr.dag.compare import create_all_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return create_all_pipeline()
