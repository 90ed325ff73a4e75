"""One fold's outcome → prediction-table rows, under the honest protocol and the papers' oracle-epoch protocol.

- ``honest``: the last epoch's probabilities. The schedule is fixed in advance, so nothing reads the test subject.
- ``oracle_epoch``: per fold, the epoch with the highest accuracy on that fold's test samples (what MMNet's,
  CVA's and SAMER's reference code do implicitly). Ties go to the **earliest** such epoch, as the reference's
  accuracy rule (it keeps a new maximum only on a strict improvement). The reference picks its accuracy and F1 at
  separate epochs (best correct count, best F1); we pick **one** epoch per fold by accuracy and report every
  metric from it, so the table stays one consistent set of predictions. The number is an upper bound and is
  reported separately, never pooled with ``honest`` (the ``selection`` column says which is which).

Table contract: microexpr.evaluation.metrics (``sample_id, dataset, subject, fold_subject, fold, y_true, y_pred,
label_true, label_pred, selection, epoch, score_<class>``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from microexpr.evaluation.metrics import REQUIRED_COLUMNS, SELECTIONS
from microexpr.training.loop import FoldOutcome

__all__ = ["META_KEYS", "oracle_epoch", "prediction_tables"]

META_KEYS: tuple[str, ...] = ("sample_id", "dataset", "subject", "fold_subject", "y")


def oracle_epoch(epoch_probs: np.ndarray, y_true: np.ndarray, evaluated_epochs: np.ndarray) -> int:
    """The evaluated epoch with the most correct test predictions; ties → the earliest (see module docstring)."""
    if epoch_probs.shape[1] == 0:
        return int(evaluated_epochs[-1])
    correct = (epoch_probs.argmax(axis=2) == np.asarray(y_true)[None, :]).sum(axis=1)
    return int(evaluated_epochs[int(np.argmax(correct))])  # argmax returns the first maximum


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
) -> pd.DataFrame:
    """Prediction-table rows of one fold for each selection in ``selections`` (stacked; ``selection`` column).

    ``meta`` holds per-sample arrays over all samples (``META_KEYS``; ``y`` = label ids in ``classes`` order);
    the test samples are looked up by ``outcome.test_sample_ids``. ``oracle_epoch`` is refused (ValueError)
    when the outcome was not evaluated after every epoch. An empty test side gives an empty table with the
    contract's columns.
    """
    classes = [str(c) for c in classes]
    if classes != [str(c) for c in outcome.classes]:
        raise ValueError(f"fold {fold}: classes {classes} differ from the outcome's {outcome.classes}")
    unknown = [s for s in selections if s not in SELECTIONS]
    if unknown or not selections:
        raise ValueError(
            f"fold {fold}: unknown selection(s) {unknown or list(selections)}; choose from {SELECTIONS}"
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
        else:
            epoch = oracle_epoch(outcome.epoch_probs, rows["y"], outcome.evaluated_epochs)
        slot = int(np.flatnonzero(outcome.evaluated_epochs == epoch)[0])
        tables.append(_table(outcome.epoch_probs[slot], rows, classes, fold, selection, epoch))
    table = pd.concat(tables, ignore_index=True)
    return table[[*REQUIRED_COLUMNS, *(f"score_{c}" for c in classes)]]
