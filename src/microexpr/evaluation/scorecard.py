"""Reimplementation scorecard: ours under both selections next to the paper's claim for the run's dataset and
label set, with the chance level; and the markdown report of one run.

The claims are data (``microexpr/data/paper_claims.yml``, read with importlib.resources). Values there are as
printed (percent or fraction); ``load_paper_claims`` turns them into fractions so they compare directly with
``compute_metrics`` output. Deltas are ``ours - paper`` in fractions (shown as percentage points in the report).
Only like-for-like rows (same dataset and label set) are compared; the paper's other claims are listed below the
table (``other_paper_claims``), never put beside a number of ours. Chance is 1/C (``chance_level``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import pandas as pd
import yaml
from scipy.stats import binomtest

from microexpr.evaluation.metrics import ALL_SELECTIONS, HEADLINE_METRICS, SELECTIONS

CLAIMS_RESOURCE = "paper_claims.yml"
CLAIM_METRICS: tuple[str, ...] = HEADLINE_METRICS
PROTOCOLS: tuple[str, ...] = ("oracle_epoch", "ambiguous", "holdout_split", "honest")
UNIT_SCALE: dict[str, float] = {"percent": 0.01, "fraction": 1.0}
SYNTHETIC_DATASET = "synthetic"
SYNTHETIC_CAVEAT = (
    "Synthetic data: synthetic scores do not transfer to real data. They show that the pipeline runs end to end "
    "and learns the injected action-unit motion, not how the model does on CASME II, SAMM or any real set."
)
PROTOCOL_STATEMENTS: dict[str, str] = {
    "honest": "honest: fixed schedule, last epoch — no epoch or model selection reads the test subject.",
    "oracle_epoch": "oracle_epoch: best epoch chosen on the test subject — an upper bound, as the paper reports.",
}
OPTIONAL_PROTOCOL_STATEMENTS: dict[str, str] = {
    "validated_epoch": "validated_epoch: the epoch chosen on held-out training subjects (an inner subject split of "
    "each training fold) — honest early stopping; the test subject chooses nothing.",
}
SCORECARD_COLUMNS: tuple[str, ...] = (
    "model",
    "dataset",
    "label_set",
    "part",
    "metric",
    "selection",
    "paper",
    "paper_std",
    "ours",
    "delta",
    "n_classes",
    "chance",
    "like_for_like",
    "paper_protocol",
    "n_paper",
    "n_ours",
    "source",
    "note",
    "protocol_note",
)


OTHER_CLAIM_COLUMNS: tuple[str, ...] = (
    "dataset",
    "part",
    "label_set",
    "metric",
    "paper",
    "paper_std",
    "n_paper",
    "table",
)
METRIC_LABELS: dict[str, str] = {"acc": "accuracy", "uf1": "UF1", "uar": "UAR", "wf1": "WF1"}
CHANCE_METRICS: tuple[str, ...] = ("acc", "uf1", "uar")
FOLD_WORDS: dict[str, str] = {
    "loso": "LOSO folds",
    "megc2019": "LOSO folds",
    "cross_dataset": "cross-dataset folds",
    "holdout": "hold-out splits",
}
RUN_IDENTITY_KEYS: tuple[str, ...] = ("model", "dataset", "label_set")
RUN_SIZE_KEYS: tuple[str, ...] = ("n_samples", "n_subjects", "n_folds", "split_protocol")
RUN_INFO_LABELS: dict[str, str] = {
    "primary_selection": "primary selection",
    "n_excluded": "samples excluded before training",
    "epochs_per_fold": "epochs per fold",
}


class ClaimsError(ValueError):
    """The claims file or the list of our results breaks its contract."""


def flatten_claims(document: Mapping[str, Any], source: str = CLAIMS_RESOURCE) -> list[dict[str, Any]]:
    """One dict per (paper, dataset, label set, part, metric) with the value converted to a fraction."""
    papers = document.get("papers")
    if not isinstance(papers, Mapping) or not papers:
        raise ClaimsError(f"{source}: expected a non-empty 'papers' mapping")
    claims = []
    for model, paper in papers.items():
        protocol = paper.get("protocol")
        if protocol not in PROTOCOLS:
            raise ClaimsError(
                f"{source}: paper {model!r} has protocol {protocol!r}, expected one of {list(PROTOCOLS)}"
            )
        comparable = paper.get("comparable_selection")
        if comparable is not None and comparable not in SELECTIONS:
            raise ClaimsError(
                f"{source}: paper {model!r} comparable_selection {comparable!r} not in {list(SELECTIONS)}"
            )
        for k, result in enumerate(paper.get("results") or []):
            where = f"{source}: {model} result {k} ({result.get('dataset')}, {result.get('label_set')})"
            units, stds = result.get("units", {}), result.get("std") or {}
            for metric, printed in result["values"].items():
                if metric not in CLAIM_METRICS:
                    raise ClaimsError(
                        f"{where}: unknown metric {metric!r}, expected one of {list(CLAIM_METRICS)}"
                    )
                if units.get(metric) not in UNIT_SCALE:
                    raise ClaimsError(f"{where}: metric {metric!r} needs a unit in {list(UNIT_SCALE)}")
                scale = UNIT_SCALE[units[metric]]
                claims.append(
                    {
                        "model": str(model),
                        "title": paper.get("title", ""),
                        "dataset": str(result["dataset"]),
                        "label_set": str(result["label_set"]),
                        "part": result.get("part"),
                        "metric": metric,
                        "value": float(printed) * scale,
                        "printed": printed,
                        "std": float(stds[metric]) * scale if metric in stds else None,
                        "n_samples": result.get("n_samples"),
                        "protocol": protocol,
                        "comparable_selection": comparable,
                        "protocol_note": " ".join(str(paper.get("protocol_note", "")).split()),
                        "source": f"{paper.get('paper_file', model)}: {result.get('source', '')}",
                        "table": str(result.get("source", "")),
                    }
                )
    return claims


def load_paper_claims() -> list[dict[str, Any]]:
    """The packaged claims (``microexpr.data/paper_claims.yml``) as flat dicts, values in fractions."""
    text = resources.files("microexpr.data").joinpath(CLAIMS_RESOURCE).read_text(encoding="utf-8")
    return flatten_claims(yaml.safe_load(text))


def chance_level(metric: str, n_classes: int) -> float:
    """1/C for accuracy, UF1 and UAR (the uniform-guess reference); NaN for WF1, whose chance depends on the class mix."""
    if n_classes < 2:
        raise ClaimsError(f"a label set needs at least 2 classes for a chance level, got {n_classes}")
    return 1.0 / n_classes if metric in CHANCE_METRICS else math.nan


def chance_statement(n_classes: int, with_wf1: bool = False) -> str:
    """What the chance level means, in one sentence (shared by the report and the figure)."""
    text = (
        f"Chance = 1/C = {100 / n_classes:.1f} % for C = {n_classes} classes: the expected accuracy and UAR of "
        "guessing uniformly at random, also shown as the UF1 reference (uniform guessing reaches it on balanced "
        "classes and falls below it otherwise)."
    )
    return text + (" WF1 has no chance level that depends on C alone." if with_wf1 else "")


def _check_classes(classes: Sequence[str], by_selection: Mapping[str, Mapping[str, Any]]) -> int:
    for selection, metrics in by_selection.items():
        if "classes" in metrics and [str(c) for c in metrics["classes"]] != [str(c) for c in classes]:
            raise ClaimsError(
                f"classes {list(classes)} differ from those of our {selection} metrics {list(metrics['classes'])}"
            )
    return len(classes)


def _our_value(metrics: Mapping[str, Any] | None, metric: str, part: str | None) -> tuple[float, Any, str]:
    """(value, n_samples, note) of one metric in our metrics dict, or of one part of a composite."""
    if metrics is None:
        return math.nan, None, "no run of ours under this selection"
    scope = metrics
    if part:
        scope = metrics.get("per_dataset", {}).get(part)
        if scope is None:
            return math.nan, None, f"our run has no per-dataset breakdown for {part}"
    value = scope.get(metric)
    if value is None:
        return math.nan, scope.get("n_samples"), f"our metrics have no {metric}"
    return float(value), scope.get("n_samples"), ""


def _matching(claims: Sequence[Mapping[str, Any]], model: str, dataset: str, label_set: str) -> list:
    return [c for c in claims if (c["model"], c["dataset"], c["label_set"]) == (model, dataset, label_set)]


def build_scorecard(
    claims: Sequence[Mapping[str, Any]],
    ours: Mapping[str, Any],
    model: str,
    dataset: str,
    label_set: str,
    classes: Sequence[str],
) -> pd.DataFrame:
    """Ours under both selections next to the paper's claim for this run's dataset and label set, and chance.

    ``ours`` maps selection -> ``compute_metrics`` dict (or is one such dict). One row per (part, metric,
    selection): the paper's claimed metrics when it reports this dataset + label set, else every headline metric
    with ``paper`` = NaN. Both selections always get a row (NaN and a note when not computed). ``delta`` = ours -
    paper, ``chance`` = ``chance_level``; ``like_for_like`` marks the selection matching the paper's protocol.
    Claims for other datasets or label sets are left out (see ``other_paper_claims``). Values are fractions.
    """
    by_selection = _by_selection(ours)
    n_classes = _check_classes(classes, by_selection)
    matched = _matching(claims, model, dataset, label_set)
    targets = [(c["part"], c["metric"], c) for c in matched] or [(None, m, None) for m in HEADLINE_METRICS]
    rows = []
    for part, metric, claim in targets:
        paper = claim["value"] if claim else math.nan
        for selection in [*SELECTIONS, *(s for s in by_selection if s not in SELECTIONS)]:
            value, n_ours, note = _our_value(by_selection.get(selection), metric, part)
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "label_set": label_set,
                    "part": part,
                    "metric": metric,
                    "selection": selection,
                    "paper": paper,
                    "paper_std": claim["std"] if claim and claim["std"] is not None else math.nan,
                    "ours": value,
                    "delta": value - paper,
                    "n_classes": n_classes,
                    "chance": chance_level(metric, n_classes),
                    "like_for_like": bool(claim) and selection == claim["comparable_selection"],
                    "paper_protocol": claim["protocol"] if claim else None,
                    "n_paper": claim["n_samples"] if claim else None,
                    "n_ours": n_ours,
                    "source": claim["source"] if claim else "—",
                    "note": note,
                    "protocol_note": claim["protocol_note"] if claim else "",
                }
            )
    return pd.DataFrame(rows, columns=list(SCORECARD_COLUMNS))


def other_paper_claims(
    claims: Sequence[Mapping[str, Any]], model: str, dataset: str, label_set: str
) -> pd.DataFrame:
    """The model's claims for every other dataset or label set than the run's (listed, never plotted)."""
    mine = [
        c for c in claims if c["model"] == model and (c["dataset"], c["label_set"]) != (dataset, label_set)
    ]
    return pd.DataFrame(
        [
            {
                "dataset": c["dataset"],
                "part": c["part"],
                "label_set": c["label_set"],
                "metric": c["metric"],
                "paper": c["value"],
                "paper_std": c["std"] if c["std"] is not None else math.nan,
                "n_paper": c["n_samples"],
                "table": c.get("table", ""),
            }
            for c in mine
        ],
        columns=list(OTHER_CLAIM_COLUMNS),
    )


def has_paper_claim(scorecard: pd.DataFrame) -> bool:
    """Whether any scorecard row carries a paper number."""
    return bool(scorecard["paper"].notna().any())


def no_claim_statement(scorecard: pd.DataFrame) -> str:
    """The sentence saying the paper reports no number for this dataset + label set; "" when a row has a claim."""
    if scorecard.empty or has_paper_claim(scorecard):
        return ""
    first = scorecard.iloc[0]
    return (
        f"The {first['model']} paper reports no number for {first['dataset']} · {first['label_set']}: "
        "ours and chance only."
    )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pct(value: Any, signed: bool = False) -> str:
    """A fraction as a percentage string with 2 decimals; "—" when missing."""
    if _is_missing(value):
        return "—"
    return f"{100 * float(value):+.2f}" if signed else f"{100 * float(value):.2f}"


def _count(value: Any) -> str:
    return "—" if _is_missing(value) else str(int(value))


def _dataset_label(dataset: Any, part: Any) -> str:
    return f"{dataset}/{part}" if not _is_missing(part) and part else str(dataset)


def format_scorecard(scorecard: pd.DataFrame) -> pd.DataFrame:
    """The scorecard as display strings: values in %, deltas in percentage points, "—" where there is no number.

    Without any paper number the paper, delta and paper-count columns are left out; the note column only appears
    when a row has a note.
    """
    with_paper = has_paper_claim(scorecard)
    shown = pd.DataFrame(
        {
            "dataset": [
                _dataset_label(d, p) for d, p in zip(scorecard["dataset"], scorecard["part"], strict=True)
            ],
            "label set": scorecard["label_set"].astype(str),
            "metric": [METRIC_LABELS.get(str(m), str(m)) for m in scorecard["metric"]],
            "selection": [
                f"{s} (like-for-like)" if like else str(s)
                for s, like in zip(scorecard["selection"], scorecard["like_for_like"], strict=True)
            ],
            "paper": [
                _pct(v) + (f" ± {_pct(s)}" if not _is_missing(s) else "")
                for v, s in zip(scorecard["paper"], scorecard["paper_std"], strict=True)
            ],
            "ours": [_pct(v) for v in scorecard["ours"]],
            "Δ (pp)": [_pct(v, signed=True) for v in scorecard["delta"]],
            "chance": [_pct(v) for v in scorecard["chance"]],
            "n paper / ours": [
                f"{_count(a)} / {_count(b)}"
                for a, b in zip(scorecard["n_paper"], scorecard["n_ours"], strict=True)
            ],
            "n": [_count(b) for b in scorecard["n_ours"]],
            "note": ["" if _is_missing(n) else str(n) for n in scorecard["note"]],
        }
    )
    drop = ["n"] if with_paper else ["paper", "Δ (pp)", "n paper / ours"]
    if not shown["note"].astype(bool).any():
        drop.append("note")
    return shown.drop(columns=drop)


def format_other_claims(other: pd.DataFrame) -> list[str]:
    """One markdown bullet per (dataset, part, label set): its claimed metrics in %, sample count and table."""
    lines = []
    keys = ["dataset", "part", "label_set"]
    for (dataset, part, label_set), group in other.fillna({"part": ""}).groupby(keys, sort=False):
        values = ", ".join(
            f"{METRIC_LABELS.get(m, m)} {_pct(v)}" + (f" ± {_pct(s)}" if not _is_missing(s) else "")
            for m, v, s in zip(group["metric"], group["paper"], group["paper_std"], strict=True)
        )
        first = group.iloc[0]
        where = "; ".join(t for t in (f"n = {_count(first['n_paper'])}", str(first["table"] or "")) if t)
        lines.append(f"- {_dataset_label(dataset, part)} · {label_set}: {values} ({where})")
    return lines


def run_size_line(
    n_samples: int, n_subjects: int, n_folds: int, fold_word: str = "folds", n_predictions: int | None = None
) -> str:
    """How big the test set was and what one clip is worth, e.g. "24 clips from 6 subjects (6 LOSO folds); ...".

    ``n_predictions`` (pooled test rows) differs from ``n_samples`` only under repeated hold-out splits; the step
    of one decision is then taken over the pooled predictions.
    """
    size = f"{_plural(n_samples, 'clip')} from {_plural(n_subjects, 'subject')} ({n_folds} {fold_word}"
    if n_predictions is not None and n_predictions != n_samples:
        return (
            f"{size}, {n_predictions} test predictions pooled); a difference of one prediction moves pooled "
            f"accuracy by {100 / n_predictions:.1f} points."
        )
    few = "with this few clips " if n_samples < 100 else ""
    return f"{size}); {few}a difference of one clip moves accuracy by {100 / n_samples:.1f} points."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def accuracy_interval_sentence(metrics: Mapping[str, Any], n_classes: int) -> str:
    """Pooled accuracy as k of n clips with its 95 % Wilson interval (scipy) and where chance lies against it.

    Empty under repeated hold-out splits, whose pooled predictions are not independent clips.
    """
    if metrics.get("repeated_splits"):
        return ""
    n = int(metrics["n_samples"])
    correct = round(float(metrics["acc"]) * n)
    interval = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    chance = 1.0 / n_classes
    name = str(metrics.get("selection", "pooled")).capitalize()
    if interval.low > chance:
        where = "lies above"
    elif interval.high < chance:
        where = "lies below"
    else:
        where = "includes"
    return (
        f"{name} accuracy {100 * correct / n:.1f} % = {correct} of {n} clips; its 95 % "
        f"Wilson interval {100 * interval.low:.1f}–{100 * interval.high:.1f} % {where} chance "
        f"({100 * chance:.1f} %)."
    )


def markdown_table(frame: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table of a DataFrame of display values.

    Written here because ``DataFrame.to_markdown`` needs the optional ``tabulate`` package, which is not a
    dependency of the project.
    """

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _by_selection(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Accept one ``compute_metrics`` dict or a mapping selection -> dict; return the mapping in SELECTIONS order."""
    if "selection" in metrics and "acc" in metrics:
        metrics = {metrics["selection"]: metrics}
    unknown = [s for s in metrics if s not in ALL_SELECTIONS]
    if unknown:
        raise ClaimsError(f"metrics keyed by unknown selections {unknown}; expected {list(ALL_SELECTIONS)}")
    return {s: metrics[s] for s in ALL_SELECTIONS if s in metrics}


def _headline_table(by_selection: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows: dict[str, list[str]] = {
        "metric": ["accuracy", "UF1 (macro F1)", "UAR (mean recall)", "WF1", "samples"]
    }
    for selection, m in by_selection.items():
        rows[selection] = [
            _pct(m["acc"]),
            _pct(m["uf1"]),
            _pct(m["uar"]),
            _pct(m["wf1"]),
            str(m["n_samples"]),
        ]
    return pd.DataFrame(rows)


def _per_class_table(m: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "class": name,
                "precision": _pct(row["precision"]),
                "recall": _pct(row["recall"]),
                "F1": _pct(row["f1"]),
                "support": row["support"],
                "predicted": row.get("n_predicted", "—"),
            }
            for name, row in m["per_class"].items()
        ]
    )


def _per_dataset_table(by_selection: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    rows = [
        {
            "dataset": dataset,
            "selection": selection,
            "n": part["n_samples"],
            "accuracy": _pct(part["acc"]),
            "UF1": _pct(part["uf1"]),
            "UAR": _pct(part["uar"]),
            "WF1": _pct(part["wf1"]),
        }
        for selection, m in by_selection.items()
        for dataset, part in m.get("per_dataset", {}).items()
    ]
    return pd.DataFrame(rows)


def _fold_table(by_selection: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    def mean_std(summary: Mapping[str, Any], key: str) -> str:
        std = summary.get(f"{key}_std")
        return f"{_pct(summary[f'{key}_mean'])} ± {_pct(std)}"

    return pd.DataFrame(
        [
            {
                "selection": selection,
                "folds": m["fold_summary"]["n_folds"],
                "accuracy (mean ± std)": mean_std(m["fold_summary"], "acc"),
                "UF1 (mean ± std)": mean_std(m["fold_summary"], "uf1"),
                "pooled accuracy": _pct(m["acc"]),
                "pooled UF1": _pct(m["uf1"]),
            }
            for selection, m in by_selection.items()
        ]
    )


def _check_relative(figure_paths: Mapping[str, str]) -> None:
    for caption, path in figure_paths.items():
        if PurePosixPath(str(path)).is_absolute() or PureWindowsPath(str(path)).is_absolute():
            raise ValueError(
                f"figure {caption!r} has an absolute path {path!r}; the report links relative paths"
            )


def _metrics_section(by_selection: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Headline metrics, per-class, per-dataset and per-fold tables of every selection."""
    if not by_selection:
        return []
    lines = ["## Metrics (pooled over all test samples)", ""]
    lines += [
        "Pooled numbers are primary (MEGC style: one set of counts over every fold). UF1 averages F1 over all "
        "classes of the label set; UAR averages recall over the classes present in the ground truth.",
        "",
        markdown_table(_headline_table(by_selection)),
        "",
    ]
    first = next(iter(by_selection.values()))
    if first.get("repeated_splits"):
        lines += [
            f"Repeated hold-out splits: the pooled counts take each (repeat, test sample) once "
            f"({first['n_samples']} rows, {first['n_distinct_samples']} distinct samples); the per-repeat "
            "mean ± std in the fold table is the number the holdout papers report.",
            "",
        ]
    for selection, m in by_selection.items():
        absent = m.get("classes_absent_from_truth") or []
        lines += [f"### Per-class ({selection})", "", markdown_table(_per_class_table(m)), ""]
        if absent:
            lines += [
                f"Classes with no test sample (F1 counted as 0 in UF1, left out of UAR): {', '.join(absent)}.",
                "",
            ]

    per_dataset = _per_dataset_table(by_selection)
    lines += ["## Per-dataset breakdown", ""]
    lines += [
        markdown_table(per_dataset) if not per_dataset.empty else "Single dataset: no breakdown.",
        "",
    ]

    lines += [
        "## Per-fold (secondary)",
        "",
        "Mean ± sample std over folds; LOSO folds are small and uneven, so the pooled value above is the "
        "primary number. Per-fold UF1 averages over the classes seen in that fold.",
        "",
        markdown_table(_fold_table(by_selection)),
        "",
    ]
    return lines


def _detections_section(primary: Mapping[str, Any]) -> list[str]:
    """The primary selection's auxiliary detectors (``auxiliary_detections``, e.g. one per AU) as one table."""
    detections = primary.get("auxiliary_detections") or {}
    if not detections:
        return []
    table = pd.DataFrame([
        {"detector": name, "positives (support)": row["support"], "predicted positive": row["n_predicted"],
         "accuracy": _pct(row["accuracy"]), "always negative": _pct(row["always_negative_accuracy"]),
         "F1": _pct(row["f1"]), "balanced accuracy": _pct(row["balanced_accuracy"])}
        for name, row in detections.items()
    ])
    defined = [row["f1"] for row in detections.values() if row["f1"] is not None]
    n = next(iter(detections.values()))["n"]
    mean_f1 = f"{100 * sum(defined) / len(defined):.2f} over the {len(defined)} with an F1" if defined else "—"
    return [
        "## Auxiliary detections (test samples, last epoch)",
        "",
        f"Binary decisions of the model's auxiliary detectors on the {n} test samples, pooled over folds, against "
        "their annotations (evaluation only, never a model input); values in %. Positives are rare, so read the "
        "accuracy beside “always negative” (the accuracy of answering no every time); F1 is the positive class's "
        "(“—”: no positive annotated or predicted); balanced accuracy averages recall over the classes present "
        "(without a positive it is the specificity).",
        "",
        markdown_table(table),
        "",
        f"Means over the {len(detections)} detectors: accuracy "
        f"{100 * sum(r['accuracy'] for r in detections.values()) / len(detections):.2f} (always negative "
        f"{100 * sum(r['always_negative_accuracy'] for r in detections.values()) / len(detections):.2f}), F1 "
        f"{mean_f1}, balanced accuracy "
        f"{100 * sum(r['balanced_accuracy'] for r in detections.values()) / len(detections):.2f}.",
        "",
    ]


def _size_numbers(run_info: Mapping[str, Any], primary: Mapping[str, Any]) -> dict[str, Any]:
    """Clips, subjects, folds and pooled predictions: run_info's numbers, else the primary selection's metrics."""
    fold_word = FOLD_WORDS.get(str(run_info.get("split_protocol")), "")
    if not fold_word:
        fold_word = "hold-out splits" if primary.get("repeated_splits") else "folds"
    return {
        "n_samples": int(
            run_info.get("n_samples", primary.get("n_distinct_samples", primary.get("n_samples", 0)))
        ),
        "n_subjects": int(run_info.get("n_subjects", len(primary.get("per_subject", [])))),
        "n_folds": int(run_info.get("n_folds", primary.get("fold_summary", {}).get("n_folds", 0))),
        "fold_word": fold_word,
        "n_predictions": primary.get("n_samples"),
    }


def _detail_lines(run_info: Mapping[str, Any]) -> list[str]:
    details = {k: v for k, v in run_info.items() if k not in RUN_IDENTITY_KEYS + RUN_SIZE_KEYS}
    return [f"- **{RUN_INFO_LABELS.get(k, k)}:** {v}" for k, v in details.items()]


def _scorecard_section(
    scorecard: pd.DataFrame, other_claims: pd.DataFrame | None, n_classes: int
) -> list[str]:
    lines: list[str] = []
    statement = no_claim_statement(scorecard)
    if statement:
        lines += [f"**{statement}**", ""]
    else:
        lines += [
            "Values in %; Δ = ours − paper in percentage points; “like-for-like” marks the selection that follows "
            "the paper's protocol; “—” = no number (the note says why).",
            "",
        ]
    lines += [chance_statement(n_classes, with_wf1="wf1" in set(scorecard["metric"])), ""]
    lines += [markdown_table(format_scorecard(scorecard)), ""]
    if other_claims is not None and not other_claims.empty:
        lines += ["The paper's other claims (datasets or label sets not in this run; values in %):", ""]
        lines += [*format_other_claims(other_claims), ""]
    return lines


def render_report_markdown(
    scorecard: pd.DataFrame,
    selections: Mapping[str, Any],
    figures: Mapping[str, str],
    run_info: Mapping[str, Any],
    other_claims: pd.DataFrame | None = None,
    extra_sections: Sequence[str] = (),
) -> str:
    """Markdown report of one run: run size, protocol, scorecard, metrics, per-class, per-dataset, folds, figures.

    ``selections`` is one ``compute_metrics`` dict or ``{selection: dict}``; ``figures`` maps title to a file name
    relative to the report; ``other_claims`` is ``other_paper_claims(...)`` (listed below the scorecard).
    ``run_info`` needs ``model``, ``dataset``, ``label_set``; ``n_samples`` (clips tested), ``n_subjects``,
    ``n_folds`` and ``split_protocol`` feed the run-size line (else taken from the primary selection's metrics);
    ``primary_selection`` picks the selection of that line; other keys (e.g. ``n_excluded``, ``epochs_per_fold``,
    ``seed``, git SHA) are listed as run details. ``extra_sections``: markdown lines placed before the figures.
    """
    missing = [k for k in RUN_IDENTITY_KEYS if k not in run_info]
    if missing:
        raise ValueError(f"run_info lacks {missing}; it needs model, dataset and label_set")
    _check_relative(figures)
    by_selection = _by_selection(selections)
    model, dataset, label_set = run_info["model"], run_info["dataset"], run_info["label_set"]
    datasets = {str(dataset)} | {d for m in by_selection.values() for d in m.get("datasets", [])}
    lines = [f"# {model} — {dataset}, label set {label_set}", ""]
    if run_info.get("leak"):
        lines += [f"> **Leaky setting `{run_info['leak']}`: the model was given test-sample annotations at "
                  "prediction (the paper's own protocol). Not an honest result; never compare it with one.**", ""]
    if SYNTHETIC_DATASET in datasets:
        lines += [f"> **{SYNTHETIC_CAVEAT}**", ""]
    if by_selection:
        primary_name = str(run_info.get("primary_selection", next(iter(by_selection))))
        primary = by_selection.get(primary_name, next(iter(by_selection.values())))
        n_classes = len(primary["classes"])
        size = run_size_line(**_size_numbers(run_info, primary))
        lines += [f"**Run size:** {size} {accuracy_interval_sentence(primary, n_classes)}".rstrip(), ""]
    else:
        n_classes = int(scorecard["n_classes"].iloc[0]) if not scorecard.empty else 0
    lines += [*_detail_lines(run_info), ""]

    lines += ["## Protocol", ""]
    statements = {**PROTOCOL_STATEMENTS, **OPTIONAL_PROTOCOL_STATEMENTS}
    lines += [f"- {statements[s]}" for s in [*SELECTIONS, *(s for s in by_selection if s not in SELECTIONS)]]
    lines += [
        "",
        "The two selections are computed from separate prediction tables and never pooled. "
        f"Selections in this run: {', '.join(by_selection) or 'none'}.",
    ]
    paper_protocols = scorecard.loc[scorecard["paper_protocol"].notna(), ["paper_protocol", "protocol_note"]]
    for protocol, note in paper_protocols.drop_duplicates().itertuples(index=False):
        lines += ["", f"Paper protocol ({model}, as its code runs it): **{protocol}** — {note}"]
    lines += [""]

    lines += [f"## Scorecard: ours vs the paper on {dataset}, label set {label_set}", ""]
    if scorecard.empty:
        lines += ["No results to compare.", ""]
    else:
        lines += _scorecard_section(scorecard, other_claims, n_classes)
    lines += _metrics_section(by_selection)
    if by_selection:
        lines += _detections_section(primary)
    lines += list(extra_sections)
    lines += ["## Figures", ""]
    lines += [f"![{caption}]({path})" for caption, path in figures.items()] or ["No figures."]
    return "\n".join(lines).rstrip() + "\n"
