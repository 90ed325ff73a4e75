"""Runnable ``preprocess`` pipeline: every feature of every model, plus exclusions and a reuse summary.

It starts from the latest versioned ``sample_index`` (run ``ingest`` first, or ``kedro run --pipelines=ingest,preprocess``).
"""

from kedro.pipeline import Pipeline

from microexpr.dag.preprocess import create_preprocess_pipeline, create_preprocess_reporting


def create_pipeline(**kwargs) -> Pipeline:
    return create_preprocess_pipeline() + create_preprocess_reporting()
