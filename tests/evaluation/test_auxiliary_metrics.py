"""A task's per-sample auxiliary scores (``Task.auxiliary_metrics``, e.g. flow EPE) travel generically: prediction
table columns ``aux_<name>`` -> ``metrics["auxiliary"]`` (pooled and per fold) -> flat MLflow keys ``aux.<name>``
-> the per-fold MLflow metrics. Its detector decisions (``Detections``, e.g. an AU head) travel as column pairs
``auxpred_<name>`` / ``auxtrue_<name>`` -> ``metrics["auxiliary_detections"]`` (pooled counts) -> ``aux.<name>.acc``
etc. -> the report's table. Hand-made values, arithmetic below."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microexpr.evaluation.metrics import PredictionTableError, compute_metrics, flat_metrics
from microexpr.evaluation.scorecard import build_scorecard, render_report_markdown
from microexpr.hooks import fold_metrics
from microexpr.training.loop import FoldOutcome
from microexpr.training.selection import prediction_tables
from microexpr.training.task import Detections
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


# ---------------------------------------------------- auxiliary detectors (Detections): pooled counts, not means
# s1..s10 in folds 0: s1-s3, 1: s4-s6, 2: s7-s9, 3: s10. Detector "AU1": 3 annotated positives (s1, s4, s7).
AU1_PRED = [1, 0, 1, 1, 0, 0, 0, 0, 0, 0]  # TP s1, s4; FP s3; FN s7; TN the other six
AU1_TRUE = [1, 0, 0, 1, 0, 0, 1, 0, 0, 0]
RARE_PRED = [0] * 10  # "AU45": never annotated, never predicted -> F1 undefined
RARE_TRUE = [0] * 10


def detection_table() -> pd.DataFrame:
    return make_table().assign(auxpred_AU1=AU1_PRED, auxtrue_AU1=AU1_TRUE, auxpred_AU45=RARE_PRED,
                               auxtrue_AU45=RARE_TRUE)


def test_detections_are_pooled_as_counts_per_detector_and_per_fold() -> None:
    detections = compute_metrics(detection_table(), CLASSES, "honest")["auxiliary_detections"]
    assert list(detections) == ["AU1", "AU45"]
    au1 = detections["AU1"]
    # TP 2, FP 1, FN 1, TN 6: accuracy 8/10, F1 2*2/(2*2+1+1) = 2/3, recall+ 2/3, recall- 6/7, always-negative 7/10
    assert (au1["n"], au1["support"], au1["n_predicted"]) == (10, 3, 3)
    assert au1["accuracy"] == pytest.approx(0.8) and au1["f1"] == pytest.approx(2 / 3)
    assert au1["balanced_accuracy"] == pytest.approx((2 / 3 + 6 / 7) / 2)
    assert au1["always_negative_accuracy"] == pytest.approx(0.7)
    # fold 0 (s1-s3): TP, TN, FP -> acc 2/3, F1 2/3; fold 2 (s7-s9): FN, TN, TN -> acc 2/3, F1 0
    assert au1["per_fold"]["fold_000"] == pytest.approx({"n": 3, "support": 1, "accuracy": 2 / 3, "f1": 2 / 3})
    assert au1["per_fold"]["fold_002"]["f1"] == 0.0
    assert au1["per_fold"]["fold_003"]["f1"] is None  # s10: nothing annotated or predicted
    rare = detections["AU45"]
    assert rare["f1"] is None and rare["accuracy"] == 1.0 and rare["balanced_accuracy"] == 1.0
    assert compute_metrics(make_table(), CLASSES, "honest")["auxiliary_detections"] == {}


def test_detections_reach_mlflow_keys_per_run_and_per_fold_leaving_undefined_f1_out() -> None:
    table = detection_table()
    flat = flat_metrics(compute_metrics(table, CLASSES, "honest"), prefix="m.honest")
    assert flat["m.honest.aux.AU1.acc"] == pytest.approx(0.8) and flat["m.honest.aux.AU1.f1"] == pytest.approx(2 / 3)
    assert flat["m.honest.aux.AU1.support"] == 3.0 and "m.honest.aux.AU1.bacc" in flat
    assert "m.honest.aux.AU45.f1" not in flat and flat["m.honest.aux.AU45.acc"] == 1.0
    both = pd.concat([table, table.assign(selection="oracle_epoch")], ignore_index=True)
    per_fold = fold_metrics(both[both["fold"] == "fold_000"])
    assert per_fold["aux.AU1.acc"] == pytest.approx(2 / 3) and per_fold["aux.AU1.f1"] == pytest.approx(2 / 3)
    assert "aux.AU45.f1" not in per_fold


def test_an_unpaired_detection_column_is_refused() -> None:
    with pytest.raises(PredictionTableError, match="unpaired"):
        compute_metrics(make_table().assign(auxpred_AU1=AU1_PRED), CLASSES, "honest")


def test_the_report_shows_one_table_row_per_detector_and_no_section_without_detectors() -> None:
    metrics = compute_metrics(detection_table(), CLASSES, "honest")
    info = {"model": "m", "dataset": "casme2", "label_set": "emotion5"}
    card = build_scorecard([], {"honest": metrics}, "m", "casme2", "emotion5", CLASSES)
    report = render_report_markdown(card, {"honest": metrics}, {}, info)
    section = report.split("## Auxiliary detections")[1].split("\n## ")[0]
    assert "| AU1 | 3 | 3 | 80.00 | 70.00 | 66.67 | 76.19 |" in section
    assert "| AU45 | 0 | 0 | 100.00 | 100.00 | — | 100.00 |" in section
    assert "F1 66.67 over the 1 with an F1" in section
    plain = render_report_markdown(card, {"honest": compute_metrics(make_table(), CLASSES, "honest")}, {}, info)
    assert "Auxiliary detections" not in plain


def test_prediction_tables_carry_detections_as_column_pairs_under_every_selection() -> None:
    probs = np.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]]], dtype=np.float32)
    outcome = FoldOutcome(history=pd.DataFrame({"epoch": [1]}), test_sample_ids=np.array(["a", "b"]),
                          epoch_probs=probs, evaluated_epochs=np.array([1]), classes=CLASSES, extras={}, seed=0,
                          device="cpu", precision="fp32", channels_last=False, wall_seconds=0.0,
                          detections={"AU4": Detections(np.array([1, 0]), np.array([1, 1]))})
    meta = {"sample_id": np.array(["a", "b"]), "dataset": np.array(["d", "d"]), "subject": np.array(["s1", "s2"]),
            "fold_subject": np.array(["d/s1", "d/s2"]), "y": np.array([0, 1])}
    table = prediction_tables(outcome, "fold_000", meta, CLASSES)
    assert set(table["selection"]) == {"honest", "oracle_epoch"}
    for _, part in table.groupby("selection"):
        assert part["auxpred_AU4"].tolist() == [1, 0] and part["auxtrue_AU4"].tolist() == [1, 1]
    assert compute_metrics(table, CLASSES, "honest")["auxiliary_detections"]["AU4"]["accuracy"] == 0.5
