"""The leaderboard, paired tests, report and MEGC2019 exports from each model's newest stored results."""

from kedro.pipeline import Pipeline

from microexpr.dag.compare import create_compare_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return create_compare_pipeline()
