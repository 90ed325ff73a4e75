"""Honest (last epoch) vs oracle-epoch (best test epoch) prediction tables on hand-made fold outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from microexpr.evaluation.metrics import REQUIRED_COLUMNS, validate_predictions
from microexpr.training.loop import HISTORY_COLUMNS, FoldOutcome
from microexpr.training.selection import oracle_epoch, prediction_tables

CLASSES = ["happiness", "surprise", "others"]
META = {
    "sample_id": np.array(
        ["casme2/sub01/EP01", "casme2/sub01/EP02", "casme2/sub01/EP03", "casme2/sub02/EP01"]
    ),
    "dataset": np.array(["casme2"] * 4),
    "subject": np.array(["sub01", "sub01", "sub01", "sub02"]),
    "fold_subject": np.array(["casme2/sub01"] * 3 + ["casme2/sub02"]),
    "y": np.array([0, 1, 2, 2]),
}


def _one_hot(predicted: list[int], confidence: float = 0.8) -> np.ndarray:
    probs = np.full((len(predicted), len(CLASSES)), (1 - confidence) / (len(CLASSES) - 1), dtype=np.float32)
    probs[np.arange(len(predicted)), predicted] = confidence
    return probs


def _outcome(
    predicted_per_epoch: list[list[int]], evaluated: list[int] | None = None, epochs: int | None = None
) -> FoldOutcome:
    """Fold testing sub01's three samples; ``predicted_per_epoch`` are the arg-max classes after each epoch."""
    epochs = epochs or len(predicted_per_epoch)
    evaluated = evaluated or list(range(1, epochs + 1))
    history = pd.DataFrame(
        [(e, 1.0 / e, 0.5, 1e-3, 1.0, 10.0, np.nan) for e in range(1, epochs + 1)],
        columns=list(HISTORY_COLUMNS),
    )
    return FoldOutcome(
        history=history,
        test_sample_ids=META["sample_id"][:3],
        epoch_probs=np.stack([_one_hot(p) for p in predicted_per_epoch]),
        evaluated_epochs=np.array(evaluated),
        classes=CLASSES,
        extras={},
        seed=0,
        device="cpu",
        precision="fp32",
        channels_last=False,
        wall_seconds=1.0,
    )


def test_honest_takes_the_last_epoch_and_oracle_the_best_test_epoch() -> None:
    # truth for sub01 is [0, 1, 2]: epoch 1 gets 1 right, epoch 2 all 3, epoch 3 gets 2 right
    outcome = _outcome([[0, 0, 0], [0, 1, 2], [0, 1, 1]])
    table = prediction_tables(outcome, "fold_000", META, CLASSES)
    assert list(table.columns) == [*REQUIRED_COLUMNS, *(f"score_{c}" for c in CLASSES)]
    honest = table[table["selection"] == "honest"]
    oracle = table[table["selection"] == "oracle_epoch"]
    assert honest["epoch"].tolist() == [3, 3, 3] and honest["y_pred"].tolist() == [0, 1, 1]
    assert oracle["epoch"].tolist() == [2, 2, 2] and oracle["y_pred"].tolist() == [0, 1, 2]
    assert honest["label_pred"].tolist() == ["happiness", "surprise", "surprise"]
    assert honest["y_true"].tolist() == [0, 1, 2] and (table["fold"] == "fold_000").all()
    np.testing.assert_allclose(oracle["score_others"].to_numpy(), outcome.epoch_probs[1][:, 2])
    assert oracle["fold_subject"].tolist() == ["casme2/sub01"] * 3
    for selection in ("honest", "oracle_epoch"):
        validate_predictions(table[table["selection"] == selection], CLASSES)


def test_oracle_ties_go_to_the_earliest_epoch() -> None:
    outcome = _outcome([[0, 0, 0], [0, 1, 0], [2, 1, 2], [0, 1, 1]])  # epochs 2, 3, 4 each get 2 right
    assert oracle_epoch(outcome.epoch_probs, META["y"][:3], outcome.evaluated_epochs) == 2
    table = prediction_tables(outcome, "fold_000", META, CLASSES, selections=("oracle_epoch",))
    assert set(table["selection"]) == {"oracle_epoch"} and set(table["epoch"]) == {2}


def test_oracle_is_refused_without_per_epoch_evaluation_but_honest_works() -> None:
    outcome = _outcome([[0, 1, 1]], evaluated=[5], epochs=5)
    with pytest.raises(ValueError, match="evaluate_each_epoch"):
        prediction_tables(outcome, "fold_001", META, CLASSES)
    honest = prediction_tables(outcome, "fold_001", META, CLASSES, selections=("honest",))
    assert honest["epoch"].tolist() == [5, 5, 5]


def test_empty_test_side_gives_an_empty_table_with_the_contract_columns() -> None:
    outcome = _outcome([[], []])
    outcome.test_sample_ids = np.array([], dtype=str)
    outcome.epoch_probs = np.zeros((2, 0, 3), dtype=np.float32)
    table = prediction_tables(outcome, "fold_002", META, CLASSES)
    assert table.empty and list(table.columns)[: len(REQUIRED_COLUMNS)] == list(REQUIRED_COLUMNS)


def test_unknown_samples_and_class_mismatch_are_named() -> None:
    outcome = _outcome([[0, 1, 2]])
    meta = {key: values[1:] for key, values in META.items()}  # drops casme2/sub01/EP01
    with pytest.raises(KeyError, match="casme2/sub01/EP01"):
        prediction_tables(outcome, "fold_000", meta, CLASSES)
    with pytest.raises(ValueError, match="classes"):
        prediction_tables(outcome, "fold_000", META, ["a", "b", "c"])
    with pytest.raises(ValueError, match="best"):
        prediction_tables(outcome, "fold_000", META, CLASSES, selections=("best",))
