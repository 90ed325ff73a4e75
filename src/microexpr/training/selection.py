"""One fold's outcome → prediction-table rows, under the honest protocol and the papers' oracle-epoch protocol.

- ``honest``: the last epoch's probabilities. The schedule is fixed in advance, so nothing reads the test subject.
- ``oracle_epoch``: per fold, the epoch with the highest accuracy on that fold's test samples (what MMNet's,
  CVA's and SAMER's reference code do implicitly). Ties go to the **earliest** such epoch, as the reference's
  accuracy rule (it keeps a new maximum only on a strict improvement). The reference picks its accuracy and F1 at
  separate epochs (best correct count, best F1); we pick **one** epoch per fold by accuracy and report every
  metric from it, so the table stays one consistent set of predictions. The number is an upper bound and is
  reported separately, never pooled with ``honest`` (the ``selection`` column says which is which).
- ``validated_epoch`` (optional: a model's ``selections`` must name it; it costs one extra training per fold):
  honest early stopping. The training fold's subjects are split once more (``inner_subject_split``; size
  ``training.validation_subjects``); a fresh model trains on the inner-training subjects with the same schedule and
  predicts the held-out training subjects after every epoch; the epoch with the most correct held-out predictions
  (ties: the earliest, as ``oracle_epoch``) is chosen, and the fold's own model (trained on the whole training fold)
  predicts the test subject with its probabilities after that epoch. The test subject chooses nothing.

Table contract: microexpr.evaluation.metrics (``sample_id, dataset, subject, fold_subject, fold, y_true, y_pred,
label_true, label_pred, selection, epoch, score_<class>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from microexpr.evaluation.metrics import (
    ALL_SELECTIONS,
    AUX_ANNOTATED_PREFIX,
    AUX_PREDICTED_PREFIX,
    AUX_PREFIX,
    REQUIRED_COLUMNS,
    SELECTIONS,
)
from microexpr.training.loop import FoldOutcome, TrainConfig, train_fold

__all__ = ["META_KEYS", "inner_subject_split", "oracle_epoch", "prediction_tables", "validated_epoch"]

META_KEYS: tuple[str, ...] = ("sample_id", "dataset", "subject", "fold_subject", "y")


def oracle_epoch(epoch_probs: np.ndarray, y_true: np.ndarray, evaluated_epochs: np.ndarray) -> int:
    """The evaluated epoch with the most correct test predictions; ties → the earliest (see module docstring)."""
    if epoch_probs.shape[1] == 0:
        return int(evaluated_epochs[-1])
    correct = (epoch_probs.argmax(axis=2) == np.asarray(y_true)[None, :]).sum(axis=1)
    return int(evaluated_epochs[int(np.argmax(correct))])  # argmax returns the first maximum


def inner_subject_split(
    fold_subjects: np.ndarray, size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into ``fold_subjects``, the training side's subject of each sample) of the inner-training and the
    held-out validation samples: ``size`` of the subjects (a fraction if < 1, else a count; at least one, never
    all) drawn at random with ``seed``. ValueError with fewer than two training subjects."""
    subjects = np.unique(np.asarray(fold_subjects).astype(str))
    if subjects.size < 2:
        raise ValueError(f"validated_epoch needs at least 2 training subjects to hold some out, got {subjects.size}")
    count = int(round(size * subjects.size)) if size < 1 else int(size)
    count = min(max(count, 1), subjects.size - 1)
    held_out = np.random.default_rng(seed).choice(subjects, size=count, replace=False)
    is_held_out = np.isin(np.asarray(fold_subjects).astype(str), held_out)
    return np.flatnonzero(~is_held_out), np.flatnonzero(is_held_out)


def validated_epoch(
    model_name: str, model_cfg: Mapping[str, Any] | None, inputs: Mapping[str, np.ndarray], train_idx: np.ndarray,
    cfg: TrainConfig | Mapping[str, Any], seed: int, task_cfg: Any = None,
) -> int:
    """The epoch chosen for one fold on held-out *training* subjects (module docstring); ``train_idx`` = the
    fold's training positions into the bundle. Only training samples are read."""
    cfg = TrainConfig.from_params(cfg)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    inner, held_out = inner_subject_split(np.asarray(inputs["fold_subject"])[train_idx], cfg.validation_subjects,
                                          seed)
    inner_cfg = replace(cfg, evaluate_each_epoch=True, report_samples=0, return_model_state=False)
    outcome = train_fold(model_name, model_cfg, inputs, train_idx[inner], train_idx[held_out], inner_cfg, seed,
                         task_cfg=task_cfg)
    return oracle_epoch(outcome.epoch_probs, np.asarray(inputs["y"])[train_idx[held_out]], outcome.evaluated_epochs)


