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
    build_scorecard,
    flatten_claims,
    format_scorecard,
    load_paper_claims,
    markdown_table,
    render_report_markdown,
)
from tests.evaluation.prediction_tables import CLASSES, ROWS, make_table

PIPELINES = ("mmnet", "cva_fpf", "samer", "mol", "attr_contrast")


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


def test_scorecard_puts_claim_next_to_both_selections_with_deltas(claims, honest, oracle) -> None:
    ours = [
        {"selection": "honest", "dataset": "casme2", "label_set": "emotion5", "metrics": honest},
        {"selection": "oracle_epoch", "dataset": "casme2", "label_set": "emotion5", "metrics": oracle},
    ]
    card = build_scorecard(claims, ours, "mmnet")
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
    assert indexed.loc[("acc", "oracle_epoch"), "delta"] == pytest.approx(oracle["acc"] - 0.8835)
    assert indexed.loc[("uf1", "oracle_epoch"), "delta"] == pytest.approx(oracle["uf1"] - 0.8676)
    assert indexed.loc[("acc", "oracle_epoch"), "like_for_like"]
    assert not indexed.loc[("acc", "honest"), "like_for_like"]
    assert indexed.loc[("acc", "honest"), "n_paper"] == 249 and indexed.loc[("acc", "honest"), "n_ours"] == 10


def test_missing_selection_and_unreported_dataset_show_no_number_and_say_so(claims, honest) -> None:
    ours = [
        {"selection": "honest", "dataset": "casme2", "label_set": "emotion5", "metrics": honest},
        {"selection": "honest", "dataset": "synthetic", "label_set": "emotion5", "metrics": honest},
    ]
    card = build_scorecard(claims, ours, "mmnet")
    not_run = card[(card["dataset"] == "casme2") & (card["selection"] == "oracle_epoch")]
    assert len(not_run) == 2 and not_run["ours"].isna().all() and not_run["delta"].isna().all()
    assert not_run["note"].str.contains("no run of ours").all()
    synthetic = card[card["dataset"] == "synthetic"]
    assert sorted(set(synthetic["metric"])) == ["acc", "uar", "uf1", "wf1"]
    assert synthetic["paper"].isna().all()
    assert synthetic["note"].str.contains("paper reports no result for synthetic emotion5").all()
    assert synthetic["note"].str.contains("do not transfer to real data").all()
    shown = format_scorecard(synthetic)
    assert set(shown["paper"]) == {"—"} and set(shown["Δ (pp)"]) == {"—"}
    honest_acc = shown[(shown["metric"] == "acc") & (shown["selection"] == "honest")]
    assert honest_acc["ours"].tolist() == ["60.00"]


def test_composite_part_claims_read_the_per_dataset_breakdown(claims, honest) -> None:
    ours = [{"selection": "honest", "dataset": "megc2019", "label_set": "megc3", "metrics": honest}]
    card = build_scorecard(claims, ours, "mol")
    rows = card[(card["selection"] == "honest")].set_index(["part", "metric"], drop=False)
    # honest has per_dataset casme2 and samm (see test_metrics), no smic_hs
    assert rows.loc[("casme2", "uf1"), "ours"] == pytest.approx(honest["per_dataset"]["casme2"]["uf1"])
    assert rows.loc[("casme2", "uf1"), "paper"] == pytest.approx(0.9008)
    assert math.isnan(rows.loc[("smic_hs", "uar"), "ours"])
    assert "no per-dataset breakdown for smic_hs" in rows.loc[("smic_hs", "uar"), "note"]
    whole = card[card["part"].isna() & (card["selection"] == "honest")].set_index("metric")
    assert whole.loc["uf1", "ours"] == pytest.approx(honest["uf1"])
    assert not card["like_for_like"].any()  # MOL's protocol is ambiguous: no like-for-like selection


def test_unmatched_claims_only_on_request_and_duplicates_refused(claims, honest) -> None:
    ours = [{"selection": "honest", "dataset": "casme2", "label_set": "emotion5", "metrics": honest}]
    full = build_scorecard(claims, ours, "mmnet", include_unmatched_claims=True)
    assert len(full) == 2 * sum(c["model"] == "mmnet" for c in claims)
    with pytest.raises(ClaimsError, match="share selection"):
        build_scorecard(claims, ours + ours, "mmnet")
    with pytest.raises(ClaimsError, match="lacks keys"):
        build_scorecard(claims, [{"selection": "honest", "dataset": "casme2"}], "mmnet")


def test_report_states_protocols_and_shows_both_selections(claims, honest, oracle) -> None:
    ours = [
        {"selection": "honest", "dataset": "casme2", "label_set": "emotion5", "metrics": honest},
        {"selection": "oracle_epoch", "dataset": "casme2", "label_set": "emotion5", "metrics": oracle},
    ]
    card = build_scorecard(claims, ours, "mmnet")
    report = render_report_markdown(
        card,
        {"honest": honest, "oracle_epoch": oracle},
        {"Confusion matrix (honest)": "figures/confusion_honest.png"},
        {"model": "mmnet", "dataset": "casme2", "label_set": "emotion5", "git_sha": "abc1234"},
    )
    assert report.startswith("# mmnet — casme2, label set emotion5")
    for statement in PROTOCOL_STATEMENTS.values():
        assert statement in report
    assert (
        "oracle_epoch: best epoch chosen on the test subject — an upper bound, as the paper reports" in report
    )
    assert "| casme2 | emotion5 | acc | honest | 88.35 | 60.00 | -28.35 |" in report
    assert (
        f"| casme2 | emotion5 | acc | oracle_epoch (like-for-like) | 88.35 | {100 * oracle['acc']:.2f} |"
        in report
    )
    assert "| metric | honest | oracle_epoch |" in report
    assert "### Per-class (honest)" in report and "### Per-class (oracle_epoch)" in report
    assert "| casme2 | honest | 6 | 66.67 |" in report  # per-dataset breakdown
    assert "| honest | 4 | 50.00 ± 33.33 |" in report  # per-fold mean ± std
    assert "![Confusion matrix (honest)](figures/confusion_honest.png)" in report
    assert "**git_sha:** abc1234" in report
    assert SYNTHETIC_CAVEAT not in report


def test_report_on_synthetic_carries_the_caveat_and_refuses_absolute_figure_paths(claims, honest) -> None:
    ours = [{"selection": "honest", "dataset": "synthetic", "label_set": "emotion5", "metrics": honest}]
    card = build_scorecard(claims, ours, "mmnet")
    info = {"model": "mmnet", "dataset": "synthetic", "label_set": "emotion5"}
    report = render_report_markdown(card, honest, {}, info)
    assert "synthetic scores do not transfer to real data" in report
    assert "| synthetic | emotion5 | acc | honest | — | 60.00 | — |" in report
    with pytest.raises(ValueError, match="absolute path"):
        render_report_markdown(card, honest, {"cm": "/tmp/cm.png"}, info)
    with pytest.raises(ValueError, match="label_set"):
        render_report_markdown(card, honest, {}, {"model": "mmnet", "dataset": "synthetic"})


def test_markdown_table_escapes_pipes() -> None:
    text = markdown_table(pd.DataFrame({"a": ["x|y"], "b": [1]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]
