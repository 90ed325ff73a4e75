"""Runnable ``split`` pipeline (see :mod:`microexpr.dag.split`)."""

from kedro.pipeline import Pipeline

from microexpr.dag.split import create_split_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return create_split_pipeline()