def _test_rows(meta: Mapping[str, np.ndarray], sample_ids: np.ndarray) -> dict[str, np.ndarray]:
    """The meta columns of the test samples, in the outcome's order; KeyError naming unknown sample ids."""
    missing_keys = [key for key in META_KEYS if key not in meta]
    if missing_keys:
        raise KeyError(f"meta lacks {missing_keys} (needs {list(META_KEYS)})")
    all_ids = np.asarray(meta["sample_id"]).astype(str)
    position = pd.Index(all_ids)
    if not position.is_unique:
        raise ValueError(f"meta sample_id repeats: {sorted(set(all_ids[position.duplicated()]))[:5]}")
    rows = position.get_indexer(sample_ids.astype(str))
    if (rows < 0).any():
        raise KeyError(f"test samples not in meta: {sample_ids[rows < 0][:5].tolist()}")
    return {key: np.asarray(meta[key])[rows] for key in META_KEYS}


def _table(
    probs: np.ndarray,
    rows: Mapping[str, np.ndarray],
    classes: Sequence[str],
    fold: str,
    selection: str,
    epoch: int,
) -> pd.DataFrame:
    y_true = rows["y"].astype(np.int64)
    y_pred = probs.argmax(axis=1).astype(np.int64)
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame(
        {
            "sample_id": rows["sample_id"].astype(str),
            "dataset": rows["dataset"].astype(str),
            "subject": rows["subject"].astype(str),
            "fold_subject": rows["fold_subject"].astype(str),
            "fold": np.full(y_true.size, str(fold), dtype=object),
            "y_true": y_true,
            "y_pred": y_pred,
            "label_true": names[y_true],
            "label_pred": names[y_pred],
            "selection": np.full(y_true.size, selection, dtype=object),
            "epoch": np.full(y_true.size, epoch, dtype=np.int64),
        }
    )
    scores = pd.DataFrame(probs.astype(np.float32), columns=[f"score_{c}" for c in classes])
    return pd.concat([table, scores], axis=1)


def prediction_tables(
    outcome: FoldOutcome,
    fold: str,
    meta: Mapping[str, np.ndarray],
    classes: Sequence[str],
    selections: Sequence[str] = SELECTIONS,
    validated: int | None = None,
) -> pd.DataFrame:
    """Prediction-table rows of one fold for each selection in ``selections`` (stacked; ``selection`` column).

    ``meta`` holds per-sample arrays over all samples (``META_KEYS``; ``y`` = label ids in ``classes`` order);
    the test samples are looked up by ``outcome.test_sample_ids``. ``oracle_epoch`` is refused (ValueError)
    when the outcome was not evaluated after every epoch. An empty test side gives an empty table with the
    contract's columns. ``validated``: the epoch ``validated_epoch`` chose (needed when ``selections`` name it).
    """
    classes = [str(c) for c in classes]
    if classes != [str(c) for c in outcome.classes]:
        raise ValueError(f"fold {fold}: classes {classes} differ from the outcome's {outcome.classes}")
    unknown = [s for s in selections if s not in ALL_SELECTIONS]
    if unknown or not selections:
        raise ValueError(
            f"fold {fold}: unknown selection(s) {unknown or list(selections)}; choose from {ALL_SELECTIONS}"
        )
    if "validated_epoch" in selections and (validated is None or validated not in outcome.evaluated_epochs):
        raise ValueError(
            f"fold {fold}: validated_epoch needs the chosen epoch ({validated!r}) among the evaluated epochs "
            f"{outcome.evaluated_epochs.tolist()} (train with evaluate_each_epoch: true)"
        )
    if "oracle_epoch" in selections and not outcome.evaluated_each_epoch:
        raise ValueError(
            f"fold {fold}: oracle_epoch selection needs the test predictions of every epoch, but this outcome "
            f"holds epochs {outcome.evaluated_epochs.tolist()} of {outcome.epochs} "
            "(train with evaluate_each_epoch: true)"
        )
    if outcome.evaluated_epochs[-1] != outcome.epochs:
        raise ValueError(
            f"fold {fold}: the outcome lacks the last epoch's predictions (epoch {outcome.epochs}); "
            f"it holds epochs {outcome.evaluated_epochs.tolist()}"
        )
    rows = _test_rows(meta, np.asarray(outcome.test_sample_ids))
    tables = []
    for selection in selections:
        if selection == "honest":
            epoch = outcome.epochs
        elif selection == "validated_epoch":
            epoch = int(validated)
        else:
            epoch = oracle_epoch(outcome.epoch_probs, rows["y"], outcome.evaluated_epochs)
        slot = int(np.flatnonzero(outcome.evaluated_epochs == epoch)[0])
        tables.append(_table(outcome.epoch_probs[slot], rows, classes, fold, selection, epoch))
    table = pd.concat(tables, ignore_index=True)
    table = table[[*REQUIRED_COLUMNS, *(f"score_{c}" for c in classes)]]
    for name, values in sorted(outcome.auxiliary.items()):  # measured after the last epoch, whatever the selection
        table[f"{AUX_PREFIX}{name}"] = np.tile(np.asarray(values, dtype=np.float64), len(selections))
    for name, found in sorted(outcome.detections.items()):  # likewise
        table[f"{AUX_PREDICTED_PREFIX}{name}"] = np.tile(np.asarray(found.predicted, dtype=np.int8), len(selections))
        table[f"{AUX_ANNOTATED_PREFIX}{name}"] = np.tile(np.asarray(found.annotated, dtype=np.int8), len(selections))
    return table
