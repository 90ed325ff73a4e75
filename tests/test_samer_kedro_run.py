"""End-to-end ``kedro run --pipelines=samer --env test``: the samer_inputs feature, both selections, every SAMER loss
term per epoch, its report figures and the MLflow parent and fold runs (real CLI, tiny synthetic set)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_kedro_runs import _mlflow_runs, kedro, latest

pytestmark = pytest.mark.slow


def test_samer_end_to_end_tracks_its_loss_terms_figures_and_runs(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=samer"], tmp_path)
    # the pipeline computes exactly the feature SAMER's task names
    assert (tmp_path / "04_feature/samer_inputs").is_dir()
    assert not (tmp_path / "04_feature/key_frames").exists() and not (tmp_path / "04_feature/mol_clips").exists()
    predictions = pd.read_parquet(latest(tmp_path, "07_model_output/samer/predictions.parquet"))
    folds = pd.read_parquet(latest(tmp_path, "05_model_input/folds.parquet"))
    assert set(predictions["selection"]) == {"honest", "oracle_epoch"}
    honest = predictions[predictions["selection"] == "honest"]
    assert len(honest) == folds["n_test"].sum() == 7 and honest["epoch"].eq(2).all()
    history = pd.read_parquet(latest(tmp_path, "07_model_output/samer/training_history.parquet"))
    for column in ("train_loss_ce_eyes", "train_loss_ce_mouth", "train_loss_wscl", "lr"):
        assert history[column].notna().all() and np.isfinite(history[column]).all(), column
    figures = latest(tmp_path, "08_reporting/samer/task_figures")
    for stem in ("au_cam", "awm_weights", "tsne", "tsne_au"):  # tsne_au: by the annotated AUs
        assert figures.joinpath(f"{stem}.png").stat().st_size > 1000, stem
    report = latest(tmp_path, "08_reporting/samer/report.md").read_text()
    assert "au_cam.png" in report and "oracle_epoch" in report
    metrics = json.loads(latest(tmp_path, "08_reporting/samer/metrics.json").read_text())
    assert metrics["tags"] == {"init": "none", "wscl_self_pair": "exclude"} and metrics["leak"] is None
    assert "- **init:** none" in report  # the initialisation is stated in the report

    import mlflow

    runs = _mlflow_runs(tmp_path)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["tags.mlflow.runName"].startswith("samer · synthetic · emotion5 · honest")
    assert 0.0 <= parent["metrics.samer.honest.uf1"] <= 1.0 and 0.0 <= parent["metrics.samer.oracle_epoch.uar"] <= 1.0
    assert parent["params.samer.task.self_pair"] == "exclude" and parent["params.samer.task.pretrained"] == "none"
    assert parent["tags.microexpr.samer.init"] == "none"
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert sorted(children["tags.mlflow.runName"]) == [f"samer.{f}" for f in sorted(folds["fold"])]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    wscl = client.get_metric_history(children.iloc[0]["run_id"], "train_loss_wscl")
    assert [m.step for m in wscl] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(parent["run_id"], "samer")}
    assert {"samer/au_cam.png", "samer/tsne.png", "samer/report.md", "samer/predictions.csv"} <= artifacts
