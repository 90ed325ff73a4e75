"""Comparing models honestly: one leaderboard with subject-bootstrap intervals, paired tests on identical samples.

Input: per model, its pooled prediction table and its metrics dict (what ``kedro run --pipelines=<model>`` stores).
Everything here is pure (tables in, tables out) and vectorised over resamples with numpy:

- **Intervals** resample *subjects* (the LOSO unit) with replacement, ``n_resamples`` times: every resample's
  confusion matrix is ``counts (B × S) @ per-subject confusion counts (S × C²)``, and Acc, UF1, UAR, WF1 follow
  from the B matrices at once (``metrics_from_confusion``, the same definitions as
  microexpr.evaluation.metrics). The interval is the 2.5–97.5 percentile range.
- **Paired comparisons** use the same subject resamples for both models (a paired bootstrap of the difference) and
  a permutation p-value that swaps the two models' predictions per unit (sample or subject) at random,
  ``n_permutations`` times; p = (1 + #{|d*| ≥ |d|}) / (1 + n_permutations). The p-values of one family (one
  metric, selection, dataset and label set, all model pairs) are Holm-corrected.
- **Honesty rules:** a row is one model × selection; honest, validated_epoch and oracle_epoch numbers never share a
  cell or a pooled metric. Rows of a leaky setting (``metrics["leak"]``, e.g. ``au_leak``) say so in their label
  and are compared only with rows of the same leak. Two tables are compared only on identical samples: samples one
  model excluded (``metrics["excluded_samples"]``) leave the pair's intersection with a stated count; any other
  difference is refused (SampleMismatchError naming the samples).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from microexpr.evaluation.metrics import HEADLINE_METRICS, natural_key

__all__ = [
    "LEADERBOARD_METRICS",
    "ModelResult",
    "SampleMismatchError",
    "align_pair",
    "confusion_counts",
    "holm",
    "honest_oracle_gap",
    "leaderboard",
    "metrics_from_confusion",
    "paired_comparisons",
    "paired_test",
    "permutation_pvalue",
    "subject_bootstrap",
    "subject_bootstrap_values",
    "subject_resample_counts",
]

LEADERBOARD_METRICS: tuple[str, ...] = HEADLINE_METRICS  # acc, uf1, uar, wf1
SELECTION_ORDER: tuple[str, ...] = ("honest", "validated_epoch", "oracle_epoch")
POOLED = "pooled"


class SampleMismatchError(ValueError):
    """Two prediction tables do not cover the same samples (beyond declared exclusions), or disagree on labels."""


@dataclass
class ModelResult:
    """One model's stored outcome: its pooled prediction table and metrics dict (tags and leak read from it)."""

    model: str
    predictions: pd.DataFrame
    metrics: dict[str, Any]
    excluded: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.excluded:
            self.excluded = {str(e["sample_id"]) if isinstance(e, Mapping) else str(e)
                             for e in self.metrics.get("excluded_samples", []) or []}

    @property
    def tags(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.metrics.get("tags") or {}).items()}

    @property
    def leak(self) -> str | None:
        leak = self.metrics.get("leak")
        return str(leak) if leak else None

    @property
    def label(self) -> str:
        """``model``, its tags and a visible leak mark: ``model (key=value) [LEAK: au_leak]``."""
        text = self.model
        if self.tags:
            text += " (" + ", ".join(f"{k}={v}" for k, v in sorted(self.tags.items())) + ")"
        if self.leak:
            text += f" [LEAK: {self.leak}]"
        return text

    def selection(self, selection: str) -> pd.DataFrame:
        return self.predictions.loc[self.predictions["selection"] == selection]


