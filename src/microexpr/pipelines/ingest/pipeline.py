"""Runnable ``ingest`` pipeline (see :mod:`microexpr.dag.ingest`)."""

from kedro.pipeline import Pipeline

from microexpr.dag.ingest import create_ingest_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return create_ingest_pipeline()
