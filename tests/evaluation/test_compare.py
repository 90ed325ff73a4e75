"""The comparison: batched metrics, bootstrap by subject, Holm, paired tests, refusals, leaderboard honesty rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microexpr.evaluation.compare import (
    ModelResult,
    SampleMismatchError,
    align_pair,
    holm,
    honest_oracle_gap,
    leaderboard,
    metrics_from_confusion,
    paired_comparisons,
    paired_test,
    subject_bootstrap,
    subject_bootstrap_values,
    subject_resample_counts,
)
from microexpr.evaluation.metrics import core_metrics
from tests.evaluation.prediction_tables import CLASSES, ROWS, make_table


def _result(model: str, rows=ROWS, selections=("honest", "oracle_epoch"), **metrics) -> ModelResult:
    table = pd.concat([make_table(rows, selection=s) for s in selections], ignore_index=True)
    return ModelResult(model, table, {"model": model, "dataset": "casme2", "label_set": "emotion5",
                                      "classes": CLASSES, **metrics})


def test_batched_metrics_equal_scikit_learn_on_random_tables() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        y_true, y_pred = rng.integers(0, 4, 30), rng.integers(0, 4, 30)
        y_true[:3] = 3 - (y_true[:3] == 3)  # some tables lack a class in the truth
        confusion = np.zeros((4, 4))
        np.add.at(confusion, (y_true, y_pred), 1)
        batched = metrics_from_confusion(confusion)
        reference = core_metrics(y_true, y_pred, ["a", "b", "c", "d"])
        for metric in ("acc", "uf1", "uar", "wf1"):
            assert batched[metric] == pytest.approx(reference[metric]), metric


def test_bootstrap_resamples_whole_subjects_on_a_hand_made_table() -> None:
    # subject A: 3 samples, all right; subject B: 1 sample, wrong. A resample of 2 subjects is AA (acc 1),
    # BB (acc 0) or AB / BA (3 right of 4 = 0.75); a sample-level bootstrap would also give 0.25 and 0.5.
    y_true = np.array([0, 1, 0, 1])
    y_pred = np.array([0, 1, 0, 0])
    subjects = ["A", "A", "A", "B"]
    point, boot = subject_bootstrap_values(y_true, y_pred, subjects, 2, n_resamples=4000, seed=1)
    assert point["acc"] == pytest.approx(0.75)
    values, counts = np.unique(np.round(boot["acc"], 9), return_counts=True)
    assert values.tolist() == [0.0, 0.75, 1.0]
    assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    interval = subject_bootstrap(y_true, y_pred, subjects, 2, n_resamples=4000, seed=1)["acc"]
    assert (interval["low"], interval["value"], interval["high"]) == (0.0, 0.75, 1.0)


def test_resample_counts_draw_every_subject_count_once_per_row() -> None:
    counts = subject_resample_counts(7, 500, np.random.default_rng(0))
    assert counts.shape == (500, 7) and (counts.sum(axis=1) == 7).all()
    assert abs(counts.mean() - 1) < 0.05


def test_identical_subjects_give_a_zero_width_interval() -> None:
    y_true, y_pred = np.tile([0, 1, 1], 5), np.tile([0, 1, 0], 5)
    stats = subject_bootstrap(y_true, y_pred, np.repeat(list("abcde"), 3).tolist(), 2, n_resamples=200)
    assert stats["acc"]["low"] == stats["acc"]["high"] == pytest.approx(2 / 3)


def test_holm_against_hand_computed_values() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = holm([0.02, np.nan, 0.04])
    assert np.isnan(adjusted[1]) and adjusted[[0, 2]] == pytest.approx([0.04, 0.04])


def test_refuses_tables_over_different_samples_and_names_them() -> None:
    a = _result("model_a")
    b = _result("model_b", rows=ROWS[:-1] + [("samm", "008", 4, 2, 2)])  # s10 is another sample in b
    b.predictions.loc[b.predictions["sample_id"] == "s10", "sample_id"] = "s11"
    with pytest.raises(SampleMismatchError, match=r"only in model_a: s10; only in model_b: s11"):
        align_pair(a, b, "honest")
    table = paired_comparisons([a, b], n_resamples=50, n_permutations=50)
    assert table["status"].str.startswith("refused").all() and table["difference"].isna().all()


def test_declared_exclusions_leave_a_stated_intersection() -> None:
    a = _result("model_a")
    b = _result("model_b", rows=ROWS[:-1], excluded_samples=[{"sample_id": "s10", "reason": "no flow"}])
    pair, counts = align_pair(a, b, "honest")
    assert counts == {"n_common": 9, "n_excluded_a": 0, "n_excluded_b": 1}
    assert "s10" not in set(pair["sample_id"])
    different_truth = _result("model_c")
    different_truth.predictions.loc[different_truth.predictions["sample_id"] == "s1", "y_true"] = 2
    with pytest.raises(SampleMismatchError, match="different true labels.*s1"):
        align_pair(a, different_truth, "honest")


def test_paired_test_sees_no_difference_between_equal_models_and_a_clear_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    subjects = np.repeat([f"s{k}" for k in range(12)], 10)
    good = np.where(rng.random(120) < 0.9, y, (y + 1) % 3)
    bad = np.where(rng.random(120) < 0.4, y, (y + 1) % 3)
    pair = pd.DataFrame({"sample_id": [f"x{k}" for k in range(120)], "fold_subject": subjects, "y_true": y,
                         "pred_a": good, "pred_b": good})
    same = paired_test(pair, 3, n_resamples=300, n_permutations=300)
    assert same["uf1"]["difference"] == same["uf1"]["low"] == same["uf1"]["high"] == 0.0
    assert same["uf1"]["p_value"] == 1.0
    clear = paired_test(pair.assign(pred_b=bad), 3, n_resamples=300, n_permutations=300)
    for metric in ("uf1", "acc"):
        assert clear[metric]["difference"] > 0.3 and clear[metric]["low"] > 0
        assert clear[metric]["p_value"] == pytest.approx(1 / 301)
    # swapping whole subjects: with 2 subjects, "no swap" and "swap both" (= -d) are as extreme as the data,
    # so about half of the random swap patterns are: a sample-level swap would call the same gap significant
    two = pair.assign(pred_b=bad).loc[lambda t: t["fold_subject"].isin(["s0", "s1"])]
    assert paired_test(two, 3, n_permutations=400, permutation_unit="subject")["acc"]["p_value"] > 0.35
    assert paired_test(two, 3, n_permutations=400, permutation_unit="sample")["acc"]["p_value"] < 0.05


def test_leaderboard_keeps_selections_apart_labels_leaks_and_places_claims_like_for_like() -> None:
    honest = _result("mmnet")
    leaky = _result("cva_fpf", tags={"au_source": "ground_truth"}, leak="au_leak")
    claims = [{"model": "mmnet", "dataset": "casme2", "label_set": "emotion5", "part": None, "metric": "uf1",
               "value": 0.8676, "protocol": "oracle_epoch", "comparable_selection": "oracle_epoch"}]
    board = leaderboard([honest, leaky], claims, n_resamples=100)
    # one row per model x selection x scope (casme2 + samm members of this table make it a composite)
    assert len(board) == 2 * 2 * 3
    assert set(board["selection"]) == {"honest", "oracle_epoch"}
    mmnet = board[(board["model"] == "mmnet") & (board["scope"] == "pooled")].set_index("selection")
    assert mmnet.loc["oracle_epoch", "paper_uf1"] == 0.8676 and pd.isna(mmnet.loc["honest", "paper_uf1"])
    assert mmnet.loc["honest", "n_samples"] == 10 and mmnet.loc["honest", "n_subjects"] == 4
    assert (mmnet["uf1_low"] <= mmnet["uf1"]).all() and (mmnet["uf1"] <= mmnet["uf1_high"]).all()
    label = board.loc[board["model"] == "cva_fpf", "label"].iloc[0]
    assert label == "cva_fpf (au_source=ground_truth) [LEAK: au_leak]"
    samm = board[(board["model"] == "mmnet") & (board["scope"] == "samm")]
    assert samm["n_samples"].tolist() == [4, 4]
    gap = honest_oracle_gap(board)
    assert (gap["honest_minus_oracle"] == 0).all()  # the same table under both selections here
    # a leaky model is never paired with an honest one, and the table says so
    skipped = paired_comparisons([honest, leaky], n_resamples=20, n_permutations=20)
    assert len(skipped) == 1 and skipped["status"].iloc[0].startswith("skipped: dataset / label set / leak")
    assert "au_leak" in skipped["status"].iloc[0] and skipped["difference"].isna().all()


def test_paired_comparisons_holm_correct_within_a_family() -> None:
    models = [_result(name) for name in ("m1", "m2", "m3")]
    models[2].predictions["y_pred"] = models[2].predictions["y_true"]
    models[2].predictions["label_pred"] = models[2].predictions["label_true"]
    table = paired_comparisons(models, ["acc"], n_resamples=100, n_permutations=200)
    assert (table["status"] == "ok").all() and len(table) == 3 * 2  # 3 pairs x 2 selections
    for _, family in table.groupby("selection"):
        assert family["p_holm"].to_numpy() == pytest.approx(holm(family["p_value"].to_numpy()))
        assert (family["p_holm"] >= family["p_value"]).all()


def test_compare_node_names_missing_models_and_the_report_labels_leaks_and_refusals() -> None:
    from microexpr.dag.compare import compare_models, comparison_report

    results = {name: {"predictions": r.predictions, "metrics": r.metrics} for name, r in {
        "mmnet": _result("mmnet"),
        "cva_fpf": _result("cva_fpf", leak="au_leak", tags={"au_source": "ground_truth"}),
        "samer": _result("samer", rows=ROWS[:-1]),  # one sample short, not declared excluded
    }.items()}
    board, gap, paired, summary = compare_models(results, {"n_resamples": 50, "n_permutations": 50},
                                                 models=["mmnet", "cva_fpf", "samer", "mol"])
    assert summary["missing"] == ["mol"] and summary["models"] == ["mmnet", "cva_fpf", "samer"]
    assert summary["leaks"] == {"cva_fpf": "au_leak"} and summary["n_refused"] == 2  # honest + oracle_epoch
    markdown, html = comparison_report(board, gap, paired, summary, {})
    assert markdown.startswith("# Model comparison · casme2 · emotion5 · includes leaky rows (au_leak)")
    assert "Models without stored results" in markdown and "mol" in markdown
    assert "cva_fpf (au_source=ground_truth) [LEAK: au_leak]" in markdown
    leaderboard_sections = [part for part in markdown.split("\n## ")[1:]
                            if not part.startswith(("What test-subject", "Paired", "MEGC"))]
    assert any("leaky setting `au_leak`" in part for part in leaderboard_sections)
    for part in leaderboard_sections:  # a leaderboard table holds honest rows or one leak's rows, never both
        rows = [line for line in part.splitlines()[1:] if line.startswith("| ") and not line.startswith("| model")]
        leaky = ["[LEAK: au_leak]" in row for row in rows]
        assert rows and (all(leaky) or not any(leaky)), part
        assert all(leaky) == ("leaky setting" in part.splitlines()[0])
    assert "**Refused** mmnet vs samer (honest): mmnet and samer (honest) do not cover the same samples" in markdown
    assert "Not compared: cva_fpf (au_source=ground_truth) [LEAK: au_leak] vs mmnet" in markdown
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html and "forest.png" not in html  # no pair to plot
