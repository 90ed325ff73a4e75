"""Evaluation figures render to PNG, carry legible titles, and show the numbers they are given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from microexpr.evaluation.figures import (
    attention_overlay_figure,
    confusion_matrix_figure,
    per_subject_accuracy_figure,
    run_title,
    scorecard_figure,
    training_curves_figure,
)
from microexpr.evaluation.metrics import compute_metrics
from microexpr.evaluation.scorecard import build_scorecard, load_paper_claims
from tests.evaluation.prediction_tables import CLASSES, ROWS, make_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def save_png(figure: Figure, path: Path) -> bytes:
    figure.savefig(path, dpi=50)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    return data


def test_run_title_names_dataset_label_set_and_selection() -> None:
    title = run_title(
        "Confusion matrix", model="mmnet", dataset="casme2", label_set="emotion5", selection="honest"
    )
    assert title == "Confusion matrix — mmnet · casme2 · emotion5 · selection: honest"
    assert run_title("Curves") == "Curves"


def test_confusion_matrix_annotates_counts_and_row_percentages(tmp_path: Path) -> None:
    cm = compute_metrics(make_table(), CLASSES)["confusion_matrix"]  # [[3,1,0],[0,1,1],[1,1,2]]
    title = run_title("Confusion matrix", dataset="casme2", label_set="emotion5", selection="oracle_epoch")
    figure = confusion_matrix_figure(cm, CLASSES, title)
    save_png(figure, tmp_path / "cm.png")
    ax = figure.axes[0]
    assert "selection: oracle_epoch" in ax.get_title() and "emotion5" in ax.get_title()
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    texts = [t.get_text() for t in ax.texts]
    # row "happiness" has 4 true samples: 3 -> 75.0 %, 1 -> 25.0 %; row "others": 1, 1, 2 of 4
    assert texts[:3] == ["3\n75.0%", "1\n25.0%", "0\n0.0%"]
    assert texts[6:] == ["1\n25.0%", "1\n25.0%", "2\n50.0%"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "happiness (n=4)",
        "surprise (n=2)",
        "others (n=4)",
    ]
    image = ax.images[0].get_array()
    assert image[2, 2] == pytest.approx(0.5)  # normalised colour = row rate


def test_confusion_matrix_counts_mode_and_empty_row(tmp_path: Path) -> None:
    figure = confusion_matrix_figure([[2, 0], [0, 0]], ["a", "b"], "counts", normalise=False)
    save_png(figure, tmp_path / "cm_counts.png")
    ax = figure.axes[0]
    assert ax.images[0].get_array()[0, 0] == 2
    assert [t.get_text() for t in ax.texts][2:] == ["0\nn/a", "0\nn/a"]
    with pytest.raises(ValueError, match="does not match 3 classes"):
        confusion_matrix_figure([[1, 0], [0, 1]], ["a", "b", "c"], "bad")


def test_per_subject_bars_sorted_with_counts(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"fold_subject": ["casme2/sub10", "casme2/sub2", "samm/006"], "n": [4, 2, 1], "acc": [0.5, 1.0, 0.0]}
    )
    title = run_title("Per-subject accuracy", dataset="megc2019", label_set="megc3", selection="honest")
    figure = per_subject_accuracy_figure(table, title)
    save_png(figure, tmp_path / "subjects.png")
    ax = figure.axes[0]
    assert "Per-subject accuracy" in ax.get_title() and "megc3" in ax.get_title()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["casme2/sub2", "casme2/sub10", "samm/006"]
    assert [bar.get_height() for bar in ax.patches] == pytest.approx([100.0, 50.0, 0.0])
    assert [t.get_text() for t in ax.texts] == ["n=2", "n=4", "n=1"]
    pooled_line = ax.lines[0].get_ydata()[0]
    assert pooled_line == pytest.approx(100 * (2 * 1.0 + 4 * 0.5) / 7)  # sample-weighted = pooled accuracy


def test_per_subject_accepts_compute_metrics_records(tmp_path: Path) -> None:
    records = compute_metrics(make_table(), CLASSES)["per_subject"]
    figure = per_subject_accuracy_figure(records)
    save_png(figure, tmp_path / "subjects2.png")
    assert len(figure.axes[0].patches) == 4


def test_training_curves_draw_each_fold_and_the_bold_mean(tmp_path: Path) -> None:
    history = pd.DataFrame(
        [
            {
                "fold": fold,
                "epoch": epoch,
                "train_loss": 1.0 + fold - 0.1 * epoch,
                "train_acc": 0.1 * epoch + 0.2 * fold,
            }
            for fold in range(3)
            for epoch in range(1, 5)
        ]
    )
    title = run_title("Training curves", model="mmnet", dataset="synthetic", label_set="emotion5")
    figure = training_curves_figure(history, title)
    save_png(figure, tmp_path / "curves.png")
    loss_ax, acc_ax = figure.axes
    assert "synthetic" in figure.get_suptitle() and "3 folds" in figure.get_suptitle()
    assert loss_ax.get_xlabel() == "epoch" and "loss" in loss_ax.get_ylabel()
    assert len(loss_ax.lines) == 4  # 3 folds + mean
    mean_line = max(loss_ax.lines, key=lambda line: line.get_linewidth())
    # mean loss at epoch e over folds 0,1,2 = 1 + 1 - 0.1 e
    assert mean_line.get_ydata() == pytest.approx([2.0 - 0.1 * e for e in range(1, 5)])
    acc_mean = max(acc_ax.lines, key=lambda line: line.get_linewidth())
    assert acc_mean.get_ydata() == pytest.approx([100 * (0.1 * e + 0.2) for e in range(1, 5)])
    with pytest.raises(ValueError, match="train_acc"):
        training_curves_figure(history.drop(columns=["train_acc"]))


def test_training_curves_have_a_panel_per_named_loss_term(tmp_path: Path) -> None:
    """A task's named loss terms get their own panels; a single term equal to the total adds none."""
    rows = [{"fold": f, "epoch": e, "train_loss": 3.0 - 0.2 * e, "train_loss_ce": 1.5 - 0.1 * e,
             "train_loss_flow": 1.0 - 0.05 * e + f, "train_loss_align": 0.5, "train_acc": 0.2 * e}
            for f in range(2) for e in range(1, 4)]
    history = pd.DataFrame(rows)
    figure = training_curves_figure(history, "Training curves")
    save_png(figure, tmp_path / "terms.png")
    titles = [ax.get_title() for ax in figure.axes if ax.lines]
    assert titles == ["training loss (total)", "loss term: ce", "loss term: flow", "loss term: align",
                      "training accuracy (%)"]
    flow_ax = next(ax for ax in figure.axes if ax.get_title() == "loss term: flow")
    mean = max(flow_ax.lines, key=lambda line: line.get_linewidth())
    assert mean.get_ydata() == pytest.approx([1.0 - 0.05 * e + 0.5 for e in range(1, 4)])
    single = history.drop(columns=["train_loss_flow", "train_loss_align"]).assign(train_loss_ce=history["train_loss"])
    assert [ax.get_title() for ax in training_curves_figure(single).axes if ax.lines] == [
        "training loss (total)", "training accuracy (%)"]


