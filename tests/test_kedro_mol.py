"""MOL end to end through `kedro run --pipelines=mol --env test`: the mol_clips feature, sub-clip training with flow
and landmark targets, video-level predictions, flow EPE and landmark NME in the metrics, MLflow and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_kedro_runs import _mlflow_runs, kedro, latest

pytestmark = pytest.mark.slow


def test_mol_end_to_end_reports_epe_and_nme_per_fold_and_pooled(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=mol"], tmp_path)
    assert (tmp_path / "04_feature/mol_clips").is_dir() and not (tmp_path / "04_feature/key_frames").exists()
    predictions = pd.read_parquet(latest(tmp_path, "07_model_output/mol/predictions.parquet"))
    honest = predictions[predictions["selection"] == "honest"]
    assert set(predictions["selection"]) == {"honest", "oracle_epoch"}
    assert honest["sample_id"].is_unique and len(honest) > 0  # one row per video, whatever its sub-clip count
    for column in ("aux_epe", "aux_nme"):
        assert np.isfinite(honest[column]).all() and (honest[column] > 0).all()
    history = pd.read_parquet(latest(tmp_path, "07_model_output/mol/training_history.parquet"))
    for column in ("train_loss_ce", "train_loss_flow", "train_loss_landmarks"):
        assert history[column].notna().all(), column
    metrics = json.loads(latest(tmp_path, "08_reporting/mol/metrics.json").read_text())
    auxiliary = metrics["selections"]["honest"]["auxiliary"]
    assert set(auxiliary) == {"epe", "nme"}
    assert auxiliary["epe"]["mean"] == pytest.approx(honest["aux_epe"].mean())
    assert set(auxiliary["nme"]["per_fold"]) == set(honest["fold"])
    report = latest(tmp_path, "08_reporting/mol/report.md").read_text()
    assert "epe" in report and "nme" in report
    assert latest(tmp_path, "08_reporting/mol/task_figures").joinpath("flow_landmarks.png").stat().st_size > 1000

    runs = _mlflow_runs(tmp_path)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["metrics.mol.honest.aux.epe"] == pytest.approx(auxiliary["epe"]["mean"])
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert children["metrics.aux.nme"].notna().all() and children["metrics.train_loss_flow"].notna().all()
