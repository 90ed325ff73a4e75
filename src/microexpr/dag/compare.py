"""The comparison stage: every compared model's prediction table -> leaderboard, paired tests, report, MEGC2019 log.

Two ways in, one comparison:

- ``kedro run --pipelines=all``: every compared model's pipeline, then ``gather_results`` takes their
  ``<model>.predictions`` and ``<model>.metrics`` straight from the run;
- ``kedro run --pipelines=compare``: no training; ``compare.stored_results`` (microexpr.datasets.StoredModelResults)
  loads the newest stored prediction table and metrics of every model that has them, and the comparison names the
  models that have none.

Which models are compared is a DAG setting (like the shard count): ``MICROEXPR_MODELS`` (comma-separated names), by
default every registered model that is not a demonstration (microexpr.models), so a new paper's model joins
without editing this file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline
from matplotlib.figure import Figure

from microexpr.dag.training import _bind
from microexpr.evaluation.compare import (
    ModelResult,
    honest_oracle_gap,
    leaderboard,
    paired_comparisons,
)
from microexpr.evaluation.compare_report import (
    FOREST_FILE,
    forest_figure,
    render_comparison_html,
    render_comparison_markdown,
)
from microexpr.evaluation.megc import is_composite, megc_log, megc_scores
from microexpr.evaluation.scorecard import load_paper_claims

logger = logging.getLogger(__name__)

DEFAULT_COMPARE: dict[str, Any] = {"n_resamples": 2000, "n_permutations": 2000, "permutation_unit": "sample",
                                   "seed": 0, "level": 0.95, "metrics": ["uf1", "acc"]}


def compared_models() -> list[str]:
    """``MICROEXPR_MODELS`` (comma-separated, each a registered model) or every non-demonstration model."""
    from microexpr.models import available_models, task_class

    raw = os.environ.get("MICROEXPR_MODELS", "").strip()
    if not raw:
        return [m for m in available_models() if not task_class(m).demonstration]
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in available_models()]
    if unknown or not names:
        raise ValueError(f"MICROEXPR_MODELS names unknown model(s) {unknown}; registered: {list(available_models())}")
    return names


# ------------------------------------------------------------------------------------------------------ nodes
def gather_results(*tables_and_metrics: Any, models: list[str]) -> dict[str, dict[str, Any]]:
    """Node (``all``): ``(predictions, metrics)`` of each model, in ``models`` order, as one mapping."""
    pairs = zip(tables_and_metrics[0::2], tables_and_metrics[1::2], strict=True)
    return {model: {"predictions": table, "metrics": metrics} for model, (table, metrics) in zip(models, pairs,
                                                                                                  strict=True)}


def stored_results(stored: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Node (``compare``): the stored results as loaded (the catalog reads the newest version of each model)."""
    return dict(stored)


def compare_models(
    model_results: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any] | None, *, models: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Node: the leaderboard, the honest − oracle gap, the paired comparisons and the run summary."""
    settings = {**DEFAULT_COMPARE, **dict(params or {})}
    present = [m for m in models if m in model_results]
    missing = [m for m in models if m not in model_results]
    if missing:
        logger.warning("compare: no stored results for %s; comparing %s", missing, present or "nothing")
    results = [ModelResult(m, model_results[m]["predictions"], dict(model_results[m]["metrics"])) for m in present]
    board = leaderboard(results, load_paper_claims(), n_resamples=int(settings["n_resamples"]),
                        seed=int(settings["seed"]), level=float(settings["level"]))
    paired = paired_comparisons(results, list(settings["metrics"]), n_resamples=int(settings["n_resamples"]),
                                n_permutations=int(settings["n_permutations"]),
                                permutation_unit=str(settings["permutation_unit"]), seed=int(settings["seed"]),
                                level=float(settings["level"]))
    for row in paired.loc[paired["status"].str.startswith("refused")].itertuples():
        logger.warning("compare: %s", row.status)

    def distinct(key: str) -> str:
        return ", ".join(sorted({str(r.metrics.get(key, "?")) for r in results})) or "?"

    summary = {
        "models": present, "missing": missing, "labels": {r.model: r.label for r in results},
        "dataset": distinct("dataset"), "label_set": distinct("label_set"), "protocol": distinct("split_protocol"),
        "selections": sorted(set(board["selection"])) if len(board) else [],
        "tags": {r.model: r.tags for r in results}, "leaks": {r.model: r.leak for r in results if r.leak},
        "n_refused": int(paired["status"].str.startswith("refused").sum()), **{k: settings[k] for k in
                                                                ("n_resamples", "n_permutations", "permutation_unit")},
    }
    return board, honest_oracle_gap(board), paired, summary


def megc2019_exports(
    model_results: Mapping[str, Mapping[str, Any]], *, models: list[str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Node: for a composite run, each model × selection's per-fold log (``<model>.<selection>``) and its pooled
    UF1 / UAR with the per-dataset breakdown; empty for a single-dataset run."""
    logs: dict[str, str] = {}
    scores: dict[str, Any] = {}
    for model in models:
        if model not in model_results:
            continue
        table, metrics = model_results[model]["predictions"], model_results[model]["metrics"]
        if len(table) == 0 or not is_composite(table):
            continue
        for selection in sorted(set(table["selection"])):
            rows = table.loc[table["selection"] == selection]
            key = f"{model}.{selection}"
            logs[key] = megc_log(rows)
            scores[key] = megc_scores(rows, list(metrics["classes"]))
    return logs, scores


