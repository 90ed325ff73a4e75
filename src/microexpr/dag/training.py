"""Training stage of any registered model: input bundle -> fold shards -> pooled predictions -> metrics -> report.

Everything model-specific comes from the model's task in the registry (microexpr.models): the features its bundle
is built from, the bundle itself, training, the report's extra figures. Each shard is a pipeline-level namespace
``<model>.shard_<k>`` whose inputs and outputs all go through the catalog, so ``kedro run --pipelines=<model>
--namespaces=<model>.shard_<k>`` runs one shard alone (a cluster job), and a killed run restarts losing at most the
fold in progress: the shard streams one result per fold to its store and, on restart, reuses every stored result
whose key (inputs, fold, seed, selections, model / task / training settings) still matches.

Nodes get the parameter blocks they use (``params:<model>.training``, ``.task``, ``.seed``, ...), never the whole
model block.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Node, Pipeline
from matplotlib.figure import Figure

from microexpr.dag.final_model import create_final_model_pipeline
from microexpr.dag.ingest import create_ingest_pipeline
from microexpr.dag.preprocess import create_preprocess_pipeline
from microexpr.dag.shards import n_shards
from microexpr.dag.split import create_split_pipeline
from microexpr.data.protocols import folds_of_shard
from microexpr.datasets.feature_store import FeatureTable
from microexpr.evaluation.figures import (
    confusion_matrix_figure,
    per_subject_accuracy_figure,
    run_title,
    scorecard_figure,
    training_curves_figure,
)
from microexpr.evaluation.metrics import ALL_SELECTIONS, compute_metrics
from microexpr.evaluation.protocols import protocol_summary, protocols_markdown, settings_key, side_by_side
from microexpr.evaluation.scorecard import (
    build_scorecard,
    load_paper_claims,
    other_paper_claims,
    render_report_markdown,
)
from microexpr.models import build_task, task_class
from microexpr.training.inputs import build_task_inputs
from microexpr.training.loop import train_fold
from microexpr.training.results import FoldResult, FoldSettings, ShardDone, fold_key, fold_seed
from microexpr.training.selection import prediction_tables, validated_epoch

logger = logging.getLogger(__name__)

SELECTIONS = ALL_SELECTIONS  # honest and oracle_epoch always; validated_epoch when listed (extra training per fold)
FOLD_SETTING_PARAMS = ("seed", "selections", "model", "task", "training")
GENERIC_FIGURES = {
    "confusion_honest": "Confusion matrix (honest)",
    "confusion_oracle_epoch": "Confusion matrix (oracle_epoch)",
    "per_subject_accuracy": "Per-subject accuracy",
    "training_curves": "Training curves (every loss term)",
    "scorecard": "Scorecard",
}


def _bind(function: Callable, **kwargs: Any) -> Callable:
    """``function`` with keyword arguments fixed, keeping its name and docstring (Kedro node names, kedro-viz)."""
    return functools.update_wrapper(functools.partial(function, **kwargs), function)


# ----------------------------------------------------------------------------------------------------- inputs
def build_model_input(
    sample_index: pd.DataFrame, label_maps: dict[str, Any], task_params: dict[str, Any] | None, *, model: str,
    **inputs: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Node: pack the model's input bundle once for all folds (microexpr.training.inputs, the model's task).

    ``inputs``: the features the task names and the catalog entries of its ``catalog_inputs`` (e.g. a tokenizer).
    """
    resource_names = set(task_class(model).catalog_inputs)
    resources = {name: value for name, value in inputs.items() if name in resource_names}
    features: dict[str, FeatureTable] = {name: value for name, value in inputs.items() if name not in resource_names}
    return build_task_inputs(build_task(model, task_params, resources), sample_index, features, label_maps)


# ----------------------------------------------------------------------------------------------------- shards
def _fold_positions(fold_subjects: np.ndarray, subjects: list[str]) -> np.ndarray:
    return np.flatnonzero(np.isin(fold_subjects, np.asarray(subjects, dtype=str)))