def test_attention_overlay_small_multiples_share_one_colour_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 255, size=(24, 20, 3), dtype=np.uint8) for _ in range(5)]
    maps = [rng.random((7, 7)) * (k + 1) for k in range(5)]
    titles = [f"casme2/sub0{k} apex" for k in range(5)]
    figure = attention_overlay_figure(
        faces, maps, titles, title="CA attention — casme2 · emotion5", columns=3
    )
    save_png(figure, tmp_path / "attention.png")
    panels = [ax for ax in figure.axes if ax.images]
    overlays = [ax.images[1] for ax in panels[:5]]
    assert [ax.get_title() for ax in panels[:5]] == titles
    assert {o.get_clim() for o in overlays} == {(min(m.min() for m in maps), max(m.max() for m in maps))}
    assert overlays[0].get_extent() == pytest.approx([-0.5, 19.5, 23.5, -0.5])  # map stretched over the face
    assert any(ax.get_ylabel() == "attention" for ax in figure.axes)  # the colour bar
    assert "casme2" in figure.get_suptitle()


def test_attention_overlay_rejects_bad_inputs() -> None:
    face = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="equal"):
        attention_overlay_figure([face], [], ["x"])
    with pytest.raises(ValueError, match="RGB uint8"):
        attention_overlay_figure([face.astype(float)], [np.zeros((2, 2))], ["x"])
    with pytest.raises(ValueError, match="2-D"):
        attention_overlay_figure([face], [np.zeros((2, 2, 2))], ["x"])


