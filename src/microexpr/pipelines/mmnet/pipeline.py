"""MMNet end to end: ingest + the key-frame features it consumes + split + training shards + evaluation + report."""

from kedro.pipeline import Pipeline

from microexpr.dag.ingest import create_ingest_pipeline
from microexpr.dag.preprocess import create_preprocess_pipeline
from microexpr.dag.split import create_split_pipeline
from microexpr.dag.training import create_training_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return (
        create_ingest_pipeline()
        + create_preprocess_pipeline(features=("key_frames",))
        + create_split_pipeline()
        + create_training_pipeline("mmnet", feature="key_frames", input_kind="key_frames")
    )
