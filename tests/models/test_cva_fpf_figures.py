"""CVA-FPF's AU head scored against the shown test samples' annotated AUs (joined after prediction)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from microexpr.models.cva_fpf import AU21_ORDER, N_AUS, CVAFPFTask, au_head_accuracy


def test_au_head_accuracy_per_au_against_a_hand_count() -> None:
    probs = np.zeros((4, N_AUS), dtype=np.float32)
    targets = np.zeros((4, N_AUS), dtype=np.float32)
    probs[:, 0] = [0.9, 0.6, 0.1, 0.5]  # >= 0.5 -> present, present, absent, present
    targets[:, 0] = [1, 0, 0, 1]  # 3 of 4 right
    table = au_head_accuracy(probs, targets)
    assert table.loc[0, "au"] == f"AU{AU21_ORDER[0]}" and table.loc[0, "n_present"] == 2
    assert table.loc[0, "accuracy"] == 0.75 and table.loc[0, "absent_baseline"] == 0.5
    assert (table.loc[1:, "accuracy"] == 1.0).all()


def test_annotated_figures_add_the_au_accuracy_only_when_the_head_predicts() -> None:
    extras = {"sample_ids": np.array(["a", "b"]), "fold": np.array(["f1", "f2"]),
              "faces": np.zeros((2, 112, 112, 3), dtype=np.uint8),
              "row_profile": np.random.default_rng(0).random((2, 56)).astype(np.float16),
              "au_probs": np.random.default_rng(1).random((2, N_AUS)).astype(np.float16)}
    annotations = pd.DataFrame({"sample_id": ["a", "b"], "fold": ["f1", "f2"], "y_true": [0, 1],
                                "label_true": ["x", "y"], "label": ["x", "y"], "aus": [["L12"], ["4"]],
                                "au_codes": [[12], [4]]})
    figures = CVAFPFTask.make_annotated_report_figures(extras, str, annotations)
    assert set(figures) == {"vertical_attention", "au_predictions", "au_head_accuracy"}
    assert "mean" in figures["au_head_accuracy"].axes[0].get_title()
    no_head = CVAFPFTask.make_annotated_report_figures({**extras, "au_probs": np.zeros((2, 0))}, str, annotations)
    assert set(no_head) == {"vertical_attention"}  # au_source annotation / none: no AU head to score
