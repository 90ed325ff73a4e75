"""Kill a `kedro run`, damage what it stored, run again: the final predictions equal the uninterrupted run's.

The run is killed once two of its four folds are stored (so it also checks that a killed run loses at most
the fold in progress: every intact stored fold is reused). Between the killed run and the rerun: one finished fold result is truncated, one feature blob gets a flipped bit
and a pickle is planted in a shard folder. The rerun must recompute the blob and retrain the fold (warnings name
both files), never run the planted pickle, close the killed run in MLflow, and predict exactly what an
uninterrupted run predicts (tests/golden/mmnet_conf_test_predictions.csv, the stored uninterrupted run of
conf/test; tests/golden/README.md).
"""

from __future__ import annotations

import glob
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_kedro_runs import (
    PROJECT,
    _env,
    _mlflow_runs,
    assert_same_predictions_as_golden,
    kedro,
    latest,
)

pytestmark = pytest.mark.slow


class _Planted:
    """Unpickling it creates ``target``: the proof that a payload ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def _fold_files(root: Path) -> list[Path]:
    return sorted(Path(p) for p in glob.glob(str(root / "07_model_output/mmnet/folds/shard_*/fold_*.npz")))


def _kill_after_two_folds(root: Path) -> None:
    cmd = [sys.executable, "-m", "kedro", "run", "--pipelines=mmnet", "--env", "test"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    while len(_fold_files(root)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_damage_and_resume_predicts_like_an_uninterrupted_run(tmp_path: Path) -> None:
    _kill_after_two_folds(tmp_path)
    folds = _fold_files(tmp_path)
    assert 2 <= len(folds) < 4, "the run must be killed part-way through its 4 folds"

    fold_file = folds[0]
    fold_file.write_bytes(fold_file.read_bytes()[: fold_file.stat().st_size // 2])
    blob = sorted(tmp_path.glob("04_feature/key_frames/blobs/*/*.npz"))[0]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x04
    blob.write_bytes(bytes(data))
    planted = fold_file.parent / "fold_999__deadbeef.pkl"
    planted.write_bytes(pickle.dumps(_Planted(tmp_path / "planted_payload_ran")))

    log = kedro(["run", "--pipelines=mmnet"], tmp_path)
    output = log.stdout + log.stderr
    assert f"Feature blob {blob}" in output and "recomputing it" in output
    assert str(fold_file) in output and "trained again" in output
    assert str(planted) in output and not (tmp_path / "planted_payload_ran").exists()
    # a killed run loses at most the fold in progress: every intact stored fold is reused, the damaged one retrained
    assert output.count("reusing the result of an earlier run") == len(folds) - 1

    predictions = pd.read_parquet(latest(tmp_path, "07_model_output/mmnet/predictions.parquet"))
    assert_same_predictions_as_golden(predictions)

    runs = _mlflow_runs(tmp_path)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()].sort_values("start_time")
    assert parents["status"].tolist() == ["KILLED", "FINISHED"]
    assert parents.iloc[1]["run_id"] in parents.iloc[0]["tags.mlflow.note.content"]
    assert "RUNNING" not in set(runs["status"])