def _progress_logger(model: str, fold: str, every: int):
    def report(epoch: int, epochs: int, loss: float, acc: float, samples_per_s: float) -> None:
        if epoch == 1 or epoch == epochs or epoch % every == 0:
            logger.info("%s %s epoch %d/%d: loss %.4f, train acc %.3f, %.1f samples/s", model, fold, epoch, epochs,
                        loss, acc, samples_per_s)

    return report


def train_shard(
    model_input: dict[str, np.ndarray],
    model_input_meta: dict[str, Any],
    folds: pd.DataFrame,
    completed_folds: dict[str, FoldResult],
    seed: int,
    selections: list[str],
    model_params: dict[str, Any],
    task_params: dict[str, Any] | None,
    training: dict[str, Any],
    log_every_epochs: int,
    *resources: Any,
    model: str,
    shard: int,
    shards: int,
) -> Iterator[FoldResult | ShardDone]:
    """Node (generator): train and evaluate every fold of one shard, streaming one result per fold.

    ``resources``: the loaded catalog entries of the task's ``catalog_inputs``, in that order (usually none).

    A fold whose key is already in ``completed_folds`` (an earlier, interrupted run with the same inputs, seed and
    settings) is not trained again: its stored result is passed on, marked ``reused``. The last chunk is always a
    :class:`ShardDone`.
    """
    settings = FoldSettings.from_params(seed, selections, model_params, task_params, training)
    unknown = [s for s in settings.selections if s not in SELECTIONS]
    if unknown or not settings.selections:
        raise ValueError(f"{model}.selections must be a non-empty subset of {SELECTIONS}, got {list(settings.selections)}")
    mine = folds_of_shard(folds, shard, shards)
    task = build_task(model, settings.task, dict(zip(task_class(model).catalog_inputs, resources, strict=True)))
    classes = [str(c) for c in model_input["classes"]]
    meta_arrays = {k: model_input[k] for k in ("sample_id", "dataset", "subject", "fold_subject", "y")}
    done: dict[str, str] = {}
    reused: list[str] = []
    logger.info("%s shard %d/%d: %d fold(s) %s", model, shard, shards, len(mine), mine["fold"].tolist())
    for position, (_, row) in enumerate(mine.iterrows(), start=1):
        fold = str(row["fold"])
        key = fold_key(model, model_input_meta["fingerprint"], row, settings)
        done[fold] = key
        if key in completed_folds:
            reused.append(fold)
            logger.info("%s %s: reusing the result of an earlier run (key %s)", model, fold, key)
            result = completed_folds[key]
            result.reused = True
            yield result
            continue
        train_idx = _fold_positions(model_input["fold_subject"], list(row["train_subjects"]))
        test_idx = _fold_positions(model_input["fold_subject"], list(row["test_subjects"]))
        fold_seed_value = fold_seed(settings.seed, fold)
        logger.info("%s %s (%d/%d in shard %d): %d train / %d test samples, seed %d", model, fold, position,
                    len(mine), shard, train_idx.size, test_idx.size, fold_seed_value)
        started = time.perf_counter()
        outcome = train_fold(model, settings.model, model_input, train_idx, test_idx, settings.training,
                             fold_seed_value, _progress_logger(model, fold, every=max(1, int(log_every_epochs))),
                             task_cfg=task)
        chosen = None
        if "validated_epoch" in settings.selections:
            chosen = validated_epoch(model, settings.model, model_input, train_idx, settings.training,
                                     fold_seed_value, task_cfg=task)
            logger.info("%s %s: validated_epoch chose epoch %d on held-out training subjects", model, fold, chosen)
        predictions = prediction_tables(outcome, fold, meta_arrays, classes, settings.selections, validated=chosen)
        yield FoldResult(
            model=model, fold=fold, shard=shard, key=key, test_subjects=[str(s) for s in row["test_subjects"]],
            n_train=int(train_idx.size), n_test=int(test_idx.size), seed=fold_seed_value, history=outcome.history,
            predictions=predictions, extras=dict(outcome.extras), device=outcome.device,
            precision=outcome.precision, wall_seconds=time.perf_counter() - started,
        )
    yield ShardDone(model=model, shard=shard, folds=done, reused=reused)


