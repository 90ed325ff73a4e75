"""CVA-FPF end to end: ingest + the features its task needs + split + training shards + evaluation + report."""

from kedro.pipeline import Pipeline

from microexpr.dag.training import create_model_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return create_model_pipeline("cva_fpf")
