"""End to end: `kedro run --pipelines=mmnet` with the full-data model on (conf/test), then `microexpr predict`
on one of the run's raw clips, from the catalog and from the MLflow run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.test_kedro_runs import PROJECT, _env, kedro, latest

pytestmark = pytest.mark.slow


def predict(args: list[str], data_root: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "microexpr", "predict", *args]
    proc = subprocess.run(cmd, cwd=PROJECT, env=_env(data_root), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_mmnet_full_data_model_is_saved_logged_and_predicts(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=mmnet", "--params", "mmnet.final_model=true"], tmp_path)
    folder = latest(tmp_path, "06_models/mmnet/final_model")
    card = json.loads((folder / "card.json").read_text())
    metrics = json.loads(latest(tmp_path, "08_reporting/mmnet/metrics.json").read_text())
    assert card["model"] == "mmnet" and card["classes"] == metrics["classes"] and card["label_set"] == "emotion5"
    for ours, theirs in (("uf1", "uf1"), ("uar", "uar"), ("accuracy", "acc"), ("wf1", "wf1")):
        assert card["loso_metrics"][ours] == pytest.approx(metrics["selections"]["honest"][theirs])
    assert card["loso_metrics"]["selection"] == "honest" and card["loso_metrics"]["n_folds"] == 4
    assert card["trained_on"]["n_samples"] == 7 and card["full_data_training"]["epochs"] == 2  # conf/test
    assert card["model_config"]["image_size"] == 64 and card["preprocessing"]["key_frames"]["size"] == 64
    assert "workers" not in card["preprocessing"]["key_frames"] and card["versions"]["recipes"]["key_frames"] >= 1
    assert (folder / "weights.safetensors").stat().st_size == card["weights"]["bytes"]

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["microexpr"])
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert card["mlflow_run_id"] == parent["run_id"]
    client = mlflow.MlflowClient()
    logged = {a.path for a in client.list_artifacts(parent["run_id"], "mmnet/final_model")}
    assert logged == {"mmnet/final_model/card.json", "mmnet/final_model/weights.safetensors"}
    model_id = parent["tags.microexpr.mmnet.final_model_id"]
    assert client.get_logged_model(model_id).source_run_id == parent["run_id"]

    index = pd.read_parquet(latest(tmp_path, "03_primary/sample_index.parquet"))
    row = index.iloc[0]
    clip = Path(row["root"]) / row["clip_dir"]
    from_catalog = predict([str(clip), "--model", "mmnet", "--env", "test", "--out", str(tmp_path / "a")], tmp_path)
    assert "(spotted" in from_catalog.stdout and "weights: catalog mmnet.final_model" in from_catalog.stdout
    from_run = predict([str(clip), "--model", "mmnet", "--weights", f"runs:/{parent['run_id']}", "--out",
                        str(tmp_path / "b"), "--onset", str(row["onset"]), "--apex", str(row["apex"]),
                        "--offset", str(row["offset"])], tmp_path)
    assert "(given)" in from_run.stdout
    first, second = (json.loads((tmp_path / d / "prediction.json").read_text()) for d in ("a", "b"))
    assert first["weights_sha256"] == second["weights_sha256"] == card["weights"]["sha256"]
    assert set(first["probabilities"]) == set(card["classes"])
