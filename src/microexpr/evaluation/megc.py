"""The MEGC2019 challenge exports of a composite run: its per-fold log and its pooled UF1 / UAR.

The challenge (Facial-Micro-ExpressionGC/MEGC2019, "MEGC2019 Recognition Challenge" PDF) asks for one block per
LOSO fold: a header line ``<db> <subject>``, then one ``<filename> <gt> <pred>`` line per test sample. Its scores
sum TP, FP and FN of every class over all folds, then UF1 = mean over classes of 2TP / (2TP + FP + FN) and
UAR = mean over classes of TP / N_c (the classes present in the truth), overall and per member dataset.

Names: ``db`` is the challenge's database name (``smic`` for our ``smic_hs``), ``subject`` the subject as the
member dataset names it, ``filename`` the clip; ``gt`` / ``pred`` are class ids in the label set's order (under
``megc3``, negative 0, positive 1, surprise 2: the ground-truth CSV's codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from microexpr.evaluation.metrics import natural_key

__all__ = ["MEGC_DB_NAMES", "is_composite", "megc_log", "megc_scores"]

MEGC_DB_NAMES: dict[str, str] = {"casme2": "casme2", "samm": "samm", "smic_hs": "smic"}


def is_composite(predictions: pd.DataFrame) -> bool:
    """A prediction table pools more than one member dataset (the MEGC2019 composite or another)."""
    return predictions["dataset"].astype(str).nunique() > 1


def _filename(sample_id: str) -> str:
    parts = str(sample_id).split("/", 2)
    return parts[2] if len(parts) == 3 else str(sample_id)


def megc_log(table: pd.DataFrame) -> str:
    """The per-fold log of one selection's rows: per fold (natural order) and test subject, ``db subject`` then
    ``filename gt pred`` per sample (natural order)."""
    lines: list[str] = []
    for fold in sorted(table["fold"].astype(str).unique(), key=natural_key):
        rows = table.loc[table["fold"].astype(str) == fold]
        for fold_subject in sorted(rows["fold_subject"].astype(str).unique(), key=natural_key):
            block = rows.loc[rows["fold_subject"].astype(str) == fold_subject]
            dataset = str(block["dataset"].iloc[0])
            lines.append(f"{MEGC_DB_NAMES.get(dataset, dataset)} {block['subject'].iloc[0]}")
            block = block.assign(_file=block["sample_id"].map(_filename))
            for _, row in block.sort_values("_file", key=lambda s: s.map(natural_key)).iterrows():
                lines.append(f"{row['_file']} {int(row['y_true'])} {int(row['y_pred'])}")
    return "\n".join(lines) + ("\n" if lines else "")


def _scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    n = len(classes)
    tp = np.array([int(((y_true == c) & (y_pred == c)).sum()) for c in range(n)])
    fp = np.array([int(((y_true != c) & (y_pred == c)).sum()) for c in range(n)])
    fn = np.array([int(((y_true == c) & (y_pred != c)).sum()) for c in range(n)])
    support = tp + fn
    f1 = [2 * t / (2 * t + p + f) if (2 * t + p + f) else 0.0 for t, p, f in zip(tp, fp, fn, strict=True)]
    recalls = [t / s for t, s in zip(tp, support, strict=True) if s]
    return {
        "n_samples": int(y_true.size),
        "uf1": float(np.mean(f1)),
        "uar": float(np.mean(recalls)) if recalls else float("nan"),
        "per_class": {c: {"tp": int(tp[i]), "fp": int(fp[i]), "fn": int(fn[i])} for i, c in enumerate(classes)},
    }


def megc_scores(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, Any]:
    """Pooled UF1 / UAR of one selection's rows from TP / FP / FN summed over all folds, overall and per member
    dataset (challenge db names), with the counts they come from."""
    y_true, y_pred = table["y_true"].to_numpy(dtype=int), table["y_pred"].to_numpy(dtype=int)
    out = {"classes": list(classes), "n_folds": int(table["fold"].nunique()),
           "overall": _scores(y_true, y_pred, classes), "per_dataset": {}}
    for dataset in sorted(table["dataset"].astype(str).unique()):
        part = table["dataset"].astype(str).to_numpy() == dataset
        out["per_dataset"][MEGC_DB_NAMES.get(dataset, dataset)] = _scores(y_true[part], y_pred[part], classes)
    return out
