"""Project pipelines: one folder per runnable name under ``pipelines/`` (Kedro 1.7 imports only the ones asked for)."""
from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline by name; ``__default__`` (plain ``kedro run``) is all of them except demonstration models and
    ``compare`` (``all`` already ends with the comparison, from the models it trained)."""
    pipelines = find_pipelines(raise_errors=True)
    from microexpr.models import available_models, task_class

    left_out = {name for name in available_models() if task_class(name).demonstration} | {"compare"}
    pipelines["__default__"] = sum((p for name, p in pipelines.items() if name not in left_out), Pipeline([]))
    return pipelines
