"""Evaluation figures as pure functions: data in, ``matplotlib.figure.Figure`` out (no pyplot state, no files).

Figures are built with ``matplotlib.figure.Figure`` directly (Agg canvas), so they are thread-safe and never
open a window; saving and logging them is the caller's job (catalog or MLflow hook). Every title should name
what the figure shows plus the dataset, label set and selection protocol: ``run_title`` builds that line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from microexpr.evaluation.metrics import natural_key
from microexpr.evaluation.scorecard import METRIC_LABELS, chance_statement, no_claim_statement

__all__ = [
    "attention_overlay_figure",
    "confusion_matrix_figure",
    "loss_term_columns",
    "per_subject_accuracy_figure",
    "run_title",
    "scorecard_figure",
    "training_curves_figure",
]


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def run_title(
    what: str,
    *,
    model: str | None = None,
    dataset: str | None = None,
    label_set: str | None = None,
    selection: str | None = None,
) -> str:
    """``"Confusion matrix — mmnet · casme2 · 5class · selection: honest"`` (parts that are None are left out)."""
    parts = [p for p in (model, dataset, label_set) if p]
    if selection:
        parts.append(f"selection: {selection}")
    return f"{what} — {' · '.join(parts)}" if parts else what


def confusion_matrix_figure(
    cm: Sequence[Sequence[int]] | np.ndarray,
    classes: Sequence[str],
    title: str,
    normalise: bool = True,
) -> Figure:
    """Confusion matrix (rows = true class) with each cell annotated by its count and its row percentage.

    With ``normalise`` the colour encodes the row-normalised rate (recall per true class), else the count. A row
    with no true sample is shown as 0 % and its cells say "n/a".
    """
    counts = np.asarray(cm, dtype=int)
    n = len(classes)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix shape {counts.shape} does not match {n} classes {list(classes)}")
    row_totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, row_totals, out=np.zeros(counts.shape, dtype=float), where=row_totals > 0)
    shown = rates if normalise else counts
    size = 1.2 + 0.9 * n
    figure = _new_figure(size + 1.5, size)
    ax = figure.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else max(int(counts.max()), 1))
    figure.colorbar(image, ax=ax, label="fraction of true class" if normalise else "count")
    threshold = (1 if normalise else max(int(counts.max()), 1)) / 2
    for i in range(n):
        for j in range(n):
            percent = f"{100 * rates[i, j]:.1f}%" if row_totals[i, 0] > 0 else "n/a"
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{percent}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shown[i, j] > threshold else "black",
            )
    ax.set_xticks(range(n), labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(
        range(n), labels=[f"{c} (n={int(t)})" for c, t in zip(classes, row_totals[:, 0], strict=True)]
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    return figure


def per_subject_accuracy_figure(
    table: pd.DataFrame | Sequence[dict[str, Any]], title: str = "Per-subject accuracy"
) -> Figure:
    """Bar per test subject (natural subject order) with its sample count on the bar; dashed line = pooled accuracy.

    ``table`` has ``fold_subject`` (or ``subject``), ``n`` and ``acc`` — e.g. ``compute_metrics(...)["per_subject"]``.
    """
    frame = pd.DataFrame(table)
    subject_column = "fold_subject" if "fold_subject" in frame.columns else "subject"
    missing = [c for c in (subject_column, "n", "acc") if c not in frame.columns]
    if missing or frame.empty:
        raise ValueError(
            f"per-subject table needs non-empty columns subject/fold_subject, n, acc; missing {missing}"
        )
    order = sorted(range(len(frame)), key=lambda i: natural_key(frame[subject_column].iloc[i]))
    frame = frame.iloc[order]
    subjects = frame[subject_column].astype(str).tolist()
    accuracy = frame["acc"].astype(float).to_numpy()
    counts = frame["n"].astype(int).to_numpy()
    figure = _new_figure(max(6.0, 0.35 * len(subjects) + 2), 4.0)
    ax = figure.add_subplot()
    bars = ax.bar(range(len(subjects)), 100 * accuracy, color="tab:blue")
    ax.bar_label(bars, labels=[f"n={c}" for c in counts], fontsize=7, padding=2)
    pooled = float((accuracy * counts).sum() / counts.sum())
    ax.axhline(100 * pooled, color="tab:red", linestyle="--", label=f"pooled accuracy {100 * pooled:.1f}%")
    ax.set_xticks(range(len(subjects)), labels=subjects, rotation=90, fontsize=7)
    ax.set_ylim(0, 112)
    ax.set_xlabel("test subject")
    ax.set_ylabel("accuracy (%)")
    figure.legend(loc="outside lower center", fontsize=8)
    ax.set_title(title, fontsize=10)
    return figure


def loss_term_columns(history: pd.DataFrame) -> list[str]:
    """``train_loss`` and every ``train_loss_<term>`` column, except a single term that only repeats the total."""
    terms = [c for c in history.columns if c.startswith("train_loss_")]
    if len(terms) == 1 and np.allclose(history[terms[0]], history["train_loss"], equal_nan=True):
        terms = []
    return ["train_loss", *terms]


def training_curves_figure(history: pd.DataFrame, title: str = "Training curves") -> Figure:
    """Per-fold curves against epoch (thin lines) with the mean over folds (bold): the total training loss, each
    named loss term of the model's task (``train_loss_<term>`` columns), and training accuracy.

    ``history`` has one row per (fold, epoch) with ``train_loss`` and ``train_acc`` (accuracy in [0, 1]).
    """
    missing = [c for c in ("fold", "epoch", "train_loss", "train_acc") if c not in history.columns]
    if missing or history.empty:
        raise ValueError(
            f"history needs non-empty columns fold, epoch, train_loss, train_acc; missing {missing}"
        )
    panels = [(c, "training loss (total)" if c == "train_loss" else f"loss term: {c.removeprefix('train_loss_')}",
               1.0) for c in loss_term_columns(history)]
    panels.append(("train_acc", "training accuracy (%)", 100.0))
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    figure = _new_figure(5.0 * columns, 3.6 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    mean = history.groupby("epoch", sort=True)[[c for c, _, _ in panels]].mean()
    for ax, (column, label, scale) in zip(axes, panels, strict=False):
        for _, fold in history.sort_values("epoch").groupby("fold", sort=True):
            ax.plot(fold["epoch"], scale * fold[column], color="0.6", linewidth=0.7, alpha=0.6)
        ax.plot(mean.index, scale * mean[column], color="tab:blue", linewidth=2.5, label="mean over folds")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    figure.suptitle(f"{title} ({history['fold'].nunique()} folds; thin = one fold)", fontsize=10)
    return figure


def attention_overlay_figure(
    faces: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    title: str = "Attention maps",
    columns: int = 4,
) -> Figure:
    """Small multiples of attention maps laid over faces, one shared colour scale and colour bar.

    ``faces`` are RGB uint8 (H, W, 3); ``maps`` are 2-D float arrays of any size, stretched over the face (the
    image extent does the resampling, so no interpolation code is needed).
    """
    if not (len(faces) == len(maps) == len(titles)) or not faces:
        raise ValueError(
            f"need equal, non-zero numbers of faces, maps, titles; got {len(faces)}, {len(maps)}, {len(titles)}"
        )
    for k, (face, attention) in enumerate(zip(faces, maps, strict=True)):
        if face.ndim != 3 or face.shape[2] != 3 or face.dtype != np.uint8:
            raise ValueError(
                f"face {k} ({titles[k]}) must be RGB uint8 (H, W, 3), got {face.dtype} {face.shape}"
            )
        if attention.ndim != 2:
            raise ValueError(f"attention map {k} ({titles[k]}) must be 2-D, got shape {attention.shape}")
    vmin = float(min(np.min(m) for m in maps))
    vmax = float(max(np.max(m) for m in maps))
    vmax = vmax if vmax > vmin else vmin + 1.0
    n_cols = min(columns, len(faces))
    n_rows = -(-len(faces) // n_cols)
    figure = _new_figure(2.6 * n_cols + 1.0, 2.6 * n_rows + 0.6)
    axes = np.atleast_1d(figure.subplots(n_rows, n_cols, squeeze=False)).ravel()
    image = None
    for ax, face, attention, caption in zip(axes, faces, maps, titles, strict=False):
        height, width = face.shape[:2]
        ax.imshow(face)
        image = ax.imshow(
            np.asarray(attention, dtype=float),
            cmap="jet",
            alpha=0.45,
            vmin=vmin,
            vmax=vmax,
            extent=(-0.5, width - 0.5, height - 0.5, -0.5),
            interpolation="bilinear",
            interpolation_stage="data",
        )
        ax.set_title(caption, fontsize=8)
        ax.set_axis_off()
    for ax in axes[len(faces) :]:
        ax.set_axis_off()
    figure.colorbar(image, ax=list(axes), label="attention", shrink=0.8)
    figure.suptitle(title, fontsize=10)
    return figure


SCORECARD_COLOURS: dict[str, str] = {"paper": "0.6", "honest": "tab:blue", "oracle_epoch": "tab:orange"}


def _scorecard_groups(scorecard: pd.DataFrame) -> pd.Series:
    """One x-axis group label per row: the metric's name, prefixed by the part of a composite."""
    part = (
        scorecard["part"].fillna("").astype(str)
        if "part" in scorecard.columns
        else pd.Series("", index=scorecard.index)
    )
    metric = scorecard["metric"].astype(str).map(lambda m: METRIC_LABELS.get(m, m))
    return pd.Series(np.where(part != "", part + "\n" + metric, metric), index=scorecard.index)


