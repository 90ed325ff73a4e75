"""End-to-end ``kedro run`` tests on a tiny synthetic set through ``conf/test`` (real CLI, real MLflow sqlite store).

Each test runs the project's own CLI in a subprocess with its data under a pytest tmp folder
(``MICROEXPR_DATA_ROOT``) and its own MLflow store, so nothing touches the working tree's data/ or mlflow.db.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PROJECT = Path(__file__).resolve().parents[1]
GOLDEN = PROJECT / "tests" / "golden" / "mmnet_conf_test_predictions.csv"
FACES = Path(os.environ.get("MICROEXPR_FACES", PROJECT.parent / "shared" / "faces" / "london"))

pytestmark = pytest.mark.slow


def _env(data_root: Path, **extra: str) -> dict[str, str]:
    if not FACES.is_dir():
        raise AssertionError(
            f"face photographs not found at {FACES}: set MICROEXPR_FACES to the London set (docs/datasets.md)"
        )
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MICROEXPR_DATA_ROOT": str(data_root),
           "MLFLOW_TRACKING_URI": f"sqlite:///{data_root}/mlflow.db", "MICROEXPR_FACES": str(FACES),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.update(extra)
    return env


def kedro(args: list[str], data_root: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``kedro <args> --env test`` in the project root; fail with the tail of its log."""
    cmd = [sys.executable, "-m", "kedro", *args, "--env", "test"]
    proc = subprocess.run(cmd, cwd=PROJECT, env=_env(data_root, **env), capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def latest(data_root: Path, pattern: str) -> Path:
    """Newest version of a versioned catalog file (``<file>/<timestamp>/<file>``)."""
    matches = sorted(glob.glob(str(data_root / pattern / "*" / Path(pattern).name)))
    assert matches, f"no saved version of {pattern} under {data_root}"
    return Path(matches[-1])


def test_ingest_writes_versioned_index_and_exclusions(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=ingest"], tmp_path)
    index = pd.read_parquet(latest(tmp_path, "03_primary/sample_index.parquet"))
    exclusions = pd.read_csv(latest(tmp_path, "03_primary/sample_exclusions.csv"))
    manifest = pd.read_excel(tmp_path / "01_raw/synthetic/CASME2-coding-20140508.xlsx")
    # conf/test: 4 subjects x 2 clips, one clip written with an empty apex cell (a real CASME II quirk)
    assert len(manifest) == 8
    assert len(index) + len(exclusions) == len(manifest)
    assert exclusions["reason_code"].tolist() == ["missing_apex"]
    assert index["fold_subject"].nunique() == 4
    assert index["fold_subject"].str.startswith("synthetic/sub").all()
    assert (index["frame_numbers"].map(len) == index["n_frames"]).all()
    assert {"content_hash", "label", "label_id", "aus"} <= set(index.columns)


def _mlflow_runs(data_root: Path) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{data_root}/mlflow.db")
    return mlflow.search_runs(experiment_names=["microexpr"])


def test_mmnet_end_to_end_tracks_parent_and_fold_runs(tmp_path: Path) -> None:
    # The golden table was written with 2 OpenMP threads; 1 thread sums in another order (scores move ~7e-5).
    kedro(["run", "--pipelines=mmnet"], tmp_path, OMP_NUM_THREADS="2")
    predictions = pd.read_parquet(latest(tmp_path, "07_model_output/mmnet/predictions.parquet"))
    folds = pd.read_parquet(latest(tmp_path, "05_model_input/folds.parquet"))
    assert set(predictions["selection"]) == {"honest", "oracle_epoch"}
    honest = predictions[predictions["selection"] == "honest"]
    assert len(honest) == folds["n_test"].sum() == 7  # every kept sample tested exactly once
    assert honest["epoch"].eq(2).all()  # honest = the last epoch of the fixed schedule (conf/test: 2)
    assert latest(tmp_path, "08_reporting/mmnet/report.md").read_text().count("oracle_epoch") > 0
    assert latest(tmp_path, "08_reporting/mmnet/confusion_honest.png").stat().st_size > 1000
    assert latest(tmp_path, "08_reporting/mmnet/task_figures").joinpath("attention_overlay.png").stat().st_size > 1000
    assert_same_predictions_as_golden(predictions)

    runs = _mlflow_runs(tmp_path)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1
    parent = parents.iloc[0]
    assert parent["tags.mlflow.runName"] == "mmnet · synthetic · emotion5 · honest"
    assert 0.0 <= parent["metrics.mmnet.honest.uf1"] <= 1.0
    assert 0.0 <= parent["metrics.mmnet.oracle_epoch.uf1"] <= 1.0
    assert parent["params.mmnet.training.optimizer.lr"] == "0.0008"  # flattened parameters
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert sorted(children["tags.mlflow.runName"]) == [f"mmnet.{f}" for f in sorted(folds["fold"])]
    assert children["metrics.train_loss"].notna().all()

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    history = client.get_metric_history(children.iloc[0]["run_id"], "train_loss")
    assert [m.step for m in history] == [1, 2]  # one point per epoch
    fold_metric_names = set(client.get_run(children.iloc[0]["run_id"]).data.metrics)
    assert {"train_loss", "train_loss_ce", "train_acc", "lr", "epoch_seconds", "test_acc"} <= fold_metric_names
    artifacts = {a.path for a in client.list_artifacts(parent["run_id"], "mmnet")}
    assert {"mmnet/predictions.csv", "mmnet/report.md", "mmnet/confusion_honest.png",
            "mmnet/per_class_report.csv", "mmnet/attention_overlay.png", "mmnet/training_curves.png"} <= artifacts
    run_notebook_against(tmp_path)


def assert_same_predictions_as_golden(predictions: pd.DataFrame) -> None:
    """MMNet's conf/test predictions equal the stored table (tests/golden/README.md): same labels, scores ±1e-5."""
    golden = pd.read_csv(GOLDEN)
    key = ["selection", "sample_id"]
    ours = predictions.sort_values(key).reset_index(drop=True)
    assert list(ours.columns) == list(golden.columns)
    assert ours[key + ["fold", "epoch", "y_true", "y_pred"]].equals(golden[key + ["fold", "epoch", "y_true", "y_pred"]])
    scores = [c for c in golden.columns if c.startswith("score_")]
    difference = (ours[scores].to_numpy(dtype=float) - golden[scores].to_numpy(dtype=float))
    assert abs(difference).max() <= 1e-5, abs(difference).max()


def notebook_namespace(data_root: Path) -> dict:
    """Execute notebooks/compare_runs.ipynb's code cells on this run's MLflow store (Agg backend); return their
    variables."""
    import matplotlib

    matplotlib.use("Agg")
    cells = json.loads((PROJECT / "notebooks" / "compare_runs.ipynb").read_text())["cells"]
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{data_root}/mlflow.db"
    namespace: dict = {}
    try:
        for cell in cells:
            if cell["cell_type"] == "code":
                exec("".join(cell["source"]), namespace)  # noqa: S102 - our own notebook
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return namespace


def run_notebook_against(data_root: Path) -> None:
    """The notebook runs on this run's store and shows its one run and four folds."""
    namespace = notebook_namespace(data_root)
    assert len(namespace["table"]) == 1 and 0 <= namespace["table"]["honest uf1"].iloc[0] <= 1
    assert len(namespace["folds"]) == 4


def _fold_files(data_root: Path) -> list[str]:
    return glob.glob(str(data_root / "07_model_output/mmnet/folds/shard_*/*.npz"))


def test_one_shard_alone_then_the_aggregate(tmp_path: Path) -> None:
    """Cluster mode: inputs first, then each shard as its own `kedro run --namespaces`, then the aggregation."""
    kedro(["run", "--pipelines=mmnet", "--to-nodes=mmnet.build_model_input,make_folds"], tmp_path)
    for shard in range(4):
        kedro(["run", "--pipelines=mmnet", f"--namespaces=mmnet.shard_{shard}"], tmp_path)
    assert len(_fold_files(tmp_path)) == 4
    kedro(["run", "--pipelines=mmnet", "--from-nodes=mmnet.collect_predictions"], tmp_path)
    metrics = latest(tmp_path, "08_reporting/mmnet/metrics.json").read_text()
    assert '"primary_selection": "honest"' in metrics


def test_preprocess_reuses_features_and_recomputes_on_parameter_change(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=ingest"], tmp_path)
    kedro(["run", "--pipelines=preprocess"], tmp_path)
    kedro(["run", "--pipelines=preprocess"], tmp_path)
    kedro(["run", "--pipelines=preprocess", "--params", "preprocess.flow_onset_apex.size=96"], tmp_path)
    summaries = [json.loads(p.read_text()) for p in sorted(
        Path(p) for p in glob.glob(str(tmp_path / "04_feature/preprocess_summary.json/*/preprocess_summary.json"))
    )]
    first, second, third = summaries
    n = first["face_alignment"]["ok"]
    assert n == 7 and all(first[f]["computed"] == n for f in first)
    assert all(second[f]["computed"] == 0 and second[f]["reused"] == n for f in second)
    assert third["flow_onset_apex"]["computed"] == n  # the changed feature only
    assert all(third[f]["computed"] == 0 for f in third if f != "flow_onset_apex")
    index = pd.read_parquet(latest(tmp_path, "03_primary/sample_index.parquet"))
    assert len(index) == n


def test_holdout_with_repeats_reports_the_mean_over_repeats(tmp_path: Path) -> None:
    """Repeated hold-out splits test the same samples again; evaluation must take them once per repeat."""
    kedro(["run", "--pipelines=mmnet", "--params", "split.protocol=holdout"], tmp_path)
    folds = pd.read_parquet(latest(tmp_path, "05_model_input/folds.parquet"))
    metrics = json.loads(latest(tmp_path, "08_reporting/mmnet/metrics.json").read_text())
    honest = metrics["selections"]["honest"]
    assert honest["repeated_splits"] is True
    assert honest["fold_summary"]["n_folds"] == len(folds) == 5
    assert honest["n_samples"] > honest["n_distinct_samples"]
    report = latest(tmp_path, "08_reporting/mmnet/report.md").read_text()
    assert "Repeated hold-out splits" in report and "accuracy (mean ± std)" in report


def test_seam_demo_trains_a_target_an_auxiliary_loss_and_a_training_only_input_end_to_end(tmp_path: Path) -> None:
    """The seam's demonstration model through `kedro run`: two features, a flow target, the AU vector as a
    training-only input, three named loss terms, two parameter groups, a task figure, both selections, MLflow."""
    kedro(["run", "--pipelines=seam_demo"], tmp_path)
    # the model pipeline computes exactly the features its task names
    assert (tmp_path / "04_feature/flow_onset_apex").is_dir() and (tmp_path / "04_feature/key_frames").is_dir()
    assert not (tmp_path / "04_feature/mol_clips").exists() and not (tmp_path / "04_feature/attr_clips").exists()
    predictions = pd.read_parquet(latest(tmp_path, "07_model_output/seam_demo/predictions.parquet"))
    assert set(predictions["selection"]) == {"honest", "oracle_epoch"}
    assert (predictions["selection"] == "honest").sum() == 7
    history = pd.read_parquet(latest(tmp_path, "07_model_output/seam_demo/training_history.parquet"))
    for column in ("train_loss_ce", "train_loss_flow", "train_loss_align", "lr", "lr_au_encoder"):
        assert history[column].notna().all(), column
    assert (history["lr_au_encoder"] < history["lr"]).all()  # its own parameter group at au_lr_scale x lr
    assert latest(tmp_path, "08_reporting/seam_demo/task_figures").joinpath("flow_prediction.png").stat().st_size > 1000
    report = latest(tmp_path, "08_reporting/seam_demo/report.md").read_text()
    assert "flow_prediction.png" in report and "Run size" in report

    import mlflow

    runs = _mlflow_runs(tmp_path)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["tags.mlflow.runName"] == "seam_demo · synthetic · emotion5 · honest"
    child = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]].iloc[0]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    align = client.get_metric_history(child["run_id"], "train_loss_align")
    assert [m.step for m in align] == [1, 2] and all(np.isfinite(m.value) for m in align)
    artifacts = {a.path for a in client.list_artifacts(parent["run_id"], "seam_demo")}
    assert {"seam_demo/flow_prediction.png", "seam_demo/training_curves.png", "seam_demo/report.md"} <= artifacts
