"""Reimplementation scorecard: the papers' claimed numbers next to ours under both selection protocols.

The claims are data (``microexpr/data/paper_claims.yml``, read with importlib.resources). Values there are as
printed (percent or fraction); ``load_paper_claims`` turns them into fractions so they compare directly with
``compute_metrics`` output. Deltas are ``ours - paper`` in fractions (shown as percentage points in the report).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import pandas as pd
import yaml

from microexpr.evaluation.metrics import HEADLINE_METRICS, SELECTIONS

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
    "like_for_like",
    "paper_protocol",
    "n_paper",
    "n_ours",
    "source",
    "note",
    "protocol_note",
)


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
                    }
                )
    return claims


def load_paper_claims() -> list[dict[str, Any]]:
    """The packaged claims (``microexpr.data/paper_claims.yml``) as flat dicts, values in fractions."""
    text = resources.files("microexpr.data").joinpath(CLAIMS_RESOURCE).read_text(encoding="utf-8")
    return flatten_claims(yaml.safe_load(text))


def _index_ours(ours: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    index: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for k, entry in enumerate(ours):
        missing = [key for key in ("selection", "dataset", "label_set", "metrics") if key not in entry]
        if missing:
            raise ClaimsError(
                f"our result {k} lacks keys {missing} (needs selection, dataset, label_set, metrics)"
            )
        if entry["selection"] not in SELECTIONS:
            raise ClaimsError(
                f"our result {k} has selection {entry['selection']!r}, expected one of {list(SELECTIONS)}"
            )
        key = (str(entry["selection"]), str(entry["dataset"]), str(entry["label_set"]))
        if key in index:
            raise ClaimsError(f"two of our results share selection/dataset/label set {key}")
        index[key] = entry["metrics"]
    return index


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


def build_scorecard(
    claims: Sequence[Mapping[str, Any]],
    ours: Sequence[Mapping[str, Any]],
    model: str,
    include_unmatched_claims: bool = False,
) -> pd.DataFrame:
    """Paper claim next to ours under both selections (``honest`` and ``oracle_epoch``), with ``delta = ours - paper``.

    ``ours`` holds dicts ``{selection, dataset, label_set, metrics}`` (``metrics`` from ``compute_metrics``).
    Claims are kept for the (dataset, label set) pairs we ran, or all of the model's claims with
    ``include_unmatched_claims``. Our runs on a pair the paper did not report (synthetic, say) get rows for the
    headline metrics with ``paper`` = NaN and a note saying so. ``like_for_like`` marks the selection whose
    protocol matches the paper's code. Values are fractions; missing ones are NaN.
    """
    index = _index_ours(ours)
    ran = {(dataset, label_set) for _, dataset, label_set in index}
    model_claims = [c for c in claims if c["model"] == model]
    rows = []
    for claim in model_claims:
        pair = (claim["dataset"], claim["label_set"])
        if pair not in ran and not include_unmatched_claims:
            continue
        for selection in SELECTIONS:
            value, n_ours, note = _our_value(index.get((selection, *pair)), claim["metric"], claim["part"])
            rows.append(
                {
                    "model": model,
                    "dataset": claim["dataset"],
                    "label_set": claim["label_set"],
                    "part": claim["part"],
                    "metric": claim["metric"],
                    "selection": selection,
                    "paper": claim["value"],
                    "paper_std": claim["std"] if claim["std"] is not None else math.nan,
                    "ours": value,
                    "delta": value - claim["value"],
                    "like_for_like": selection == claim["comparable_selection"],
                    "paper_protocol": claim["protocol"],
                    "n_paper": claim["n_samples"],
                    "n_ours": n_ours,
                    "source": claim["source"],
                    "note": note,
                    "protocol_note": claim["protocol_note"],
                }
            )
    claimed = {(c["dataset"], c["label_set"]) for c in model_claims}
    for dataset, label_set in sorted(ran - claimed):
        reason = f"the paper reports no result for {dataset} {label_set}"
        if dataset == SYNTHETIC_DATASET:
            reason += "; synthetic scores do not transfer to real data"
        for metric in CLAIM_METRICS:
            for selection in SELECTIONS:
                value, n_ours, missing_note = _our_value(
                    index.get((selection, dataset, label_set)), metric, None
                )
                rows.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "label_set": label_set,
                        "part": None,
                        "metric": metric,
                        "selection": selection,
                        "paper": math.nan,
                        "paper_std": math.nan,
                        "ours": value,
                        "delta": math.nan,
                        "like_for_like": False,
                        "paper_protocol": None,
                        "n_paper": None,
                        "n_ours": n_ours,
                        "source": "—",
                        "note": "; ".join(t for t in (reason, missing_note) if t),
                        "protocol_note": "",
                    }
                )
    return pd.DataFrame(rows, columns=list(SCORECARD_COLUMNS))


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pct(value: Any, signed: bool = False) -> str:
    """A fraction as a percentage string with 2 decimals; "—" when missing."""
    if _is_missing(value):
        return "—"
    return f"{100 * float(value):+.2f}" if signed else f"{100 * float(value):.2f}"


def format_scorecard(scorecard: pd.DataFrame) -> pd.DataFrame:
    """The scorecard as display strings: values in %, deltas in percentage points, "—" where there is no number."""
    shown = pd.DataFrame(
        {
            "dataset": [
                f"{d}/{p}" if not _is_missing(p) and p else str(d)
                for d, p in zip(scorecard["dataset"], scorecard["part"], strict=True)
            ],
            "label set": scorecard["label_set"].astype(str),
            "metric": scorecard["metric"].astype(str),
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
            "n paper / ours": [
                f"{'—' if _is_missing(a) else int(a)} / {'—' if _is_missing(b) else int(b)}"
                for a, b in zip(scorecard["n_paper"], scorecard["n_ours"], strict=True)
            ],
            "note": [str(n) if n else "" for n in scorecard["note"]],
        }
    )
    return shown


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
    unknown = [s for s in metrics if s not in SELECTIONS]
    if unknown:
        raise ClaimsError(f"metrics keyed by unknown selections {unknown}; expected {list(SELECTIONS)}")
    return {s: metrics[s] for s in SELECTIONS if s in metrics}


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


def render_report_markdown(
    scorecard: pd.DataFrame,
    metrics: Mapping[str, Any],
    figure_paths: Mapping[str, str],
    run_info: Mapping[str, Any],
) -> str:
    """Markdown report of one run: protocol statement, scorecard, metrics, per-class, per-dataset, folds, figures.

    ``metrics`` is one ``compute_metrics`` dict or ``{selection: dict}``; ``figure_paths`` maps caption to a path
    relative to the report; ``run_info`` needs ``model``, ``dataset``, ``label_set``; any other keys (git SHA,
    config hash, seeds, device) are listed as run details.
    """
    missing = [k for k in ("model", "dataset", "label_set") if k not in run_info]
    if missing:
        raise ValueError(f"run_info lacks {missing}; it needs model, dataset and label_set")
    _check_relative(figure_paths)
    by_selection = _by_selection(metrics)
    model, dataset, label_set = run_info["model"], run_info["dataset"], run_info["label_set"]
    datasets = {str(dataset)} | {d for m in by_selection.values() for d in m.get("datasets", [])}
    lines = [f"# {model} — {dataset}, label set {label_set}", ""]
    if SYNTHETIC_DATASET in datasets:
        lines += [f"> **{SYNTHETIC_CAVEAT}**", ""]
    details = {k: v for k, v in run_info.items() if k not in ("model", "dataset", "label_set")}
    if details:
        lines += [f"- **{k}:** {v}" for k, v in details.items()] + [""]

    lines += ["## Protocol", ""]
    lines += [f"- {PROTOCOL_STATEMENTS[s]}" for s in SELECTIONS]
    lines += [
        "",
        "The two selections are computed from separate prediction tables and never pooled. "
        f"Selections in this run: {', '.join(by_selection) or 'none'}.",
    ]
    paper_protocols = scorecard.loc[scorecard["paper_protocol"].notna(), ["paper_protocol", "protocol_note"]]
    for protocol, note in paper_protocols.drop_duplicates().itertuples(index=False):
        lines += ["", f"Paper protocol ({model}, as its code runs it): **{protocol}** — {note}"]
    lines += [""]

    lines += ["## Scorecard: paper claim vs ours", ""]
    if scorecard.empty:
        lines += ["No claims and no results to compare.", ""]
    else:
        lines += [
            "Values in %, Δ = ours − paper in percentage points; “—” = no number "
            "(the paper did not report it, or we did not run that selection).",
            "",
            markdown_table(format_scorecard(scorecard)),
            "",
        ]

    lines += ["## Metrics (pooled over all test samples)", ""]
    if by_selection:
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

    lines += ["## Figures", ""]
    lines += [f"![{caption}]({path})" for caption, path in figure_paths.items()] or ["No figures."]
    return "\n".join(lines).rstrip() + "\n"
