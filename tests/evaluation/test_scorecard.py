"""Paper claims as data, the claim-vs-ours scorecard under both selections, and the markdown report."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from microexpr.evaluation.metrics import compute_metrics
from microexpr.evaluation.scorecard import (
    PROTOCOL_STATEMENTS,
    SYNTHETIC_CAVEAT,
    ClaimsError,
    accuracy_interval_sentence,
    build_scorecard,
    chance_level,
    flatten_claims,
    format_other_claims,
    format_scorecard,
    load_paper_claims,
    markdown_table,
    no_claim_statement,
    other_paper_claims,
    render_report_markdown,
    run_size_line,
)
from tests.evaluation.prediction_tables import CLASSES, ROWS, make_table

PIPELINES = ("mmnet", "cva_fpf", "samer", "mol", "attr_contrast")
EMOTION5 = ["happiness", "disgust", "repression", "surprise", "others"]


@pytest.fixture(scope="module")
def claims() -> list[dict]:
    return load_paper_claims()


@pytest.fixture(scope="module")
def honest() -> dict:
    return compute_metrics(make_table(), CLASSES)  # acc 0.6, uf1 (0.75 + 0.4 + 4/7)/3


@pytest.fixture(scope="module")
def oracle() -> dict:
    # the oracle table gets s3 and s5 right as well: 8/10
    rows = [(d, s, f, t, t if k in (2, 4) else p) for k, (d, s, f, t, p) in enumerate(ROWS)]
    return compute_metrics(make_table(rows, selection="oracle_epoch", epoch=11), CLASSES)


def test_packaged_claims_cover_every_pipeline_in_fractions(claims: list[dict]) -> None:
    assert {c["model"] for c in claims} == set(PIPELINES)
    for claim in claims:
        scale = 0.01 if claim["printed"] > 1 else 1.0
        assert claim["value"] == pytest.approx(claim["printed"] * scale), claim
        assert 0 < claim["value"] <= 1, claim
        assert claim["source"] and claim["protocol_note"], claim


def test_mmnet_claims_match_the_paper_tables(claims: list[dict]) -> None:
    # MMNet paper (papers/000) Tables 3, 6, 7: accuracy in %, F1 as a fraction; protocol from muse1998/MMNet
    mmnet = {(c["dataset"], c["label_set"], c["metric"]): c for c in claims if c["model"] == "mmnet"}
    printed = {key: c["printed"] for key, c in mmnet.items()}
    assert printed == {
        ("casme2", "emotion5", "acc"): 88.35,
        ("casme2", "emotion5", "uf1"): 0.8676,
        ("casme2", "megc3", "acc"): 95.51,
        ("casme2", "megc3", "uf1"): 0.9494,
        ("samm", "emotion5", "acc"): 80.14,
        ("samm", "emotion5", "uf1"): 0.7291,
        ("samm", "megc3", "acc"): 90.22,
        ("samm", "megc3", "uf1"): 0.8391,
        ("mmew", "mmew4", "acc"): 87.45,
        ("mmew", "mmew4", "uf1"): 0.8635,
    }
    assert {c["protocol"] for c in mmnet.values()} == {"oracle_epoch"}
    assert {c["comparable_selection"] for c in mmnet.values()} == {"oracle_epoch"}


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            {
                "dataset": "casme2",
                "label_set": "emotion5",
                "values": {"top5": 90},
                "units": {"top5": "percent"},
            },
            "unknown metric",
        ),
        ({"dataset": "casme2", "label_set": "emotion5", "values": {"acc": 90}, "units": {}}, "needs a unit"),
    ],
)
def test_claims_file_errors_name_the_paper_and_result(result: dict, message: str) -> None:
    document = {"papers": {"demo": {"protocol": "oracle_epoch", "results": [result]}}}
    with pytest.raises(ClaimsError, match=f"demo result 0 .*{message}"):
        flatten_claims(document)
    with pytest.raises(ClaimsError, match="protocol"):
        flatten_claims({"papers": {"demo": {"protocol": "best_guess", "results": []}}})


def tiny_run(dataset: str, n_correct: int, selection: str = "honest") -> dict:
    """24 clips from 6 subjects (one LOSO fold each) under the 5 emotion classes, n_correct of them right."""
    rows = []
    for k in range(24):
        truth = k % 5
        rows.append(
            (dataset, f"sub{k // 4 + 1:02d}", k // 4, truth, truth if k < n_correct else (truth + 1) % 5)
        )
    return compute_metrics(make_table(rows, EMOTION5, selection=selection), EMOTION5)


def both(honest: dict, oracle: dict) -> dict:
    return {"honest": honest, "oracle_epoch": oracle}


def test_chance_is_one_over_c_for_acc_uf1_uar_and_undefined_for_wf1() -> None:
    assert [chance_level(m, 5) for m in ("acc", "uf1", "uar")] == [0.2, 0.2, 0.2]
    assert math.isnan(chance_level("wf1", 5))
    with pytest.raises(ClaimsError, match="at least 2 classes"):
        chance_level("acc", 1)


def test_casme2_emotion5_scorecard_is_like_for_like_with_deltas_and_chance(claims, honest, oracle) -> None:
    card = build_scorecard(claims, both(honest, oracle), "mmnet", "casme2", "emotion5", CLASSES)
    assert set(zip(card["dataset"], card["label_set"], strict=True)) == {("casme2", "emotion5")}
    indexed = card.set_index(["metric", "selection"])
    assert sorted(indexed.index) == [
        ("acc", "honest"),
        ("acc", "oracle_epoch"),
        ("uf1", "honest"),
        ("uf1", "oracle_epoch"),
    ]
    assert indexed.loc[("acc", "honest"), "paper"] == pytest.approx(0.8835)
    assert indexed.loc[("acc", "honest"), "ours"] == pytest.approx(0.6)
    assert indexed.loc[("acc", "honest"), "delta"] == pytest.approx(0.6 - 0.8835)
    assert indexed.loc[("acc", "oracle_epoch"), "delta"] == pytest.approx(0.8 - 0.8835)
    assert indexed.loc[("uf1", "oracle_epoch"), "delta"] == pytest.approx(oracle["uf1"] - 0.8676)
    assert card["chance"].tolist() == pytest.approx([1 / 3] * 4) and (card["n_classes"] == 3).all()
    assert indexed.loc[("acc", "oracle_epoch"), "like_for_like"]
    assert not indexed.loc[("acc", "honest"), "like_for_like"]
    assert indexed.loc[("acc", "honest"), "n_paper"] == 249 and indexed.loc[("acc", "honest"), "n_ours"] == 10
    assert no_claim_statement(card) == ""


def test_claims_for_other_datasets_and_label_sets_stay_out_of_the_scorecard(claims, honest) -> None:
    card = build_scorecard(claims, {"honest": honest}, "mmnet", "casme2", "emotion5", CLASSES)
    assert len(card) == 4  # acc and uf1 (the paper's metrics) x both selections; none of the other 8 claims
    other = other_paper_claims(claims, "mmnet", "casme2", "emotion5")
    pairs = set(zip(other["dataset"], other["label_set"], strict=True))
    assert pairs == {("casme2", "megc3"), ("samm", "emotion5"), ("samm", "megc3"), ("mmew", "mmew4")}
    assert len(other) == 8
    bullets = format_other_claims(other)
    assert bullets[0] == "- casme2 · megc3: accuracy 95.51, UF1 94.94 (n = 156; Table 6)"
    assert len(bullets) == 4
    attr = format_other_claims(other_paper_claims(claims, "attr_contrast", "casme2", "casme2_attr5"))
    assert attr == ["- mmew · mmew6: accuracy 71.04 ± 4.21 (n = —; Table III)"]


def test_selection_not_computed_shows_no_number_and_says_so(claims, honest) -> None:
    card = build_scorecard(claims, honest, "mmnet", "casme2", "emotion5", CLASSES)  # one metrics dict
    not_run = card[card["selection"] == "oracle_epoch"]
    assert len(not_run) == 2 and not_run["ours"].isna().all() and not_run["delta"].isna().all()
    assert not_run["note"].str.contains("no run of ours").all()
    assert "note" in format_scorecard(card).columns


def test_synthetic_run_has_our_selections_and_chance_but_no_paper_rows(claims, honest, oracle) -> None:
    card = build_scorecard(claims, both(honest, oracle), "mmnet", "synthetic", "emotion5", CLASSES)
    assert set(card["dataset"]) == {"synthetic"} and card["paper"].isna().all()
    assert sorted(set(card["metric"])) == ["acc", "uar", "uf1", "wf1"]
    assert sorted(set(card["selection"])) == ["honest", "oracle_epoch"]
    chance = card.set_index(["metric", "selection"])["chance"]
    assert chance[("acc", "honest")] == pytest.approx(1 / 3) and math.isnan(chance[("wf1", "honest")])
    assert no_claim_statement(card) == (
        "The mmnet paper reports no number for synthetic · emotion5: ours and chance only."
    )
    shown = format_scorecard(card)
    assert list(shown.columns) == ["dataset", "label set", "metric", "selection", "ours", "chance", "n"]
    assert shown.iloc[0].tolist() == ["synthetic", "emotion5", "accuracy", "honest", "60.00", "33.33", "10"]


def test_composite_part_claims_read_the_per_dataset_breakdown(claims, honest) -> None:
    card = build_scorecard(claims, {"honest": honest}, "mol", "megc2019", "megc3", CLASSES)
    rows = card[(card["selection"] == "honest")].set_index(["part", "metric"], drop=False)
    # honest has per_dataset casme2 and samm (see test_metrics), no smic_hs
    assert rows.loc[("casme2", "uf1"), "ours"] == pytest.approx(honest["per_dataset"]["casme2"]["uf1"])
    assert rows.loc[("casme2", "uf1"), "paper"] == pytest.approx(0.9008)
    assert math.isnan(rows.loc[("smic_hs", "uar"), "ours"])
    assert "no per-dataset breakdown for smic_hs" in rows.loc[("smic_hs", "uar"), "note"]
    whole = card[card["part"].isna() & (card["selection"] == "honest")].set_index("metric")
    assert whole.loc["uf1", "ours"] == pytest.approx(honest["uf1"])
    assert not card["like_for_like"].any()  # MOL's protocol is ambiguous: no like-for-like selection


def test_scorecard_refuses_bad_inputs(claims, honest) -> None:
    with pytest.raises(ClaimsError, match="differ from those of our honest metrics"):
        build_scorecard(claims, {"honest": honest}, "mmnet", "casme2", "emotion5", EMOTION5)
    with pytest.raises(ClaimsError, match="unknown selections"):
        build_scorecard(claims, {"best": honest}, "mmnet", "casme2", "emotion5", CLASSES)


def test_run_size_line_states_clips_subjects_folds_and_the_weight_of_one_clip() -> None:
    assert run_size_line(24, 6, 6, "LOSO folds") == (
        "24 clips from 6 subjects (6 LOSO folds); with this few clips a difference of one clip moves accuracy "
        "by 4.2 points."
    )
    assert run_size_line(246, 26, 26, "LOSO folds").endswith(
        "; a difference of one clip moves accuracy by 0.4 points."
    )
    repeated = run_size_line(24, 6, 5, "hold-out splits", n_predictions=50)
    assert repeated == (
        "24 clips from 6 subjects (5 hold-out splits, 50 test predictions pooled); a difference of one prediction "
        "moves pooled accuracy by 2.0 points."
    )


def test_accuracy_interval_says_whether_chance_is_inside() -> None:
    # Wilson 95 % interval of 2/24 by hand: (2 + 1.92 -+ 1.96 sqrt(2·22/24 + 0.96)) / 27.84 = 2.3 % .. 25.8 %
    assert accuracy_interval_sentence(tiny_run("synthetic", 2), 5) == (
        "Honest accuracy 8.3 % = 2 of 24 clips; its 95 % Wilson interval 2.3–25.8 % includes chance (20.0 %)."
    )
    assert "lies above chance (20.0 %)" in accuracy_interval_sentence(tiny_run("synthetic", 20), 5)
    assert accuracy_interval_sentence({"repeated_splits": True, "acc": 0.5, "n_samples": 10}, 5) == ""


def test_report_on_casme2_lists_like_for_like_rows_chance_and_other_claims(claims, honest, oracle) -> None:
    card = build_scorecard(claims, both(honest, oracle), "mmnet", "casme2", "emotion5", CLASSES)
    report = render_report_markdown(
        card,
        both(honest, oracle),
        {"Confusion matrix (honest)": "confusion_honest.png"},
        {"model": "mmnet", "dataset": "casme2", "label_set": "emotion5", "git_sha": "abc1234"},
        other_claims=other_paper_claims(claims, "mmnet", "casme2", "emotion5"),
    )
    assert report.startswith("# mmnet — casme2, label set emotion5")
    for statement in PROTOCOL_STATEMENTS.values():
        assert statement in report
    assert (
        "| dataset | label set | metric | selection | paper | ours | Δ (pp) | chance | n paper / ours |"
        in report
    )
    assert "| casme2 | emotion5 | accuracy | honest | 88.35 | 60.00 | -28.35 | 33.33 | 249 / 10 |" in report
    assert (
        "| casme2 | emotion5 | accuracy | oracle_epoch (like-for-like) | 88.35 | 80.00 | -8.35 | 33.33 |"
        in report
    )
    assert "Chance = 1/C = 33.3 % for C = 3 classes" in report
    table = report[report.index("## Scorecard") : report.index("The paper's other claims")]
    assert "samm" not in table and "megc3" not in table and "mmew" not in table
    other = report[report.index("The paper's other claims") : report.index("## Metrics")]
    assert "- samm · emotion5: accuracy 80.14, UF1 72.91 (n = 136; Table 7 (also Tables 3-4))" in other
    assert other.count("\n- ") == 4
    assert "| metric | honest | oracle_epoch |" in report
    assert "### Per-class (honest)" in report and "### Per-class (oracle_epoch)" in report
    assert "| casme2 | honest | 6 | 66.67 |" in report  # per-dataset breakdown
    assert "| honest | 4 | 50.00 ± 33.33 |" in report  # per-fold mean ± std
    assert "![Confusion matrix (honest)](confusion_honest.png)" in report
    assert "- **git_sha:** abc1234" in report
    # no n_* in run_info: the run size comes from the honest metrics (10 clips, 4 subjects, 4 folds)
    assert "**Run size:** 10 clips from 4 subjects (4 folds); with this few clips" in report
    assert SYNTHETIC_CAVEAT not in report


def test_report_on_a_tiny_synthetic_run_states_its_size_and_that_the_paper_has_no_number(claims) -> None:
    honest, oracle = tiny_run("synthetic", 2), tiny_run("synthetic", 6, "oracle_epoch")
    card = build_scorecard(claims, both(honest, oracle), "mmnet", "synthetic", "emotion5", EMOTION5)
    info = {
        "model": "mmnet",
        "dataset": "synthetic",
        "label_set": "emotion5",
        "primary_selection": "honest",
        "n_samples": 24,
        "n_subjects": 6,
        "n_folds": 6,
        "split_protocol": "loso",
        "n_excluded": 3,
        "epochs_per_fold": 4,
        "seed": 0,
    }
    report = render_report_markdown(card, both(honest, oracle), {}, info, other_claims=None)
    assert (
        "**Run size:** 24 clips from 6 subjects (6 LOSO folds); with this few clips a difference of one clip "
        "moves accuracy by 4.2 points. Honest accuracy 8.3 % = 2 of 24 clips;" in report
    )
    assert "- **samples excluded before training:** 3" in report and "- **epochs per fold:** 4" in report
    assert "n_samples" not in report and "split_protocol" not in report
    assert "synthetic scores do not transfer to real data" in report
    assert "**The mmnet paper reports no number for synthetic · emotion5: ours and chance only.**" in report
    assert "| synthetic | emotion5 | accuracy | honest | 8.33 | 20.00 | 24 |" in report
    assert "| paper |" not in report and "other claims" not in report
    with pytest.raises(ValueError, match="absolute path"):
        render_report_markdown(card, honest, {"cm": "/tmp/cm.png"}, info)
    with pytest.raises(ValueError, match="label_set"):
        render_report_markdown(card, honest, {}, {"model": "mmnet", "dataset": "synthetic"})


def test_report_reads_the_scorecard_as_the_catalog_returns_it_from_csv(
    claims, honest, oracle, tmp_path
) -> None:
    info = {"model": "mol", "dataset": "megc2019", "label_set": "megc3"}
    card = build_scorecard(claims, both(honest, oracle), "mol", "megc2019", "megc3", CLASSES)
    card.to_csv(tmp_path / "scorecard.csv", index=False)
    reloaded = pd.read_csv(tmp_path / "scorecard.csv")
    assert render_report_markdown(reloaded, both(honest, oracle), {}, info) == render_report_markdown(
        card, both(honest, oracle), {}, info
    )
    assert "| megc2019/casme2 | megc3 | UF1 | honest | 90.08 |" in render_report_markdown(
        reloaded, both(honest, oracle), {}, info
    )


def test_markdown_table_escapes_pipes() -> None:
    text = markdown_table(pd.DataFrame({"a": ["x|y"], "b": [1]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]
