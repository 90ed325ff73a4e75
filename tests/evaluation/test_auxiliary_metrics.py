"""A task's per-sample auxiliary scores (``Task.auxiliary_metrics``, e.g. flow EPE) travel generically: prediction
table columns ``aux_<name>`` -> ``metrics["auxiliary"]`` (pooled and per fold) -> flat MLflow keys ``aux.<name>``
-> the per-fold MLflow metrics. Hand-made values, arithmetic below."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microexpr.evaluation.metrics import compute_metrics, flat_metrics
from microexpr.hooks import fold_metrics
from microexpr.training.loop import FoldOutcome
from microexpr.training.selection import prediction_tables
from tests.evaluation.prediction_tables import CLASSES, make_table

EPE = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]


def test_aux_columns_become_pooled_and_per_fold_means_and_flat_mlflow_keys() -> None:
    table = make_table().assign(aux_epe=EPE)
    metrics = compute_metrics(table, CLASSES, "honest")
    assert metrics["auxiliary"]["epe"]["mean"] == pytest.approx(5.5)
    # folds 0: s1-s3, 1: s4-s6, 2: s7-s9, 3: s10
    assert metrics["auxiliary"]["epe"]["per_fold"] == pytest.approx(
        {"fold_000": 2.0, "fold_001": 5.0, "fold_002": 8.0, "fold_003": 10.0})
    assert flat_metrics(metrics, prefix="m.honest")["m.honest.aux.epe"] == pytest.approx(5.5)
    assert fold_metrics(table[table["fold"] == "fold_001"])["aux.epe"] == pytest.approx(5.0)
    assert compute_metrics(make_table(), CLASSES, "honest")["auxiliary"] == {}


def test_prediction_tables_carry_the_fold_outcome_scores_under_every_selection() -> None:
    probs = np.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1]]], dtype=np.float32)
    outcome = FoldOutcome(history=pd.DataFrame({"epoch": [1, 2]}), test_sample_ids=np.array(["a", "b"]),
                          epoch_probs=probs, evaluated_epochs=np.array([1, 2]), classes=CLASSES, extras={}, seed=0,
                          device="cpu", precision="fp32", channels_last=False, wall_seconds=0.0,
                          auxiliary={"nme": np.array([0.25, 0.5])})
    meta = {"sample_id": np.array(["a", "b"]), "dataset": np.array(["d", "d"]), "subject": np.array(["s1", "s2"]),
            "fold_subject": np.array(["d/s1", "d/s2"]), "y": np.array([0, 1])}
    table = prediction_tables(outcome, "fold_000", meta, CLASSES)
    for _, part in table.groupby("selection"):
        assert part.set_index("sample_id")["aux_nme"].to_dict() == {"a": 0.25, "b": 0.5}
