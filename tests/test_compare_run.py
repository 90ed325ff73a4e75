"""End to end: ``kedro run --pipelines=all`` trains two models then compares them; ``--pipelines=compare`` rebuilds
the comparison from the stored tables alone (conf/test, tiny synthetic set; real CLI and MLflow store)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.test_kedro_runs import _mlflow_runs, kedro, latest, notebook_namespace

pytestmark = pytest.mark.slow
MODELS = "mmnet,seam_demo"  # mmnet + the seam's demonstration model stand in for the five papers


def test_all_trains_then_compares_and_compare_alone_rebuilds_it(tmp_path: Path) -> None:
    kedro(["run", "--pipelines=all"], tmp_path, MICROEXPR_MODELS=MODELS)
    board = pd.read_csv(latest(tmp_path, "08_reporting/compare/leaderboard.csv"))
    assert sorted(set(board["model"])) == ["mmnet", "seam_demo"]
    assert sorted(set(board["selection"])) == ["honest", "oracle_epoch"]  # one row each, never pooled
    assert len(board) == 4 and (board["n_samples"] == 7).all() and (board["n_subjects"] == 4).all()
    for metric in ("acc", "uf1", "uar", "wf1"):
        assert ((board[f"{metric}_low"] <= board[metric]) & (board[metric] <= board[f"{metric}_high"])).all()
    paired = pd.read_csv(latest(tmp_path, "08_reporting/compare/paired.csv"))
    assert (paired["status"] == "ok").all() and len(paired) == 2 * 2  # 1 pair x 2 selections x (uf1, acc)
    assert paired["n_common"].eq(7).all() and ((paired["p_value"] > 0) & (paired["p_value"] <= 1)).all()
    assert (paired["p_holm"] >= paired["p_value"]).all()
    report = latest(tmp_path, "08_reporting/compare/report.md").read_text()
    assert "Model comparison · synthetic · emotion5" in report and "![Paired differences](forest.png)" in report
    html = latest(tmp_path, "08_reporting/compare/report.html").read_text()
    assert "<table>" in html and 'src="data:image/png;base64,' in html and "forest.png" not in html

    runs = _mlflow_runs(tmp_path)
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert (parent["tags.model"], parent["tags.dataset"], parent["tags.protocol"]) == (MODELS, "synthetic", "loso")
    assert parent["tags.au_source"] == "n/a,n/a" or parent["tags.au_source"] == "n/a"
    assert "MMNet" in parent["tags.paper"] and parent["tags.selection"] == "honest"
    compare = runs[runs["tags.microexpr.kind"] == "compare"]
    assert len(compare) == 1 and compare.iloc[0]["tags.mlflow.parentRunId"] == parent["run_id"]
    assert compare.iloc[0]["tags.mlflow.runName"] == "compare · synthetic · emotion5"
    assert compare.iloc[0]["metrics.mmnet.honest.uf1"] == pytest.approx(
        board.set_index(["model", "selection"]).loc[("mmnet", "honest"), "uf1"])
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    artifacts = {a.path for a in client.list_artifacts(compare.iloc[0]["run_id"], "compare")}
    assert {"compare/leaderboard.csv", "compare/paired.csv", "compare/report.html", "compare/forest.png"} <= artifacts
    folds = runs[runs["tags.microexpr.fold"].notna()]
    assert len(folds) == 8 and set(folds["tags.model"]) == {"mmnet", "seam_demo"} and folds["tags.paper"].notna().all()

    kedro(["run", "--pipelines=compare"], tmp_path, MICROEXPR_MODELS=MODELS)
    versions = sorted((tmp_path / "08_reporting/compare/leaderboard.csv").iterdir())
    assert len(versions) == 2
    rebuilt = pd.read_csv(versions[-1] / "leaderboard.csv")
    pd.testing.assert_frame_equal(rebuilt, board)  # same stored tables, same seed: the same leaderboard
    shown = compare_notebook_namespace(tmp_path)["leaderboard"]  # the notebook shows the stored table, recomputes nothing
    pd.testing.assert_frame_equal(shown, rebuilt)


def compare_notebook_namespace(data_root: Path) -> dict:
    """The notebook's variables on this run's store: the fold runs of both models, not the comparison run."""
    namespace = notebook_namespace(data_root)
    assert len(namespace["folds"]) == 8
    return namespace