# --------------------------------------------------------------------------------------------- batched metrics
def metrics_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Acc, UF1, UAR, WF1 of a stack of confusion matrices (..., C, C) (rows = true), vectorised.

    Same definitions as ``microexpr.evaluation.metrics.core_metrics``: UF1 = mean over *all* classes of
    2TP/(2TP+FP+FN) (0 for 0/0), UAR = mean recall over the classes present in the truth, WF1 = support-weighted F1.
    Counts may be weighted (bootstrap multiplicities).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    n = support.sum(axis=-1)
    denominator = 2 * tp + (predicted - tp) + (support - tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)
        present = support > 0
        recall = np.where(present, tp / np.where(present, support, 1), 0.0)
        n_present = present.sum(axis=-1)
        return {
            "acc": np.where(n > 0, tp.sum(axis=-1) / np.where(n > 0, n, 1), np.nan),
            "uf1": f1.mean(axis=-1),
            "uar": np.where(n_present > 0, recall.sum(axis=-1) / np.maximum(n_present, 1), np.nan),
            "wf1": np.where(n > 0, (f1 * support).sum(axis=-1) / np.where(n > 0, n, 1), np.nan),
        }


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, units: np.ndarray, n_units: int,
                     n_classes: int) -> np.ndarray:
    """Per-unit flattened confusion counts, shape (n_units, C²): row u counts (true, predicted) pairs of unit u."""
    cell = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    flat = np.asarray(units, dtype=np.int64) * n_classes * n_classes + cell
    counts = np.bincount(flat, minlength=n_units * n_classes * n_classes)
    return counts.reshape(n_units, n_classes * n_classes).astype(np.float64)


def subject_resample_counts(n_subjects: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, S) multiplicities: each row draws S subjects with replacement (one bootstrap resample)."""
    draws = rng.integers(0, n_subjects, size=(n_resamples, n_subjects))
    offsets = (np.arange(n_resamples, dtype=np.int64) * n_subjects)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_subjects)
    return counts.reshape(n_resamples, n_subjects).astype(np.float64)


def _subject_codes(subjects: Sequence[str]) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(pd.Series(subjects, dtype=str), sort=True)
    return codes.astype(np.int64), len(uniques)


def _interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def subject_bootstrap_values(
    y_true: np.ndarray, y_pred: np.ndarray, subjects: Sequence[str], n_classes: int, *,
    n_resamples: int = 2000, seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The metrics of the table itself and of each of ``n_resamples`` subject resamples (arrays of length B)."""
    codes, n_subjects = _subject_codes(subjects)
    per_subject = confusion_counts(y_true, y_pred, codes, n_subjects, n_classes)
    counts = subject_resample_counts(n_subjects, n_resamples, np.random.default_rng(seed))
    point = metrics_from_confusion(per_subject.sum(axis=0).reshape(n_classes, n_classes))
    return point, metrics_from_confusion((counts @ per_subject).reshape(n_resamples, n_classes, n_classes))