# ------------------------------------------------------------------------------------------------ aggregation
def _pool_extras(results: list[FoldResult]) -> dict[str, np.ndarray]:
    """The report extras of every fold stacked per key (the keys all folds share), plus ``fold`` naming each row's
    fold. Folds without extras (no test sample shown) add nothing."""
    shown = [r for r in results if len((r.extras or {}).get("sample_ids", [])) > 0]
    keys = sorted(set.intersection(*(set(r.extras) for r in shown))) if shown else ["sample_ids"]
    pooled = {key: np.concatenate([np.asarray(r.extras[key]) for r in shown]) if shown else np.array([], dtype=str)
              for key in keys}
    pooled["fold"] = np.array([r.fold for r in shown for _ in r.extras["sample_ids"]], dtype=str)
    return pooled


def collect_predictions(
    folds: pd.DataFrame,
    model_input_meta: dict[str, Any],
    seed: int,
    selections: list[str],
    model_params: dict[str, Any],
    task_params: dict[str, Any] | None,
    training: dict[str, Any],
    *shard_results: dict[str, FoldResult],
    model: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Node: the pooled prediction table, the per-epoch history and the task's report extras of the current folds.

    Picks, for every fold of the folds table, the stored result with exactly the key this run would train;
    a missing one is an error naming the fold and its shard (run that shard), never a silent gap.
    """
    settings = FoldSettings.from_params(seed, selections, model_params, task_params, training)
    by_key: dict[str, FoldResult] = {}
    for results in shard_results:
        by_key.update(results)
    chosen, missing = [], []
    for _, row in folds.iterrows():
        result = by_key.get(fold_key(model, model_input_meta["fingerprint"], row, settings))
        if result is None:
            missing.append(f"{row['fold']} (shard {row['shard']})")
        else:
            chosen.append(result)
    if missing:
        raise ValueError(
            f"{model}: no result for fold(s) {', '.join(missing)} with the current inputs and settings; run the "
            f"missing shard(s), e.g. kedro run --pipelines={model} --namespaces={model}.shard_<k>"
        )
    table = pd.concat([r.predictions for r in chosen], ignore_index=True) if chosen else pd.DataFrame()
    history = pd.concat([r.history.assign(fold=r.fold) for r in chosen], ignore_index=True) if chosen else pd.DataFrame()
    return table, history, _pool_extras(chosen)


def evaluate_predictions(
    predictions: pd.DataFrame, model_input_meta: dict[str, Any], selection: str, dataset: str,
    split: dict[str, Any], task_params: dict[str, Any] | None,
    protocol_results: dict[str, dict[str, Any]] | None = None, seed: int | None = None,
    model_params: dict[str, Any] | None = None, training: dict[str, Any] | None = None, *, model: str,
) -> dict[str, Any]:
    """Node: every metric of every selection, from the pooled prediction table only (scikit-learn), with the
    task's run labels (``tags``, ``leak``: see ``Task.run_tags`` / ``Task.leak``).

    Under ``split.protocol: holdout`` the folds are repeated splits, so a sample may be tested in several folds.
    ``protocol_summary`` is this run's summary for the protocol store and ``protocols`` lists it next to the stored
    summaries of the same settings under other protocols (``protocol_results``; microexpr.evaluation.protocols).
    """
    task = build_task(model, task_params)
    repeated = split.get("protocol") == "holdout"
    classes = list(model_input_meta["classes"])
    selections = sorted(set(predictions["selection"]), key=SELECTIONS.index)
    primary = str(selection or "honest")
    if primary not in selections:
        raise ValueError(f"{model}: selection {primary!r} was not computed (have {selections})")
    metrics = {
        "model": model,
        "dataset": dataset,
        "label_set": model_input_meta["label_set"],
        "classes": classes,
        "primary_selection": primary,
        "split_protocol": str(split.get("protocol", "")),
        "selections": {s: compute_metrics(predictions, classes, s, repeated_splits=repeated) for s in selections},
        "excluded_samples": model_input_meta.get("excluded", []),
        "n_samples": model_input_meta["n_samples"],
        "n_subjects": model_input_meta.get("n_subjects"),
        "n_folds": int(predictions["fold"].nunique()) if len(predictions) else 0,
        "tags": {str(k): str(v) for k, v in task.run_tags().items()},
        "leak": task.leak(),
    }
    summary = protocol_summary(metrics, split, settings_key(model, seed, model_params, task_params, training))
    metrics["protocol_summary"] = summary
    metrics["protocols"] = side_by_side(summary, protocol_results or {})
    return metrics


def protocol_result(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node: this run's protocol summary keyed for the protocol store (the newest run of each key is kept)."""
    summary = metrics["protocol_summary"]
    return {summary["key"]: summary}


# ---------------------------------------------------------------------------------------------------- report
def labelled_model(metrics: dict[str, Any]) -> str:
    """The model's name as every title shows it: with its leak label when the run feeds test annotations."""
    leak = metrics.get("leak")
    return f"{metrics['model']} · {leak}" if leak else str(metrics["model"])


def _titler(metrics: dict[str, Any], selection: str | None) -> Callable[[str], str]:
    def title(what: str) -> str:
        return run_title(what, model=labelled_model(metrics), dataset=metrics["dataset"],
                         label_set=metrics["label_set"], selection=selection)

    return title


def report_figures(metrics: dict[str, Any], history: pd.DataFrame) -> tuple[Figure, Figure, Figure, Figure]:
    """Node: the figures every model gets: confusion matrices (one per selection), per-subject accuracy and the
    training curves of every loss term."""
    primary = metrics["primary_selection"]
    by_sel = metrics["selections"]
    confusion_honest = confusion_matrix_figure(
        by_sel["honest"]["confusion_matrix"], metrics["classes"], _titler(metrics, "honest")("Confusion matrix"))
    oracle_name = "oracle_epoch" if "oracle_epoch" in by_sel else "honest"
    confusion_oracle = confusion_matrix_figure(
        by_sel[oracle_name]["confusion_matrix"], metrics["classes"], _titler(metrics, oracle_name)("Confusion matrix"))
    per_subject = per_subject_accuracy_figure(
        pd.DataFrame(by_sel[primary]["per_subject"]), title=_titler(metrics, primary)("Per-subject accuracy"))
    curves = training_curves_figure(history, title=_titler(metrics, "training")("Training curves"))
    return confusion_honest, confusion_oracle, per_subject, curves


ANNOTATION_COLUMNS = ("sample_id", "fold", "y_true", "label_true", "label", "aus", "au_codes")


def report_annotations(
    report_extras: dict[str, np.ndarray], predictions: pd.DataFrame, sample_index: pd.DataFrame
) -> pd.DataFrame:
    """The annotations of the report extras' test samples, one row per extras row (same order): the prediction
    table's ``y_true`` / ``label_true`` of that (sample, fold) and the sample index's ``label``, ``aus`` (canonical
    AU items) and ``au_codes`` (AU numbers); a column the index lacks is None.

    Evaluation only: joined after every prediction was made (the extras come from test inputs alone)."""
    ids = np.asarray(report_extras.get("sample_ids", []), dtype=str)
    folds = np.asarray(report_extras.get("fold", [""] * len(ids)), dtype=str)
    keys = pd.DataFrame({"sample_id": ids, "fold": folds})
    if not len(keys):
        return pd.DataFrame(columns=list(ANNOTATION_COLUMNS))
    truth = (predictions.assign(sample_id=predictions["sample_id"].astype(str), fold=predictions["fold"].astype(str))
             .drop_duplicates(["sample_id", "fold"])[["sample_id", "fold", "y_true", "label_true"]])
    index = sample_index.assign(sample_id=sample_index["sample_id"].astype(str))
    index = index[[c for c in ("sample_id", "label", "aus", "au_codes") if c in index.columns]]
    table = keys.merge(truth, on=["sample_id", "fold"], how="left", validate="many_to_one")
    table = table.merge(index.drop_duplicates("sample_id"), on="sample_id", how="left", validate="many_to_one")
    if table["y_true"].isna().any():
        missing = table.loc[table["y_true"].isna(), "sample_id"].tolist()
        raise ValueError(f"report extras of sample(s) {missing[:5]} have no row in the prediction table")
    for column in ANNOTATION_COLUMNS:
        if column not in table.columns:
            table[column] = None
    return table[list(ANNOTATION_COLUMNS)].assign(y_true=table["y_true"].astype(np.int64))


def task_figures(
    metrics: dict[str, Any], report_extras: dict[str, np.ndarray], predictions: pd.DataFrame,
    sample_index: pd.DataFrame, *, model: str
) -> tuple[dict[str, Figure], list[str]]:
    """Node: the model's own figures from its report extras (``<stem>.png`` -> Figure; may be empty), and their
    file names for the report. The task may read the shown test samples' annotations (``report_annotations``),
    joined here, after prediction, for evaluation figures only."""
    annotations = report_annotations(report_extras, predictions, sample_index)
    figures = task_class(model).make_annotated_report_figures(
        report_extras, _titler(metrics, metrics["primary_selection"]), annotations)
    named = {f"{stem}.png": figure for stem, figure in figures.items()}
    return named, sorted(named)


def scorecard_node(metrics: dict[str, Any]) -> pd.DataFrame:
    """Node: ours under both selections next to the paper's claim for the run's dataset and label set, and chance."""
    return build_scorecard(load_paper_claims(), metrics["selections"], metrics["model"], metrics["dataset"],
                           metrics["label_set"], metrics["classes"])


def scorecard_plot(scorecard: pd.DataFrame, metrics: dict[str, Any]) -> Figure:
    """Node: the scorecard as a figure (previewable in kedro-viz)."""
    return scorecard_figure(scorecard, title=_titler(metrics, None)("Ours vs the paper"))


def render_report(
    scorecard: pd.DataFrame, metrics: dict[str, Any], history: pd.DataFrame, task_figure_files: list[str],
    seed: int, training: dict[str, Any],
) -> str:
    """Node: the markdown report (figures referenced by the file names they get in the MLflow run)."""
    figures = {title: f"{stem}.png" for stem, title in GENERIC_FIGURES.items()}
    task = task_class(metrics["model"])
    for name in task_figure_files:
        stem = name.removesuffix(".png")
        figures[task.report_figures.get(stem, stem)] = name
    run_info: dict[str, Any] = {
        "model": labelled_model(metrics),
        "dataset": metrics["dataset"],
        "label_set": metrics["label_set"],
        "primary_selection": metrics["primary_selection"],
        "split_protocol": metrics.get("split_protocol", ""),
        "n_samples": metrics["n_samples"],
        "n_excluded": len(metrics.get("excluded_samples", [])),
        "epochs_per_fold": int(history["epoch"].max()) if len(history) else 0,
        "seed": seed,
    }
    for key in ("n_subjects", "n_folds"):
        if metrics.get(key):
            run_info[key] = metrics[key]
    run_info.update(metrics.get("tags") or {})
    if metrics.get("leak"):
        run_info["leak"] = metrics["leak"]
    auxiliary = metrics["selections"][metrics["primary_selection"]].get("auxiliary") or {}
    if auxiliary:  # a task's auxiliary scores (e.g. flow EPE, landmark NME), pooled over the test samples
        run_info["auxiliary scores (test samples, last epoch)"] = ", ".join(
            f"{name} {summary['mean']:.4g}" for name, summary in auxiliary.items())
    warmup = int(((training or {}).get("scheduler") or {}).get("warmup_epochs", 0) or 0)
    if warmup:
        run_info["demo settings (not the paper's)"] = f"learning-rate warm-up over {warmup} epochs"
    other = other_paper_claims(load_paper_claims(), metrics["model"], metrics["dataset"], metrics["label_set"])
    side = protocols_markdown(metrics.get("protocols") or [], SELECTIONS)
    return render_report_markdown(scorecard, metrics["selections"], figures, run_info, other_claims=other,
                                  extra_sections=side)


# --------------------------------------------------------------------------------------------------- builders
def _settings_inputs(prefix: str = "") -> list[str]:
    return [f"params:{prefix}{name}" for name in FOLD_SETTING_PARAMS]


def shard_pipeline(model: str, shard: int, shards: int) -> Pipeline:
    """``<model>.shard_<k>``: one training node reading the model input and folds, streaming fold results."""
    params = [*_settings_inputs(), "params:log_every_epochs"]
    resources = list(task_class(model).catalog_inputs)
    node = Node(
        _bind(train_shard, model=model, shard=shard, shards=shards),
        inputs=["model_input", "model_input_meta", "folds", "completed_folds", *params, *resources],
        outputs="fold_results",
        name="train_shard",
        tags=["train", "gpu", model],
    )
    return Pipeline(
        [node],
        namespace=f"shard_{shard}",
        inputs={"model_input", "model_input_meta", "folds", *resources},
        parameters={name: name for name in params},  # the model's blocks, not shard-prefixed ones
    )


def create_training_pipeline(model: str) -> Pipeline:
    """Input bundle, ``n_shards()`` shard namespaces, aggregation, evaluation and report of one registered model."""
    task = task_class(model)
    shards = n_shards()
    nodes = Pipeline([
        Node(_bind(build_model_input, model=model),
             {"sample_index": "sample_index", "label_maps": "label_maps", "task_params": "params:task",
              **{name: name for name in (*task.features, *task.catalog_inputs)}},
             ["model_input", "model_input_meta"], name="build_model_input", tags=["train", model]),
        Node(_bind(collect_predictions, model=model),
             ["folds", "model_input_meta", *_settings_inputs(), *[f"shard_{k}.fold_results" for k in range(shards)]],
             ["predictions", "training_history", "report_extras"], name="collect_predictions",
             tags=["evaluate", model]),
        Node(_bind(evaluate_predictions, model=model),
             ["predictions", "model_input_meta", "params:selection", "params:dataset", "params:split",
              "params:task", "protocol_results", "params:seed", "params:model", "params:training"], "metrics",
             name="evaluate", tags=["evaluate", model]),
        Node(protocol_result, "metrics", "protocol_result", name="protocol_result", tags=["evaluate", model]),
        Node(report_figures, ["metrics", "training_history"],
             ["confusion_honest_figure", "confusion_oracle_epoch_figure", "per_subject_accuracy_figure",
              "training_curves_figure"], name="report_figures", tags=["report", model]),
        Node(_bind(task_figures, model=model), ["metrics", "report_extras", "predictions", "sample_index"],
             ["task_figures", "task_figure_files"], name="task_figures", tags=["report", model]),
        Node(scorecard_node, "metrics", "scorecard", name="scorecard", tags=["report", model]),
        Node(scorecard_plot, ["scorecard", "metrics"], "scorecard_figure", name="scorecard_figure",
             tags=["report", model]),
        Node(render_report, ["scorecard", "metrics", "training_history", "task_figure_files", "params:seed",
                             "params:training"], "report", name="render_report", tags=["report", model]),
    ])
    shard_pipes = sum((shard_pipeline(model, k, shards) for k in range(shards)), Pipeline([]))
    model_params = [*FOLD_SETTING_PARAMS, "log_every_epochs", "selection"]
    return Pipeline(
        [nodes, shard_pipes],
        namespace=model,
        inputs={"sample_index", "folds", "label_maps", *task.features, *task.catalog_inputs},
        parameters={**{f"params:{name}": f"params:{model}.{name}" for name in model_params},
                    "params:dataset": "params:dataset", "params:split": "params:split"},
    )


def create_model_pipeline(model: str) -> Pipeline:
    """What ``kedro run --pipelines=<model>`` runs: ingest, the features the model's task needs, split, training,
    and the full-data model (microexpr.dag.final_model)."""
    return (
        create_ingest_pipeline()
        + create_preprocess_pipeline(features=task_class(model).features)
        + create_split_pipeline()
        + create_training_pipeline(model)
        + create_final_model_pipeline(model)
    )
