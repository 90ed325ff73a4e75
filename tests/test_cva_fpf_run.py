"""``kedro run --pipelines=cva_fpf`` end to end through ``conf/test`` with the paper's leaky AU input
(``au_source=annotation``): the au_leak label reaches the metrics and the MLflow run name, both selections are
reported, the task's figures are drawn. (The honest default is trained by the contract and model tests.)"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.test_kedro_runs import _mlflow_runs, kedro, latest

pytestmark = pytest.mark.slow


def test_cva_fpf_end_to_end_labels_the_au_leak(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=cva_fpf", "--params", "cva_fpf.task.au_source=annotation"], tmp_path)
    predictions = pd.read_parquet(latest(tmp_path, "07_model_output/cva_fpf/predictions.parquet"))
    assert set(predictions["selection"]) == {"honest", "oracle_epoch"}
    assert (predictions["selection"] == "honest").sum() == 7  # every kept sample of conf/test tested once
    metrics = json.loads(latest(tmp_path, "08_reporting/cva_fpf/metrics.json").read_text())
    assert metrics["leak"] == "au_leak" and metrics["tags"] == {"au_source": "annotation"}
    # no AU head under annotation: no per-AU detections anywhere (predicted: tests/models/test_cva_fpf.py)
    assert all(m["auxiliary_detections"] == {} for m in metrics["selections"].values())
    assert not [c for c in predictions.columns if c.startswith(("auxpred_", "auxtrue_"))]
    assert "Auxiliary detections" not in latest(tmp_path, "08_reporting/cva_fpf/report.md").read_text()
    assert latest(tmp_path, "08_reporting/cva_fpf/task_figures").joinpath("vertical_attention.png").stat().st_size > 1000
    runs = _mlflow_runs(tmp_path)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert "au_leak" in parent["tags.mlflow.runName"]
    assert 0.0 <= parent["metrics.cva_fpf.honest.uf1"] <= 1.0
