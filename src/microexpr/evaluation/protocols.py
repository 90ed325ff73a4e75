"""One model's results under several evaluation protocols, side by side (e.g. LOSO next to the 3:2 holdout).

Every run of a model summarises itself (``protocol_summary``: protocol, label set, dataset, folds or runs, and per
selection the pooled accuracy / UF1 / UAR and their mean ± std over folds) under a key naming its protocol, label
set, dataset and settings. The catalog keeps the newest summary per key (microexpr.datasets.ProtocolResultStore);
the next run's report shows its own row next to every stored row **with the same model settings** (the same seed,
model, task and training blocks), so a difference in the table is the protocol's, not a setting's.

Which number is the headline of a row follows the protocol's own convention: pooled over the folds for LOSO (and
every protocol that tests each sample once), mean ± std over the runs for repeated hold-out splits (the
attribute-embedding paper reports accuracy that way).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from microexpr.hashing import content_key

HEADLINE = ("acc", "uf1", "uar")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


def settings_key(model: str, seed: Any, model_params: Any, task_params: Any, training: Any) -> str:
    """Identity of a run's model settings (the selections list and the protocol excluded)."""
    return content_key("protocol-settings", model, seed, dict(model_params or {}), dict(task_params or {}),
                       dict(training or {}))[:16]


def protocol_label(split: Mapping[str, Any]) -> str:
    """The protocol as a report names it: ``loso``, ``holdout 3:2``, ``holdout 3:2, resplit``, ..."""
    protocol = str(split.get("protocol", "")) or "?"
    options = dict(split.get("options") or {})
    if protocol != "holdout":
        return protocol
    ratio = options.get("ratio", [3, 2])
    ratio_text = ratio if isinstance(ratio, str) else ":".join(f"{float(r):g}" for r in ratio)
    return f"holdout {ratio_text}" + (", resplit" if options.get("resplit") else "")


def protocol_summary(metrics: Mapping[str, Any], split: Mapping[str, Any], settings: str) -> dict[str, Any]:
    """The summary of one run (``evaluate_predictions``' metrics) that the protocol store keeps."""
    selections = {}
    for name, m in metrics["selections"].items():
        folds = m.get("fold_summary") or {}
        selections[name] = {
            "repeated_splits": bool(m.get("repeated_splits")),
            "n_predictions": int(m.get("n_samples", 0)),
            "n_distinct_samples": int(m.get("n_distinct_samples", 0)),
            **{key: m.get(key) for key in HEADLINE},
            **{f"{key}_{stat}": folds.get(f"{key}_{stat}") for key in HEADLINE for stat in ("mean", "std")},
        }
    summary = {
        "model": str(metrics["model"]),
        "dataset": str(metrics["dataset"]),
        "label_set": str(metrics["label_set"]),
        "protocol": str(split.get("protocol", "")),
        "protocol_label": protocol_label(split),
        "n_folds": int(metrics.get("n_folds") or 0),
        "settings": settings,
        "tags": dict(metrics.get("tags") or {}),
        "leak": metrics.get("leak"),
        "selections": selections,
    }
    summary["key"] = _UNSAFE.sub("_", "__".join(
        [summary["protocol_label"], summary["label_set"], summary["dataset"], settings]))
    return summary


def side_by_side(current: Mapping[str, Any], stored: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """This run's summary and every stored summary with the same settings (this run replaces its own key),
    LOSO first, then by protocol, label set and dataset; each row says whether it is ``this_run``."""
    rows = {key: {**dict(summary), "this_run": False} for key, summary in stored.items()
            if summary.get("settings") == current["settings"] and summary.get("model") == current["model"]}
    rows[current["key"]] = {**dict(current), "this_run": True}
    return sorted(rows.values(), key=lambda r: (r.get("protocol") != "loso", str(r.get("protocol_label")),
                                                str(r.get("label_set")), str(r.get("dataset"))))


def _number(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _cell(row: Mapping[str, Any], key: str) -> str:
    if row["repeated_splits"]:
        std = row.get(f"{key}_std")
        return _number(row.get(f"{key}_mean")) + ("" if std is None else f" ± {float(std):.3f}")
    return _number(row.get(key))


def protocols_markdown(rows: Sequence[Mapping[str, Any]], selections_order: Sequence[str]) -> list[str]:
    """Markdown lines of the side-by-side section; empty when fewer than two protocols' rows exist."""
    if len(rows) < 2:
        return []
    lines = [
        "## Protocols side by side", "",
        "The same model settings evaluated under each protocol this model was run with (the newest run of each). "
        "LOSO: pooled over its folds. Repeated hold-out splits: mean ± std over the runs (accuracy is the "
        "attribute-embedding paper's metric; UF1 and UAR over each run's test subjects). The selections are "
        "never pooled.", "",
        "| protocol | label set | dataset | folds / runs | selection | accuracy | UF1 | UAR | numbers are |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ordered = [s for s in selections_order if s in row["selections"]]
        ordered += [s for s in row["selections"] if s not in ordered]
        for selection in ordered:
            values = row["selections"][selection]
            n = row.get("n_folds", 0)
            how = (f"mean ± std over {n} runs" if values["repeated_splits"]
                   else f"pooled over {n} folds ({values['n_predictions']} clips)")
            label = row["protocol_label"] + (" (this run)" if row.get("this_run") else "")
            if row.get("leak"):
                label += f" · {row['leak']}"
            lines.append(f"| {label} | {row['label_set']} | {row['dataset']} | {n} | {selection} | "
                         f"{_cell(values, 'acc')} | {_cell(values, 'uf1')} | {_cell(values, 'uar')} | {how} |")
    return [*lines, ""]
