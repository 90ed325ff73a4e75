"""Pipelines derive from the model registry: one per registered model, and plain `kedro run` skips demo models."""

from __future__ import annotations

from pathlib import Path

from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from microexpr.models import available_models, task_class

PROJECT = Path(__file__).resolve().parents[2]


def test_every_model_pipeline_computes_its_task_features_and_default_skips_demos() -> None:
    bootstrap_project(PROJECT)
    names = set(pipelines)
    packaged = [m for m in available_models() if m in names]
    assert {"mmnet", "seam_demo"} <= set(packaged)
    for model in packaged:
        outputs = pipelines[model].all_outputs()
        assert set(task_class(model).features) <= outputs, model
        assert f"{model}.metrics" in outputs
    default = {n.name for n in pipelines["__default__"].nodes}
    assert "mmnet.evaluate" in default and "seam_demo.evaluate" not in default
    assert task_class("seam_demo").demonstration and not task_class("mmnet").demonstration