def _scorecard_series(
    frame: pd.DataFrame, groups: list[str]
) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Legend label -> (colour, heights in %, deltas in pp) for the paper bar (if any) and each selection."""

    def per_group(rows: pd.DataFrame, column: str) -> np.ndarray:
        return (
            100 * rows.groupby("group", sort=False)[column].first().reindex(groups).astype(float).to_numpy()
        )

    paper = per_group(frame, "paper")
    series: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    if not np.isnan(paper).all():
        protocols = frame.get("paper_protocol", pd.Series(dtype=object)).dropna().astype(str).unique()
        label = f"paper claim ({', '.join(protocols)})" if len(protocols) else "paper claim"
        series[label] = (SCORECARD_COLOURS["paper"], paper, np.full(len(groups), np.nan))
    for selection, rows in frame.groupby("selection", sort=False):
        like = bool(rows.get("like_for_like", pd.Series(dtype=bool)).fillna(False).astype(bool).any())
        label = f"ours: {selection}" + (" (like-for-like with the paper)" if like else "")
        ours = per_group(rows, "ours")
        series[label] = (SCORECARD_COLOURS.get(str(selection), "tab:green"), ours, ours - paper)
    return series


def _scorecard_sizes(frame: pd.DataFrame) -> str:
    """The test-set sizes for the axis label (" · ours on 24 clips (paper: 249)"); "" when unknown."""
    whole = frame[frame["part"].isna()] if "part" in frame.columns else frame
    ours = whole.get("n_ours", pd.Series(dtype=float)).dropna()
    paper = whole.get("n_paper", pd.Series(dtype=float)).dropna()
    if ours.empty:
        return ""
    return f" · ours on {int(ours.iloc[0])} clips" + (f" (paper: {int(paper.iloc[0])})" if len(paper) else "")


def scorecard_figure(scorecard: pd.DataFrame, title: str = "Ours vs the paper") -> Figure:
    """Bars per metric for the run's dataset and label set: the paper's claim (when it reports one) and ours under
    each selection, in percent, with the chance level (1/C) as a dashed red line over each metric.

    ``scorecard`` is ``build_scorecard``'s table. Without a paper number the figure says so under the title. Our
    bars carry their value and, beside a claim, Δ = ours − paper in percentage points.
    """
    needed = ("model", "dataset", "label_set", "metric", "selection", "paper", "ours", "chance", "n_classes")
    missing = [c for c in needed if c not in scorecard.columns]
    if missing or scorecard.empty:
        raise ValueError(f"scorecard needs non-empty columns {list(needed)}; missing {missing}")
    frame = scorecard.assign(group=_scorecard_groups(scorecard))
    groups = list(dict.fromkeys(frame["group"]))
    series = _scorecard_series(frame, groups)
    figure = _new_figure(max(6.5, 1.9 * len(groups) + 2.5), 5.0)
    ax = figure.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / len(series)
    for k, (name, (colour, heights, deltas)) in enumerate(series.items()):
        bars = ax.bar(
            x + (k - (len(series) - 1) / 2) * width, np.nan_to_num(heights), width, label=name, color=colour
        )
        labels = [
            "—" if np.isnan(h) else f"{h:.1f}" + ("" if np.isnan(d) else f"\nΔ {d:+.1f}")
            for h, d in zip(heights, deltas, strict=True)
        ]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=1)
    chance = (
        100 * frame.groupby("group", sort=False)["chance"].first().reindex(groups).astype(float).to_numpy()
    )
    n_classes = int(frame["n_classes"].iloc[0])
    shown = ~np.isnan(chance)
    ax.hlines(
        chance[shown],
        x[shown] - 0.45,
        x[shown] + 0.45,
        colors="tab:red",
        linestyles="--",
        linewidth=1.5,
        label=f"chance = 1/C = {100 / n_classes:.1f} % (C = {n_classes})",
    )
    ax.set_xticks(x, labels=groups, fontsize=8)
    ax.set_ylabel("value (%)")
    ax.set_ylim(0, 115)
    first = frame.iloc[0]
    ax.set_xlabel(f"{first['dataset']} · label set {first['label_set']}{_scorecard_sizes(frame)}")
    statement = no_claim_statement(scorecard)
    ax.set_title(title + (f"\n{statement}" if statement else ""), fontsize=10)
    figure.legend(
        loc="outside lower center",
        ncols=2,
        fontsize=8,
        title=textwrap.fill(chance_statement(n_classes, with_wf1="wf1" in set(frame["metric"])), 110),
        title_fontsize=7,
    )
    return figure
