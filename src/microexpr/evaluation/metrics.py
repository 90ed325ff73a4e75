"""Metrics from one pooled prediction table (one row per test sample per selection protocol).

Contract of the table: ``sample_id, dataset, subject, fold_subject, fold, y_true, y_pred, label_true,
label_pred, selection, epoch`` and one ``score_<class>`` column per class (softmax probabilities; the metrics here
only use the arg-max decisions in ``y_pred``). ``classes`` gives the class order (index = label id).

Aggregation policy (written once here, repeated in the report):

- **Pooled numbers are primary** (MEGC style): every test sample of every fold goes into one set of TP/FP/FN
  counts, then accuracy, UF1, UAR and WF1 are computed once. The per-fold mean ± std is secondary: LOSO folds
  hold 1–30 samples with a subject-dependent class mix, so a per-fold mean weights small folds heavily.
- **UF1** = macro F1 over *all* classes of the label set (``labels=range(len(classes))``, ``zero_division=0``),
  i.e. mean over classes of 2TP/(2TP+FP+FN). A class with no true and no predicted sample contributes 0
  (its F1 is 0/0); such classes are listed in ``classes_absent_from_truth`` so the reader sees why.
- **UAR** = mean recall over the classes *present in y_true* (sklearn's ``balanced_accuracy_score`` semantics).
  The recall of a class with no true sample is 0/0 and is left out rather than counted as 0 or 1.
- **Per-fold UF1** averages over the classes present in that fold's truth or predictions (sklearn's default
  label set): a test subject rarely shows every class, and counting the classes it does not show as F1 = 0
  would score the subject's class mix, not the model. MMNet's code skips such classes per fold in the same way.
- **Per-class** precision/recall/F1 use ``zero_division=0``; read them with their ``support`` (true count) and
  ``n_predicted``.
- **Repeated hold-out splits** (``split.protocol: holdout`` with ``repeats`` > 1) test a sample once per repeat
  that puts it on the test side. Only then may a sample appear in several folds (``repeated_splits=True``); the
  pooled numbers then count each (repeat, sample) once, and the per-repeat mean ± std (``fold_summary``) is the
  number the attribute-embedding paper reports. A sample twice in one fold is always an error.

All returned values are JSON-serialisable (dict, list, str, int, float, None).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    recall_score,
)

SELECTIONS: tuple[str, ...] = ("honest", "oracle_epoch")  # computed in every run
# Computed when a model's ``selections`` list names them (they cost extra training): the epoch count chosen on
# held-out training subjects (microexpr.training.selection).
OPTIONAL_SELECTIONS: tuple[str, ...] = ("validated_epoch",)
ALL_SELECTIONS: tuple[str, ...] = SELECTIONS + OPTIONAL_SELECTIONS
AUX_PREFIX = "aux_"  # prediction-table columns of a task's per-sample auxiliary scores (e.g. aux_epe)
# Column pairs of a task's auxiliary detector decisions (``training.task.Detections``, e.g. an AU head): the 0/1
# decision and the 0/1 annotation it is scored against, per test sample (auxpred_AU1 / auxtrue_AU1).
AUX_PREDICTED_PREFIX = "auxpred_"
AUX_ANNOTATED_PREFIX = "auxtrue_"
REQUIRED_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "dataset",
    "subject",
    "fold_subject",
    "fold",
    "y_true",
    "y_pred",
    "label_true",
    "label_pred",
    "selection",
    "epoch",
)
HEADLINE_METRICS: tuple[str, ...] = ("acc", "uf1", "uar", "wf1")
# auxiliary_detections scores logged to MLflow, as aux.<name>.<short key> (an undefined F1 is left out)
DETECTION_KEYS: dict[str, str] = {"accuracy": "acc", "f1": "f1", "balanced_accuracy": "bacc", "support": "support"}
_MLFLOW_KEY_UNSAFE = re.compile(r"[^0-9A-Za-z_\-./ ]")


class PredictionTableError(ValueError):
    """The prediction table breaks its contract (missing columns, mixed selections, bad labels, duplicates)."""


def natural_key(text: object) -> tuple:
    """Sort key that orders embedded numbers numerically (``sub2`` before ``sub10``, ``samm/006`` by 6)."""
    parts = re.split(r"(\d+)", str(text))
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p != "")


def _sample_list(ids: pd.Series, limit: int = 5) -> str:
    values = [str(v) for v in ids.tolist()]
    shown = ", ".join(values[:limit])
    return shown + (f" … ({len(values)} in all)" if len(values) > limit else "")


def select_predictions(predictions: pd.DataFrame, selection: str | None = None) -> pd.DataFrame:
    """Rows of one selection protocol; refuses to mix protocols when none is named.

    Raises PredictionTableError when ``selection`` is None and the table holds more than one selection, when the
    named selection is absent, or when the table holds a selection name outside ``SELECTIONS``.
    """
    if "selection" not in predictions.columns:
        raise PredictionTableError(
            "prediction table has no 'selection' column (expected 'honest' or 'oracle_epoch')"
        )
    present = sorted(str(s) for s in predictions["selection"].dropna().unique())
    unknown = [s for s in present if s not in ALL_SELECTIONS]
    if unknown or predictions["selection"].isna().any():
        bad = predictions.loc[~predictions["selection"].isin(ALL_SELECTIONS), "sample_id"]
        raise PredictionTableError(
            f"prediction table has selection values {unknown or ['<missing>']} outside {list(ALL_SELECTIONS)} "
            f"(samples: {_sample_list(bad)})"
        )
    if selection is None:
        if len(present) > 1:
            raise PredictionTableError(
                f"prediction table mixes selections {present}; pass selection='honest' or 'oracle_epoch' — "
                "the two protocols are reported separately, never pooled"
            )
        return predictions
    if selection not in ALL_SELECTIONS:
        raise PredictionTableError(f"unknown selection {selection!r}; expected one of {list(ALL_SELECTIONS)}")
    if selection not in present:
        raise PredictionTableError(
            f"prediction table has no rows for selection {selection!r} (it has {present})"
        )
    return predictions.loc[predictions["selection"] == selection]


def validate_predictions(table: pd.DataFrame, classes: Sequence[str], *, repeated_splits: bool = False) -> None:
    """Check the contract of one selection's rows; raise PredictionTableError naming the offending samples.

    ``repeated_splits``: the folds are repeated hold-out splits, so a sample may be tested once in each of several
    folds (never twice in one fold).
    """
    if not classes or len(set(classes)) != len(classes):
        raise PredictionTableError(f"classes must be a non-empty list of distinct names, got {list(classes)}")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise PredictionTableError(f"prediction table lacks columns {missing} (has {list(table.columns)})")
    if table.empty:
        raise PredictionTableError("prediction table has no rows")
    key = ["fold", "sample_id"] if repeated_splits else ["sample_id"]
    duplicated = table.loc[table.duplicated(key, keep=False), "sample_id"]
    if not duplicated.empty:
        where = "fold" if repeated_splits else "selection"
        hint = "" if repeated_splits else (
            " (only repeated hold-out splits, split.protocol: holdout, may test a sample in several folds)"
        )
        raise PredictionTableError(
            f"prediction table has several rows for the same sample in one {where}: {_sample_list(duplicated)}{hint}"
        )
    n_classes = len(classes)
    for column, label_column in (("y_true", "label_true"), ("y_pred", "label_pred")):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | (values % 1 != 0) | (values < 0) | (values >= n_classes)
        if bad.any():
            raise PredictionTableError(
                f"{column} must be an integer label id in [0, {n_classes}) for classes {list(classes)}; "
                f"bad samples: {_sample_list(table.loc[bad, 'sample_id'])}"
            )
        expected = values.astype(int).map(lambda i: classes[i])
        mismatch = expected.astype(str).to_numpy() != table[label_column].astype(str).to_numpy()
        if mismatch.any():
            raise PredictionTableError(
                f"{label_column} disagrees with classes[{column}] for samples "
                f"{_sample_list(table.loc[mismatch, 'sample_id'])}: the class order passed does not match the table"
            )


def core_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: Sequence[str]) -> dict[str, Any]:
    """Pooled accuracy, UF1, UAR, WF1, per-class report and confusion matrix for one set of decisions."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    labels = list(range(len(classes)))
    present = sorted(int(c) for c in np.unique(y_true))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    n_predicted = np.bincount(y_pred, minlength=len(classes))
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "n_predicted": int(n_predicted[i]),
        }
        for i, name in enumerate(classes)
    }
    return {
        "n_samples": int(y_true.size),
        "acc": float(accuracy_score(y_true, y_pred)),
        "uf1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "uar": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "wf1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).astype(int).tolist(),
        "classes_absent_from_truth": [classes[i] for i in labels if i not in present],
        "classes_never_predicted": [classes[i] for i in labels if n_predicted[i] == 0],
    }