def _bars(figure: Figure) -> dict[str, list[float]]:
    """Legend label -> bar heights of every bar series in the scorecard axes."""
    return {c.get_label(): [b.get_height() for b in c] for c in figure.axes[0].containers}


def _chance_lines(figure: Figure) -> list[tuple[str, list[float]]]:
    """(label, y of each segment) of the dashed chance lines."""
    return [
        (c.get_label(), [float(seg[0][1]) for seg in c.get_segments()])
        for c in figure.axes[0].collections
        if "chance" in c.get_label()
    ]


@pytest.fixture(scope="module")
def both_selections() -> dict:
    rows = [(d, s, f, t, t if k in (2, 4) else p) for k, (d, s, f, t, p) in enumerate(ROWS)]
    return {
        "honest": compute_metrics(make_table(), CLASSES),  # acc 0.6
        "oracle_epoch": compute_metrics(make_table(rows, selection="oracle_epoch", epoch=11), CLASSES),  # 0.8
    }


def test_scorecard_figure_on_synthetic_shows_ours_and_chance_and_no_paper(
    tmp_path: Path, both_selections
) -> None:
    card = build_scorecard(load_paper_claims(), both_selections, "mmnet", "synthetic", "emotion5", CLASSES)
    figure = scorecard_figure(card, "mmnet: ours vs the paper — synthetic · emotion5")
    save_png(figure, tmp_path / "scorecard.png")
    ax = figure.axes[0]
    bars = _bars(figure)
    assert list(bars) == ["ours: honest", "ours: oracle_epoch"]  # no paper series
    assert bars["ours: honest"][0] == pytest.approx(60.0) and bars["ours: oracle_epoch"][0] == pytest.approx(
        80.0
    )
    assert [t.get_text() for t in ax.get_xticklabels()] == ["accuracy", "UF1", "UAR", "WF1"]
    assert _chance_lines(figure) == [("chance = 1/C = 33.3 % (C = 3)", pytest.approx([100 / 3] * 3))]
    assert "reports no number for synthetic · emotion5" in ax.get_title()
    caption = " ".join(figure.legends[0].get_title().get_text().split())  # the legend title is wrapped
    assert "guessing uniformly at random" in caption and "WF1 has no chance level" in caption
    assert ax.get_xlabel() == "synthetic · label set emotion5 · ours on 10 clips"


def test_scorecard_figure_on_casme2_puts_the_claim_beside_both_selections(
    tmp_path: Path, both_selections
) -> None:
    card = build_scorecard(load_paper_claims(), both_selections, "mmnet", "casme2", "emotion5", CLASSES)
    figure = scorecard_figure(card, "mmnet: ours vs the paper — casme2 · emotion5")
    save_png(figure, tmp_path / "scorecard.png")
    ax = figure.axes[0]
    bars = _bars(figure)
    assert list(bars) == [
        "paper claim (oracle_epoch)",
        "ours: honest",
        "ours: oracle_epoch (like-for-like with the paper)",
    ]
    assert bars["paper claim (oracle_epoch)"] == pytest.approx([88.35, 86.76])
    assert bars["ours: honest"][0] == pytest.approx(60.0)
    # only the run's dataset + label set: MMNet's 8 other claims (SAMM, megc3, MMEW) are not bars
    assert [t.get_text() for t in ax.get_xticklabels()] == ["accuracy", "UF1"]
    assert _chance_lines(figure)[0][1] == pytest.approx([100 / 3] * 2)
    labels = [t.get_text() for t in ax.texts]
    honest_acc = next(t for t in labels if t.startswith("60.0\n"))
    assert float(honest_acc.split("Δ ")[1]) == pytest.approx(60.0 - 88.35, abs=0.06)
    assert "reports no number" not in ax.get_title()
    assert ax.get_xlabel() == "casme2 · label set emotion5 · ours on 10 clips (paper: 249)"


def test_scorecard_figure_marks_a_selection_not_computed(both_selections) -> None:
    honest_only = {"honest": both_selections["honest"]}
    card = build_scorecard(load_paper_claims(), honest_only, "mmnet", "casme2", "emotion5", CLASSES)
    figure = scorecard_figure(card, "t")
    assert [t.get_text() for t in figure.axes[0].texts][-2:] == ["—", "—"]  # oracle_epoch: no bars to read
    with pytest.raises(ValueError, match="chance"):
        scorecard_figure(card.drop(columns=["chance"]), "t")