def subject_bootstrap(
    y_true: np.ndarray, y_pred: np.ndarray, subjects: Sequence[str], n_classes: int, *,
    n_resamples: int = 2000, seed: int = 0, level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """Point value and subject-bootstrap interval of Acc, UF1, UAR, WF1: ``{metric: {value, low, high}}``."""
    point, boot = subject_bootstrap_values(y_true, y_pred, subjects, n_classes, n_resamples=n_resamples, seed=seed)
    out = {}
    for metric in LEADERBOARD_METRICS:
        low, high = _interval(boot[metric], level)
        out[metric] = {"value": float(point[metric]), "low": low, "high": high}
    return out


# ------------------------------------------------------------------------------------------------ paired tests
def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def permutation_pvalue(
    y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, units: np.ndarray, n_classes: int, metric: str,
    *, n_permutations: int = 2000, rng: np.random.Generator,
) -> float:
    """Two-sided p-value of ``metric(a) - metric(b)`` under random swaps of the two models' predictions per unit."""
    codes, n_units = _subject_codes([str(u) for u in units])
    ka = confusion_counts(y_true, pred_a, codes, n_units, n_classes)
    kb = confusion_counts(y_true, pred_b, codes, n_units, n_classes)
    observed = (metrics_from_confusion(ka.sum(0).reshape(n_classes, n_classes))[metric]
                - metrics_from_confusion(kb.sum(0).reshape(n_classes, n_classes))[metric])
    swap = rng.random((n_permutations, n_units)) < 0.5
    keep = (~swap).astype(np.float64)
    swap = swap.astype(np.float64)
    shape = (n_permutations, n_classes, n_classes)
    perm_a = metrics_from_confusion((keep @ ka + swap @ kb).reshape(shape))[metric]
    perm_b = metrics_from_confusion((swap @ ka + keep @ kb).reshape(shape))[metric]
    extreme = np.abs(perm_a - perm_b) >= abs(observed) - 1e-12
    return float((1 + extreme.sum()) / (1 + n_permutations))


def align_pair(a: ModelResult, b: ModelResult, selection: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The two models' rows of ``selection`` on their common samples: columns sample_id, fold_subject, y_true,
    pred_a, pred_b; and the counts ``n_common, n_excluded_a, n_excluded_b``.

    A sample only one model has is accepted only when the other model declared it excluded (it lacked an input);
    otherwise SampleMismatchError names the differing samples. Different true labels are refused too.
    """
    ta, tb = a.selection(selection), b.selection(selection)
    ids_a, ids_b = set(ta["sample_id"].astype(str)), set(tb["sample_id"].astype(str))
    only_a, only_b = ids_a - ids_b, ids_b - ids_a
    unexplained_a, unexplained_b = sorted(only_a - b.excluded), sorted(only_b - a.excluded)
    if unexplained_a or unexplained_b:
        def preview(ids: list[str]) -> str:
            return ", ".join(ids[:5]) + (f" … ({len(ids)} in all)" if len(ids) > 5 else "") if ids else "none"

        raise SampleMismatchError(
            f"{a.label} and {b.label} ({selection}) do not cover the same samples: only in {a.model}: "
            f"{preview(unexplained_a)}; only in {b.model}: {preview(unexplained_b)} (not declared excluded by the "
            "other model). Rerun both on the same dataset, label set and split before comparing them."
        )
    common = sorted(ids_a & ids_b, key=natural_key)
    left = ta.set_index(ta["sample_id"].astype(str)).loc[common]
    right = tb.set_index(tb["sample_id"].astype(str)).loc[common]
    differing = left.index[left["y_true"].to_numpy() != right["y_true"].to_numpy()].tolist()
    if differing:
        raise SampleMismatchError(
            f"{a.label} and {b.label} ({selection}) give different true labels to {len(differing)} sample(s): "
            f"{', '.join(differing[:5])} (different label sets or annotations)"
        )
    table = pd.DataFrame({
        "sample_id": common,
        "fold_subject": left["fold_subject"].astype(str).to_numpy(),
        "y_true": left["y_true"].astype(np.int64).to_numpy(),
        "pred_a": left["y_pred"].astype(np.int64).to_numpy(),
        "pred_b": right["y_pred"].astype(np.int64).to_numpy(),
    })
    return table, {"n_common": len(common), "n_excluded_a": len(only_b), "n_excluded_b": len(only_a)}


def paired_test(
    pair: pd.DataFrame, n_classes: int, metrics: Sequence[str] = ("uf1", "acc"), *, n_resamples: int = 2000,
    n_permutations: int = 2000, permutation_unit: str = "sample", seed: int = 0, level: float = 0.95,
) -> dict[str, dict[str, float]]:
    """For each metric: a − b, its paired subject-bootstrap interval, and the (uncorrected) permutation p-value."""
    if permutation_unit not in ("sample", "subject"):
        raise ValueError(f"permutation_unit must be 'sample' or 'subject', got {permutation_unit!r}")
    codes, n_subjects = _subject_codes(pair["fold_subject"].tolist())
    y = pair["y_true"].to_numpy()
    ka = confusion_counts(y, pair["pred_a"].to_numpy(), codes, n_subjects, n_classes)
    kb = confusion_counts(y, pair["pred_b"].to_numpy(), codes, n_subjects, n_classes)
    rng = np.random.default_rng(seed)
    counts = subject_resample_counts(n_subjects, n_resamples, rng)
    shape = (n_resamples, n_classes, n_classes)
    boot_a, boot_b = metrics_from_confusion((counts @ ka).reshape(shape)), metrics_from_confusion((counts @ kb).reshape(shape))
    point_a = metrics_from_confusion(ka.sum(0).reshape(n_classes, n_classes))
    point_b = metrics_from_confusion(kb.sum(0).reshape(n_classes, n_classes))
    units = pair["sample_id"].to_numpy() if permutation_unit == "sample" else pair["fold_subject"].to_numpy()
    out = {}
    for metric in metrics:
        low, high = _interval(boot_a[metric] - boot_b[metric], level)
        out[metric] = {
            "a": float(point_a[metric]), "b": float(point_b[metric]),
            "difference": float(point_a[metric] - point_b[metric]), "low": low, "high": high,
            "p_value": permutation_pvalue(y, pair["pred_a"].to_numpy(), pair["pred_b"].to_numpy(), units, n_classes,
                                          metric, n_permutations=n_permutations, rng=rng),
        }
    return out


# ------------------------------------------------------------------------------------------------ the tables
def _n_classes(result: ModelResult) -> int:
    return len(result.metrics["classes"])


def _claims_for(claims: Sequence[Mapping[str, Any]], model: str, dataset: str, label_set: str,
                part: str | None) -> dict[str, Mapping[str, Any]]:
    return {c["metric"]: c for c in claims
            if (c["model"], c["dataset"], c["label_set"], c.get("part") or None) == (model, dataset, label_set, part)}


def _selections_of(result: ModelResult) -> list[str]:
    present = {str(s) for s in result.predictions["selection"].unique()}
    return [s for s in SELECTION_ORDER if s in present] + sorted(present - set(SELECTION_ORDER))


def leaderboard(
    results: Sequence[ModelResult], claims: Sequence[Mapping[str, Any]] = (), *, n_resamples: int = 2000,
    seed: int = 0, level: float = 0.95,
) -> pd.DataFrame:
    """One row per model × selection × scope (``pooled``, then each member dataset of a composite): Acc, UF1, UAR,
    WF1 with subject-bootstrap intervals (``<metric>_low/_high``), sample / subject / exclusion counts, tags and
    leak, and the paper's claim (``paper_<metric>``) on the row of the selection the paper is comparable with."""
    rows = []
    for result in results:
        m = result.metrics
        dataset, label_set = str(m.get("dataset", "")), str(m.get("label_set", ""))
        for selection in _selections_of(result):
            table = result.selection(selection)
            scopes = [(POOLED, table)]
            members = sorted(table["dataset"].astype(str).unique())
            if len(members) > 1:
                scopes += [(member, table.loc[table["dataset"].astype(str) == member]) for member in members]
            for scope, part in scopes:
                stats = subject_bootstrap(part["y_true"].to_numpy(), part["y_pred"].to_numpy(),
                                          part["fold_subject"].astype(str).tolist(), _n_classes(result),
                                          n_resamples=n_resamples, seed=seed, level=level)
                row: dict[str, Any] = {
                    "model": result.model, "label": result.label, "selection": selection,
                    "leak": result.leak or "", "tags": ", ".join(f"{k}={v}" for k, v in sorted(result.tags.items())),
                    "dataset": dataset, "scope": scope, "label_set": label_set,
                    "n_samples": int(len(part)), "n_subjects": int(part["fold_subject"].nunique()),
                    "n_excluded": len(result.excluded) if scope == POOLED else None,
                }
                for metric in LEADERBOARD_METRICS:
                    row[metric] = stats[metric]["value"]
                    row[f"{metric}_low"] = stats[metric]["low"]
                    row[f"{metric}_high"] = stats[metric]["high"]
                matching = _claims_for(claims, result.model, dataset, label_set, None if scope == POOLED else scope)
                comparable = {c.get("comparable_selection") for c in matching.values()}
                for metric in LEADERBOARD_METRICS:
                    claim = matching.get(metric)
                    row[f"paper_{metric}"] = claim["value"] if claim and selection in comparable else None
                row["paper_protocol"] = next(iter(matching.values()))["protocol"] if matching else ""
                rows.append(row)
    columns = ["model", "label", "selection", "leak", "tags", "dataset", "scope", "label_set", "n_samples",
               "n_subjects", "n_excluded",
               *[f"{m}{s}" for m in LEADERBOARD_METRICS for s in ("", "_low", "_high")],
               *[f"paper_{m}" for m in LEADERBOARD_METRICS], "paper_protocol"]
    return pd.DataFrame(rows, columns=columns)


def honest_oracle_gap(board: pd.DataFrame) -> pd.DataFrame:
    """Per model and scope: each metric under each selection (own columns) and ``honest − oracle_epoch`` (the drop
    that test-subject epoch picking hides), plus ``validated_epoch − oracle_epoch`` where computed."""
    rows = []
    for (label, dataset, scope, label_set), part in board.groupby(["label", "dataset", "scope", "label_set"],
                                                                  sort=False):
        by_selection = part.set_index("selection")
        if "honest" not in by_selection.index or "oracle_epoch" not in by_selection.index:
            continue
        for metric in LEADERBOARD_METRICS:
            row = {"label": label, "model": part["model"].iloc[0], "dataset": dataset, "scope": scope,
                   "label_set": label_set, "metric": metric}
            for selection in SELECTION_ORDER:
                row[selection] = by_selection[metric].get(selection, math.nan)
            row["honest_minus_oracle"] = row["honest"] - row["oracle_epoch"]
            row["validated_minus_oracle"] = row["validated_epoch"] - row["oracle_epoch"]
            rows.append(row)
    return pd.DataFrame(rows, columns=["label", "model", "dataset", "scope", "label_set", "metric",
                                       *SELECTION_ORDER, "honest_minus_oracle", "validated_minus_oracle"])


PAIRED_COLUMNS = ("selection", "dataset", "label_set", "leak", "model_a", "model_b", "label_a", "label_b", "metric",
                  "a", "b", "difference", "low", "high", "p_value", "p_holm", "n_common", "n_excluded_a",
                  "n_excluded_b", "n_subjects", "status")


def paired_comparisons(
    results: Sequence[ModelResult], metrics: Sequence[str] = ("uf1", "acc"), *, n_resamples: int = 2000,
    n_permutations: int = 2000, permutation_unit: str = "sample", seed: int = 0, level: float = 0.95,
) -> pd.DataFrame:
    """Every model pair under every selection both computed (same dataset, label set and leak only): a − b with a
    paired interval, the permutation p-value and its Holm correction within (selection, dataset, label set,
    leak, metric). A pair whose samples differ gets one ``status = refused: …`` row instead of numbers; a pair of
    different datasets, label sets or leak labels one ``status = skipped: …`` row."""
    rows = []
    for a, b in itertools.combinations(sorted(results, key=lambda r: r.label), 2):
        key_a = (a.metrics.get("dataset"), a.metrics.get("label_set"), a.leak or "none")
        key_b = (b.metrics.get("dataset"), b.metrics.get("label_set"), b.leak or "none")
        if key_a != key_b:
            rows.append({"model_a": a.model, "model_b": b.model, "label_a": a.label, "label_b": b.label,
                         "metric": "", "status": f"skipped: dataset / label set / leak {key_a} vs {key_b} (only "
                         "runs on the same samples, and leaky rows only with each other, are compared)"})
            continue
        for selection in [s for s in _selections_of(a) if s in _selections_of(b)]:
            base = {"selection": selection, "dataset": a.metrics.get("dataset"), "label_set": a.metrics.get("label_set"),
                    "leak": a.leak or "", "model_a": a.model, "model_b": b.model, "label_a": a.label,
                    "label_b": b.label}
            try:
                pair, counts = align_pair(a, b, selection)
            except SampleMismatchError as error:
                rows.append({**base, "metric": "", "status": f"refused: {error}"})
                continue
            tests = paired_test(pair, _n_classes(a), metrics, n_resamples=n_resamples, n_permutations=n_permutations,
                                permutation_unit=permutation_unit, seed=seed, level=level)
            for metric, values in tests.items():
                rows.append({**base, "metric": metric, **values, **counts,
                             "n_subjects": int(pair["fold_subject"].nunique()), "status": "ok"})
    table = pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))
    table["p_holm"] = np.nan
    ok = table["status"] == "ok"
    for _, index in table[ok].groupby(["selection", "dataset", "label_set", "leak", "metric"]).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_value"].to_numpy(dtype=float))
    return table