def per_dataset_metrics(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Core metrics per ``dataset`` value (composites such as MEGC2019); empty when only one dataset is present."""
    dataset = table["dataset"].astype(str)
    names = sorted(dataset.unique())
    if len(names) < 2:
        return {}
    breakdown = {}
    for name in names:
        part = table.loc[dataset == name]
        breakdown[name] = core_metrics(part["y_true"], part["y_pred"], classes)
    return breakdown


def per_fold_table(table: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per fold: n, n_correct, accuracy, UF1 over the classes seen in that fold, UAR over the classes
    present in its truth, subjects, epochs."""
    rows = []
    for fold, part in sorted(table.groupby("fold", sort=False), key=lambda item: natural_key(item[0])):
        y_true = part["y_true"].astype(int).to_numpy()
        y_pred = part["y_pred"].astype(int).to_numpy()
        seen = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
        rows.append(
            {
                "fold": str(fold),
                "n": int(y_true.size),
                "n_correct": int((y_true == y_pred).sum()),
                "acc": float(accuracy_score(y_true, y_pred)),
                "uf1": float(f1_score(y_true, y_pred, labels=seen, average="macro", zero_division=0)),
                "uar": float(recall_score(y_true, y_pred, labels=sorted(set(y_true.tolist())), average="macro",
                                          zero_division=0)),
                "n_classes_seen": len(seen),
                "fold_subjects": sorted((str(s) for s in part["fold_subject"].unique()), key=natural_key),
                "epochs": sorted(int(e) for e in part["epoch"].unique()),
            }
        )
    return rows


def fold_summary(per_fold: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) over folds of accuracy, UF1 and UAR; std is None for one fold.
    A fold record without ``uar`` (stored before it was measured) leaves UAR out."""
    summary: dict[str, Any] = {"n_folds": len(per_fold)}
    for key in ("acc", "uf1", "uar"):
        if any(key not in row for row in per_fold):
            continue
        values = np.array([row[key] for row in per_fold], dtype=float)
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else None
    return summary


def per_subject_table(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Accuracy per test subject (``fold_subject``, dataset-namespaced), in natural subject order."""
    rows = []
    for fold_subject, part in table.groupby("fold_subject", sort=False):
        correct = part["y_true"].astype(int).to_numpy() == part["y_pred"].astype(int).to_numpy()
        rows.append(
            {
                "fold_subject": str(fold_subject),
                "dataset": str(part["dataset"].iloc[0]),
                "subject": str(part["subject"].iloc[0]),
                "fold": ",".join(sorted(map(str, part["fold"].unique()), key=natural_key)),
                "n": int(correct.size),
                "n_correct": int(correct.sum()),
                "acc": float(correct.mean()),
            }
        )
    return sorted(rows, key=lambda row: natural_key(row["fold_subject"]))


def compute_metrics(
    predictions: pd.DataFrame, classes: Sequence[str], selection: str | None = None, *,
    repeated_splits: bool = False,
) -> dict[str, Any]:
    """All metrics of one selection protocol from the pooled prediction table (see module docstring for policy).

    Keys: selection, classes, repeated_splits, n_distinct_samples, n_samples, acc, uf1, uar, wf1, per_class,
    confusion_matrix (rows = true), classes_absent_from_truth, classes_never_predicted, per_dataset (composites
    only, else {}), per_fold, fold_summary, per_subject, epochs, auxiliary (a task's per-sample scores, means),
    auxiliary_detections (a task's detector decisions, pooled counts).
    """
    table = select_predictions(predictions, selection)
    classes = [str(c) for c in classes]
    validate_predictions(table, classes, repeated_splits=repeated_splits)
    metrics: dict[str, Any] = {
        "selection": str(table["selection"].iloc[0]),
        "classes": classes,
        "datasets": sorted(str(d) for d in table["dataset"].unique()),
        "repeated_splits": repeated_splits,
        "n_distinct_samples": int(table["sample_id"].nunique()),
    }
    metrics.update(core_metrics(table["y_true"], table["y_pred"], classes))
    per_fold = per_fold_table(table)
    metrics["per_dataset"] = per_dataset_metrics(table, classes)
    metrics["per_fold"] = per_fold
    metrics["fold_summary"] = fold_summary(per_fold)
    metrics["per_subject"] = per_subject_table(table)
    metrics["epochs"] = sorted(int(e) for e in table["epoch"].unique())
    metrics["auxiliary"] = auxiliary_metrics(table)
    metrics["auxiliary_detections"] = auxiliary_detections(table)
    return metrics


def auxiliary_metrics(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Means of the ``aux_<name>`` columns (a task's per-sample auxiliary scores, measured after the last epoch):
    ``{name: {"mean": pooled over samples, "per_fold": {fold: mean}}}``; empty when the task has none."""
    out: dict[str, dict[str, Any]] = {}
    for column in sorted(c for c in table.columns if str(c).startswith(AUX_PREFIX)):
        values = table[column].astype(float)
        per_fold = values.groupby(table["fold"].astype(str), sort=False).mean()
        out[str(column)[len(AUX_PREFIX):]] = {
            "mean": float(values.mean()),
            "per_fold": {str(f): float(v) for f, v in sorted(per_fold.items(), key=lambda kv: natural_key(kv[0]))},
        }
    return out


def detection_scores(predicted: Sequence[int], annotated: Sequence[int]) -> dict[str, Any]:
    """Pooled scores of one binary detector's 0/1 decisions against 0/1 annotations (scikit-learn): ``n``,
    ``support`` (annotated positives), ``n_predicted``, ``accuracy``, ``always_negative_accuracy`` (of answering 0
    every time: the bar a rare positive sets), ``f1`` of the positive class (None when undefined: no positive
    annotated or predicted) and ``balanced_accuracy`` (mean recall over the classes present in the annotations,
    as UAR; with no positive it is the specificity)."""
    y_pred = np.asarray(predicted, dtype=int)
    y_true = np.asarray(annotated, dtype=int)
    support, n_predicted = int(y_true.sum()), int(y_pred.sum())
    present = sorted(int(c) for c in np.unique(y_true))
    f1 = None if support == 0 and n_predicted == 0 else float(f1_score(y_true, y_pred, labels=[1], average="binary",
                                                                      zero_division=0))
    return {
        "n": int(y_true.size),
        "support": support,
        "n_predicted": n_predicted,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "always_negative_accuracy": float(1.0 - support / y_true.size),
        "f1": f1,
        "balanced_accuracy": float(recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
    }


def auxiliary_detections(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``detection_scores`` of each detector with ``auxpred_<name>`` / ``auxtrue_<name>`` columns (a task's
    ``Detections``, measured after the last epoch), pooled over the table's samples, with ``per_fold``
    ``{fold: {n, support, accuracy, f1}}``; empty when the task has none. A column without its pair raises."""
    predicted = {str(c)[len(AUX_PREDICTED_PREFIX):] for c in table.columns if str(c).startswith(AUX_PREDICTED_PREFIX)}
    annotated = {str(c)[len(AUX_ANNOTATED_PREFIX):] for c in table.columns if str(c).startswith(AUX_ANNOTATED_PREFIX)}
    if predicted != annotated:
        raise PredictionTableError(f"auxiliary detections need {AUX_PREDICTED_PREFIX}<name> and "
                                   f"{AUX_ANNOTATED_PREFIX}<name> in pairs; unpaired: {sorted(predicted ^ annotated)}")
    out: dict[str, dict[str, Any]] = {}
    folds = table["fold"].astype(str)
    for name in sorted(predicted, key=natural_key):
        columns = [f"{AUX_PREDICTED_PREFIX}{name}", f"{AUX_ANNOTATED_PREFIX}{name}"]
        pooled = detection_scores(table[columns[0]], table[columns[1]])
        per_fold = {}
        for fold, part in sorted(table[columns].groupby(folds, sort=False), key=lambda kv: natural_key(kv[0])):
            scores = detection_scores(part[columns[0]], part[columns[1]])
            per_fold[str(fold)] = {key: scores[key] for key in ("n", "support", "accuracy", "f1")}
        out[name] = {**pooled, "per_fold": per_fold}
    return out


def _mlflow_key(*parts: str) -> str:
    return ".".join(_MLFLOW_KEY_UNSAFE.sub("_", p) for p in parts if p)


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Scalar metrics as ``{key: float}`` for MLflow: ``acc``, ``uf1``, ``f1.<class>``, ``<dataset>.uf1``, ``folds.*``.

    Undefined values (a fold std with one fold) are left out rather than logged as NaN.
    """
    flat: dict[str, float] = {}

    def put(*parts: str, value: Any) -> None:
        if value is not None:
            flat[_mlflow_key(prefix, *parts)] = float(value)

    def put_core(scope: str, core: dict[str, Any]) -> None:
        for key in (*HEADLINE_METRICS, "n_samples"):
            put(scope, key, value=core[key])
        for name, row in core["per_class"].items():
            for key in ("precision", "recall", "f1", "support"):
                put(scope, key, name, value=row[key])

    put_core("", metrics)
    for dataset, core in metrics.get("per_dataset", {}).items():
        put_core(dataset, core)
    for key, value in metrics.get("fold_summary", {}).items():
        put("folds", key, value=value)
    for name, summary in metrics.get("auxiliary", {}).items():
        put("aux", name, value=summary["mean"])
    for name, scores in metrics.get("auxiliary_detections", {}).items():
        for key, short in DETECTION_KEYS.items():
            put("aux", name, short, value=scores[key])
    return flat


def metrics_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """Flat table, one row per scalar metric: columns ``selection, metric, value`` (keys as in ``flat_metrics``)."""
    flat = flat_metrics(metrics)
    return pd.DataFrame(
        {
            "selection": [metrics.get("selection")] * len(flat),
            "metric": list(flat.keys()),
            "value": list(flat.values()),
        }
    )
