"""compute_metrics against hand-computed values on a 10-sample, 3-class, 2-dataset, 4-fold table.

The table (tests/evaluation/prediction_tables.py), classes 0 happiness, 1 surprise, 2 others:

    sample  dataset  subject  fold  true  pred
    s1      casme2   sub01    0     0     0   ok
    s2      casme2   sub01    0     0     0   ok
    s3      casme2   sub01    0     0     1
    s4      casme2   sub02    1     1     1   ok
    s5      casme2   sub02    1     1     2
    s6      casme2   sub02    1     2     2   ok
    s7      samm     006      2     2     2   ok
    s8      samm     006      2     2     0
    s9      samm     006      2     0     0   ok
    s10     samm     007      3     2     1

Pooled counts per class:
    class 0: TP s1,s2,s9 = 3; FP s8 = 1; FN s3 = 1      -> P 3/4, R 3/4, F1 6/(6+1+1) = 0.75,  support 4
    class 1: TP s4 = 1;       FP s3,s10 = 2; FN s5 = 1  -> P 1/3, R 1/2, F1 2/(2+2+1) = 0.4,   support 2
    class 2: TP s6,s7 = 2;    FP s5 = 1; FN s8,s10 = 2  -> P 2/3, R 2/4, F1 4/(4+1+2) = 4/7,   support 4
    accuracy = 6/10; UF1 = (0.75 + 0.4 + 4/7)/3; UAR = (3/4 + 1/2 + 1/2)/3;
    WF1 = (4·0.75 + 2·0.4 + 4·4/7)/10
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from microexpr.evaluation.metrics import (
    PredictionTableError,
    compute_metrics,
    flat_metrics,
    metrics_table,
    natural_key,
)
from tests.evaluation.prediction_tables import CLASSES, ROWS, make_table


@pytest.fixture
def metrics() -> dict:
    return compute_metrics(make_table(), CLASSES)


def test_pooled_headline_metrics_match_hand_arithmetic(metrics: dict) -> None:
    assert metrics["n_samples"] == 10
    assert metrics["acc"] == pytest.approx(6 / 10)
    assert metrics["uf1"] == pytest.approx((0.75 + 0.4 + 4 / 7) / 3)
    assert metrics["uar"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)
    assert metrics["wf1"] == pytest.approx((4 * 0.75 + 2 * 0.4 + 4 * 4 / 7) / 10)


def test_per_class_report_and_confusion_matrix(metrics: dict) -> None:
    per_class = metrics["per_class"]
    assert list(per_class) == CLASSES
    assert per_class["happiness"] == pytest.approx(
        {"precision": 3 / 4, "recall": 3 / 4, "f1": 0.75, "support": 4, "n_predicted": 4}
    )
    assert per_class["surprise"] == pytest.approx(
        {"precision": 1 / 3, "recall": 1 / 2, "f1": 0.4, "support": 2, "n_predicted": 3}
    )
    assert per_class["others"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 4, "f1": 4 / 7, "support": 4, "n_predicted": 3}
    )
    # rows = true class: true 0 -> pred {0: s1 s2 s9, 1: s3}; true 1 -> {1: s4, 2: s5}; true 2 -> {0: s8, 1: s10, 2: s6 s7}
    assert metrics["confusion_matrix"] == [[3, 1, 0], [0, 1, 1], [1, 1, 2]]
    assert metrics["classes_absent_from_truth"] == []
    assert metrics["classes_never_predicted"] == []


def test_per_dataset_breakdown_for_composite(metrics: dict) -> None:
    # casme2 (s1-s6): true [0,0,0,1,1,2], pred [0,0,1,1,2,2]; acc 4/6
    #   class 0: TP2 FP0 FN1 -> F1 4/5; class 1: TP1 FP1 FN1 -> 1/2; class 2: TP1 FP1 FN0 -> 2/3
    #   recalls 2/3, 1/2, 1/1
    # samm (s7-s10): true [2,2,0,2], pred [2,0,0,1]; acc 2/4
    #   class 0: TP1 FP1 FN0 -> 2/3; class 1: TP0 FP1 FN0 -> 0 (absent from truth); class 2: TP1 FP0 FN2 -> 2/4
    #   UAR over the classes present in truth {0, 2}: (1/1 + 1/3)/2
    breakdown = metrics["per_dataset"]
    assert sorted(breakdown) == ["casme2", "samm"]
    assert breakdown["casme2"]["n_samples"] == 6
    assert breakdown["casme2"]["acc"] == pytest.approx(4 / 6)
    assert breakdown["casme2"]["uf1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert breakdown["casme2"]["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert breakdown["samm"]["acc"] == pytest.approx(2 / 4)
    assert breakdown["samm"]["uf1"] == pytest.approx((2 / 3 + 0 + 2 / 4) / 3)
    assert breakdown["samm"]["uar"] == pytest.approx((1 + 1 / 3) / 2)
    assert breakdown["samm"]["classes_absent_from_truth"] == ["surprise"]
    assert breakdown["samm"]["confusion_matrix"] == [[1, 0, 0], [0, 0, 0], [1, 1, 1]]


def test_single_dataset_has_no_breakdown() -> None:
    casme_only = make_table().iloc[:6]
    assert compute_metrics(casme_only, CLASSES)["per_dataset"] == {}


def test_per_fold_table_and_mean_std(metrics: dict) -> None:
    # fold 0: true [0,0,0] pred [0,0,1]: acc 2/3; classes seen {0,1}: F1 0 = 4/5, F1 1 = 0 -> UF1 0.4
    # fold 1: true [1,1,2] pred [1,2,2]: acc 2/3; seen {1,2}: 2/3 and 2/3 -> UF1 2/3
    # fold 2: true [2,2,0] pred [2,0,0]: acc 2/3; seen {0,2}: 2/3 and 2/3 -> UF1 2/3
    # fold 3: true [2]     pred [1]:     acc 0;   seen {1,2}: 0 and 0     -> UF1 0
    per_fold = {row["fold"]: row for row in metrics["per_fold"]}
    folds = [f"fold_{f:03d}" for f in range(4)]
    assert [per_fold[f]["n"] for f in folds] == [3, 3, 3, 1]
    assert [per_fold[f]["acc"] for f in folds] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 0])
    assert [per_fold[f]["uf1"] for f in folds] == pytest.approx([0.4, 2 / 3, 2 / 3, 0])
    assert per_fold["fold_002"]["fold_subjects"] == ["samm/006"]
    # UAR over the classes in the fold's truth: fold 0 recall of 0 = 2/3; fold 1 (1/2 + 1)/2; fold 2 (1/2 + 1)/2;
    # fold 3 recall of 2 = 0
    assert [per_fold[f]["uar"] for f in folds] == pytest.approx([2 / 3, 0.75, 0.75, 0])
    # acc: mean 0.5; deviations +1/6 ×3, -1/2 -> sum of squares 3/36 + 1/4 = 1/3; /(4-1) = 1/9; std = 1/3
    # uf1: mean (0.4 + 4/3 + 0)/4 = 1.7333/4
    summary = metrics["fold_summary"]
    assert summary["n_folds"] == 4
    assert summary["acc_mean"] == pytest.approx(0.5)
    assert summary["acc_std"] == pytest.approx(1 / 3)
    uf1s = [0.4, 2 / 3, 2 / 3, 0.0]
    mean = sum(uf1s) / 4
    assert summary["uf1_mean"] == pytest.approx(mean)
    assert summary["uf1_std"] == pytest.approx((sum((u - mean) ** 2 for u in uf1s) / 3) ** 0.5)
    assert summary["uar_mean"] == pytest.approx((2 / 3 + 0.75 + 0.75) / 4)


def test_fold_std_is_undefined_for_one_fold() -> None:
    one_fold = make_table().iloc[:3]
    summary = compute_metrics(one_fold, CLASSES)["fold_summary"]
    assert summary["n_folds"] == 1 and summary["acc_std"] is None
    assert "folds.acc_std" not in flat_metrics(compute_metrics(one_fold, CLASSES))


def test_per_subject_accuracy_in_natural_order() -> None:
    rows = [("casme2", "sub10", 0, 0, 0), ("casme2", "sub2", 1, 0, 1), ("casme2", "sub2", 1, 1, 1)]
    per_subject = compute_metrics(make_table(rows), CLASSES)["per_subject"]
    assert [r["fold_subject"] for r in per_subject] == ["casme2/sub2", "casme2/sub10"]
    assert [(r["n"], r["n_correct"]) for r in per_subject] == [(2, 1), (1, 1)]
    assert [r["acc"] for r in per_subject] == pytest.approx([0.5, 1.0])


def test_class_absent_from_predictions() -> None:
    # true [0,1,2,2], pred [0,1,1,0]: class 2 is never predicted.
    # class 0: TP1 FP1 FN0 -> F1 2/3; class 1: TP1 FP1 FN0 -> 2/3; class 2: TP0 FP0 FN2 -> 0, P 0 (0/0 -> 0), R 0
    rows = [
        ("casme2", "sub01", 0, 0, 0),
        ("casme2", "sub01", 0, 1, 1),
        ("casme2", "sub02", 1, 2, 1),
        ("casme2", "sub02", 1, 2, 0),
    ]
    metrics = compute_metrics(make_table(rows), CLASSES)
    assert metrics["classes_never_predicted"] == ["others"]
    assert metrics["per_class"]["others"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2, "n_predicted": 0}
    )
    assert metrics["uf1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert metrics["uar"] == pytest.approx((1 + 1 + 0) / 3)


def test_class_absent_from_truth_counts_zero_in_uf1_and_is_left_out_of_uar() -> None:
    # 4 classes; "repression" (3) has no true and no predicted sample; "surprise" (1) is predicted once, never true.
    # true [0,0,2,2], pred [0,1,2,2]: F1 0 = 2/3, F1 1 = 0 (TP0 FP1), F1 2 = 1, F1 3 = 0/0 -> 0
    classes = ["happiness", "surprise", "others", "repression"]
    rows = [
        ("casme2", "sub01", 0, 0, 0),
        ("casme2", "sub01", 0, 0, 1),
        ("casme2", "sub02", 1, 2, 2),
        ("casme2", "sub02", 1, 2, 2),
    ]
    table = make_table(rows, classes=classes)
    metrics = compute_metrics(table, classes)
    assert metrics["classes_absent_from_truth"] == ["surprise", "repression"]
    assert metrics["uf1"] == pytest.approx((2 / 3 + 0 + 1 + 0) / 4)
    # recall over the classes present in truth {0, 2}: (1/2 + 2/2)/2, i.e. sklearn's balanced accuracy
    assert metrics["uar"] == pytest.approx((1 / 2 + 1) / 2)
    with pytest.warns(UserWarning):
        assert metrics["uar"] == pytest.approx(balanced_accuracy_score(table["y_true"], table["y_pred"]))
    assert len(metrics["confusion_matrix"]) == 4


def test_mixed_selections_are_refused_unless_one_is_chosen() -> None:
    honest = make_table(selection="honest", epoch=73)
    oracle_rows = [(d, s, f, t, t) for d, s, f, t, _ in ROWS]  # the oracle table: every sample right
    oracle = make_table(oracle_rows, selection="oracle_epoch", epoch=12)
    both = pd.concat([honest, oracle], ignore_index=True)
    with pytest.raises(PredictionTableError, match="mixes selections"):
        compute_metrics(both, CLASSES)
    assert compute_metrics(both, CLASSES, selection="honest")["acc"] == pytest.approx(0.6)
    chosen = compute_metrics(both, CLASSES, selection="oracle_epoch")
    assert chosen["selection"] == "oracle_epoch" and chosen["acc"] == pytest.approx(1.0)
    assert chosen["epochs"] == [12]
    with pytest.raises(PredictionTableError, match="no rows for selection 'oracle_epoch'"):
        compute_metrics(honest, CLASSES, selection="oracle_epoch")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda t: t.assign(label_true=t["label_true"].where(t["sample_id"] != "s4", "others")),
            "label_true disagrees.*s4",
        ),
        (lambda t: t.assign(y_pred=t["y_pred"].where(t["sample_id"] != "s7", 3)), r"y_pred must be .*s7"),
        (
            lambda t: t.assign(sample_id=t["sample_id"].where(t["sample_id"] != "s2", "s1")),
            "several rows.*s1",
        ),
        (lambda t: t.drop(columns=["fold"]), r"lacks columns \['fold'\]"),
        (lambda t: t.assign(selection="best"), "outside"),
        (lambda t: t.iloc[:0], "no rows"),
    ],
)
def test_contract_violations_name_the_problem(mutate, message: str) -> None:
    with pytest.raises(PredictionTableError, match=message):
        compute_metrics(mutate(make_table()), CLASSES)


def test_result_is_json_serialisable_and_flattens_for_mlflow(metrics: dict) -> None:
    assert json.loads(json.dumps(metrics)) == metrics
    flat = flat_metrics(metrics, prefix="honest")
    assert flat["honest.acc"] == pytest.approx(metrics["acc"])
    assert flat["honest.uf1"] == pytest.approx(metrics["uf1"])
    assert flat["honest.f1.surprise"] == pytest.approx(0.4)
    assert flat["honest.casme2.uf1"] == pytest.approx(metrics["per_dataset"]["casme2"]["uf1"])
    assert flat["honest.folds.acc_mean"] == pytest.approx(0.5)
    assert all(isinstance(v, float) and np.isfinite(v) for v in flat.values())
    assert set(flat_metrics(metrics)) == {key.removeprefix("honest.") for key in flat}


def test_metrics_table_is_one_row_per_flat_metric(metrics: dict) -> None:
    frame = metrics_table(metrics)
    flat = flat_metrics(metrics)
    assert list(frame.columns) == ["selection", "metric", "value"]
    assert len(frame) == len(flat)
    assert frame.set_index("metric").loc["uar", "value"] == pytest.approx(metrics["uar"])
    assert set(frame["selection"]) == {"honest"}


def test_natural_key_orders_numbers_numerically() -> None:
    assert sorted(["sub10", "sub2", "samm/006", "sub1"], key=natural_key) == [
        "samm/006",
        "sub1",
        "sub2",
        "sub10",
    ]


def _two_repeats() -> pd.DataFrame:
    """Repeat 0 = the hand-computed table; repeat 1 tests s1..s5 again, all predicted correctly."""
    first = make_table().assign(fold="repeat_0")
    second = first.loc[first["sample_id"].isin(["s1", "s2", "s3", "s4", "s5"])].copy()
    second = second.assign(fold="repeat_1", y_pred=second["y_true"], label_pred=second["label_true"])
    return pd.concat([first, second], ignore_index=True)


def test_a_sample_in_several_folds_is_an_error_unless_splits_are_repeated() -> None:
    with pytest.raises(PredictionTableError, match="several rows for the same sample in one selection.*holdout"):
        compute_metrics(_two_repeats(), CLASSES)
    metrics = compute_metrics(_two_repeats(), CLASSES, repeated_splits=True)
    assert metrics["repeated_splits"] is True
    assert (metrics["n_samples"], metrics["n_distinct_samples"]) == (15, 10)
    assert metrics["acc"] == pytest.approx((6 + 5) / 15)
    summary = metrics["fold_summary"]
    assert summary["n_folds"] == 2
    assert summary["acc_mean"] == pytest.approx((6 / 10 + 1.0) / 2)
    assert summary["acc_std"] == pytest.approx(np.std([0.6, 1.0], ddof=1))
    s1 = next(row for row in metrics["per_subject"] if row["subject"] == "sub01")
    assert (s1["fold"], s1["n"]) == ("repeat_0,repeat_1", 6)


def test_repeated_splits_still_refuse_a_sample_twice_in_one_fold() -> None:
    table = _two_repeats()
    table.loc[table["sample_id"] == "s2", "sample_id"] = "s1"
    with pytest.raises(PredictionTableError, match="several rows for the same sample in one fold: .*s1"):
        compute_metrics(table, CLASSES, repeated_splits=True)
