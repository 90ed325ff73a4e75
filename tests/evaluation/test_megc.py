"""MEGC2019 exports: the challenge's per-fold log format and its pooled UF1/UAR against hand-computed counts."""

from __future__ import annotations

import pandas as pd
import pytest

from microexpr.dag.compare import megc2019_exports
from microexpr.evaluation.megc import is_composite, megc_log, megc_scores
from microexpr.evaluation.metrics import core_metrics

CLASSES = ["negative", "positive", "surprise"]
# (dataset, subject, clip, fold, y_true, y_pred)
ROWS = [
    ("casme2", "sub02", "EP01_01", "fold_002", 0, 0),
    ("casme2", "sub01", "EP10_02", "fold_001", 0, 0),
    ("casme2", "sub01", "EP02_01f", "fold_001", 1, 0),
    ("samm", "006", "006_1_2", "fold_010", 2, 2),
    ("samm", "006", "006_1_10", "fold_010", 0, 2),
    ("smic_hs", "s01", "s01_ne_01", "fold_003", 0, 1),
]


def _table(selection: str = "honest") -> pd.DataFrame:
    return pd.DataFrame([{"sample_id": f"{d}/{s}/{c}", "dataset": d, "subject": s, "fold_subject": f"{d}/{s}",
                          "fold": f, "y_true": t, "y_pred": p, "selection": selection}
                         for d, s, c, f, t, p in ROWS])


def test_log_has_one_block_per_fold_with_db_subject_header_then_filename_gt_pred() -> None:
    assert megc_log(_table()).splitlines() == [
        "casme2 sub01", "EP02_01f 1 0", "EP10_02 0 0",
        "casme2 sub02", "EP01_01 0 0",
        "smic s01", "s01_ne_01 0 1",
        "samm 006", "006_1_2 2 2", "006_1_10 0 2",
    ]


def test_pooled_scores_match_hand_computed_counts() -> None:
    scores = megc_scores(_table(), CLASSES)
    # negative: true {EP01_01, EP10_02, 006_1_10, s01_ne_01}, predicted {EP01_01, EP10_02, EP02_01f}:
    #   TP 2, FP 1 (EP02_01f), FN 2 (006_1_10, s01_ne_01) -> F1 4/7, recall 2/4
    # positive: true {EP02_01f}, predicted {s01_ne_01}: TP 0, FP 1, FN 1 -> F1 0, recall 0
    # surprise: true {006_1_2}, predicted {006_1_2, 006_1_10}: TP 1, FP 1, FN 0 -> F1 2/3, recall 1
    overall = scores["overall"]
    assert overall["per_class"] == {"negative": {"tp": 2, "fp": 1, "fn": 2}, "positive": {"tp": 0, "fp": 1, "fn": 1},
                                    "surprise": {"tp": 1, "fp": 1, "fn": 0}}
    assert overall["uf1"] == pytest.approx((4 / 7 + 0 + 2 / 3) / 3)
    assert overall["uar"] == pytest.approx((2 / 4 + 0 + 1) / 3)
    reference = core_metrics(_table()["y_true"], _table()["y_pred"], CLASSES)
    assert (overall["uf1"], overall["uar"]) == pytest.approx((reference["uf1"], reference["uar"]))
    # casme2 alone: negative TP 2 FP 1 FN 0 -> 4/5; positive TP 0 FN 1 -> 0; surprise absent -> F1 0, no recall
    casme2 = scores["per_dataset"]["casme2"]
    assert casme2["uf1"] == pytest.approx((4 / 5 + 0 + 0) / 3) and casme2["uar"] == pytest.approx((1 + 0) / 2)
    assert set(scores["per_dataset"]) == {"casme2", "samm", "smic"} and scores["n_folds"] == 4


def test_exports_are_written_for_composites_only() -> None:
    composite = pd.concat([_table("honest"), _table("oracle_epoch")], ignore_index=True)
    single = _table().loc[lambda t: t["dataset"] == "casme2"]
    assert is_composite(composite) and not is_composite(single)
    results = {"a": {"predictions": composite, "metrics": {"classes": CLASSES}},
               "b": {"predictions": single, "metrics": {"classes": CLASSES}}}
    logs, scores = megc2019_exports(results, models=["a", "b", "c"])
    assert sorted(logs) == sorted(scores) == ["a.honest", "a.oracle_epoch"]
    assert logs["a.honest"].startswith("casme2 sub01\nEP02_01f 1 0\n")