def comparison_figure(paired: pd.DataFrame, summary: dict[str, Any]) -> Figure:
    """Node: the forest plot of paired UF1 differences."""
    return forest_figure(paired, "uf1", title=f"Paired UF1 differences · {summary['dataset']} · {summary['label_set']}")


def comparison_report(
    board: pd.DataFrame, gap: pd.DataFrame, paired: pd.DataFrame, summary: dict[str, Any],
    megc_scores_: dict[str, Any],
) -> tuple[str, str]:
    """Node: the markdown report and its self-contained HTML twin (the forest plot drawn again and embedded: the
    saved figure cannot be read back)."""
    markdown = render_comparison_markdown(board, gap, paired, summary, megc_scores_ or None)
    return markdown, render_comparison_html(markdown, {FOREST_FILE: comparison_figure(paired, summary)})


# --------------------------------------------------------------------------------------------------- builders
def create_comparison_pipeline(models: list[str]) -> Pipeline:
    """From ``compare.model_results`` to every comparison output (``compare.*`` in the catalog)."""
    return Pipeline([
        Node(_bind(compare_models, models=models), ["compare.model_results", "params:compare"],
             ["compare.leaderboard", "compare.gap", "compare.paired", "compare.summary"], name="compare_models",
             tags=["compare"]),
        Node(_bind(megc2019_exports, models=models), "compare.model_results",
             ["compare.megc2019_logs", "compare.megc2019_scores"], name="megc2019_exports", tags=["compare"]),
        Node(comparison_figure, ["compare.paired", "compare.summary"], "compare.forest_figure",
             name="comparison_figure", tags=["compare"]),
        Node(comparison_report, ["compare.leaderboard", "compare.gap", "compare.paired", "compare.summary",
                                 "compare.megc2019_scores"],
             ["compare.report", "compare.report_html"], name="comparison_report", tags=["compare"]),
    ])


def create_compare_pipeline() -> Pipeline:
    """``kedro run --pipelines=compare``: the comparison from stored results, no training."""
    models = compared_models()
    load = Node(stored_results, "compare.stored_results", "compare.model_results", name="load_stored_results",
                tags=["compare"])
    return Pipeline([load]) + create_comparison_pipeline(models)


def create_all_pipeline() -> Pipeline:
    """``kedro run --pipelines=all``: every compared model end to end (shared stages once), then the comparison."""
    from microexpr.dag.training import create_model_pipeline

    models = compared_models()
    training = sum((create_model_pipeline(m) for m in models), Pipeline([]))
    inputs = [name for m in models for name in (f"{m}.predictions", f"{m}.metrics")]
    gather = Node(_bind(gather_results, models=models), inputs, "compare.model_results", name="gather_results",
                  tags=["compare"])
    return training + Pipeline([gather]) + create_comparison_pipeline(models)
