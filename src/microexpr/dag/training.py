"""Training stage of any model: input bundle -> fold shards -> pooled predictions -> metrics -> report.

Each shard is a pipeline-level namespace ``<model>.shard_<k>`` whose inputs and outputs all go through the
catalog, so ``kedro run --pipelines=<model> --namespaces=<model>.shard_<k>`` runs one shard alone (a cluster
job), and a killed run restarts losing at most the fold in progress: the shard streams one result per fold to
its store and, on restart, reuses every stored result whose key (inputs, fold, settings) still matches.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Node, Pipeline
from matplotlib.figure import Figure

from microexpr.dag.shards import n_shards
from microexpr.data.protocols import folds_of_shard
from microexpr.datasets.feature_store import FeatureTable
from microexpr.evaluation.figures import (
    attention_overlay_figure,
    confusion_matrix_figure,
    per_subject_accuracy_figure,
    run_title,
    scorecard_figure,
    training_curves_figure,
)
from microexpr.evaluation.metrics import compute_metrics
from microexpr.evaluation.scorecard import build_scorecard, load_paper_claims, render_report_markdown
from microexpr.training.inputs import INPUT_BUILDERS
from microexpr.training.loop import train_fold
from microexpr.training.results import FoldResult, ShardDone, fold_key, fold_seed
from microexpr.training.selection import prediction_tables

logger = logging.getLogger(__name__)

SELECTIONS = ("honest", "oracle_epoch")


# ----------------------------------------------------------------------------------------------------- inputs
def build_model_input(
    sample_index: pd.DataFrame, feature: FeatureTable, label_maps: dict[str, Any], input_kind: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Node: pack the model's input arrays once for all folds (see microexpr.training.inputs)."""
    try:
        builder = INPUT_BUILDERS[input_kind]
    except KeyError:
        raise ValueError(f"unknown input kind {input_kind!r}; expected one of {sorted(INPUT_BUILDERS)}") from None
    return builder(sample_index, feature, label_maps)


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
    params: dict[str, Any],
    *,
    model: str,
    shard: int,
    shards: int,
) -> Iterator[FoldResult | ShardDone]:
    """Node (generator): train and evaluate every fold of one shard, streaming one result per fold.

    A fold whose key is already in ``completed_folds`` (an earlier, interrupted run) is not trained again: its
    stored result is passed on, marked ``reused``. The last chunk is always a :class:`ShardDone`.
    """
    mine = folds_of_shard(folds, shard, shards)
    model_cfg = dict(params["model"])
    model_name = str(model_cfg.pop("name"))
    train_params = dict(params["training"])
    selections = [s for s in params.get("selections", SELECTIONS)]
    classes = [str(c) for c in model_input["classes"]]
    meta_arrays = {k: model_input[k] for k in ("sample_id", "dataset", "subject", "fold_subject", "y")}
    done: dict[str, str] = {}
    reused: list[str] = []
    logger.info("%s shard %d/%d: %d fold(s) %s", model, shard, shards, len(mine), mine["fold"].tolist())
    for position, (_, row) in enumerate(mine.iterrows(), start=1):
        fold = str(row["fold"])
        key = fold_key(model, model_input_meta["fingerprint"], row, params["model"], params["training"])
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
        seed = fold_seed(int(params.get("seed", 0)), fold)
        logger.info("%s %s (%d/%d in shard %d): %d train / %d test samples, seed %d", model, fold, position,
                    len(mine), shard, train_idx.size, test_idx.size, seed)
        started = time.perf_counter()
        outcome = train_fold(model_name, model_cfg, model_input, train_idx, test_idx, train_params, seed,
                             _progress_logger(model, fold, every=max(1, int(params.get("log_every_epochs", 5)))))
        predictions = prediction_tables(outcome, fold, meta_arrays, classes, selections)
        yield FoldResult(
            model=model, fold=fold, shard=shard, key=key, test_subjects=[str(s) for s in row["test_subjects"]],
            n_train=int(train_idx.size), n_test=int(test_idx.size), seed=seed, history=outcome.history,
            predictions=predictions, attention=dict(outcome.attention), device=outcome.device,
            precision=outcome.precision, wall_seconds=time.perf_counter() - started,
        )
    yield ShardDone(model=model, shard=shard, folds=done, reused=reused)


# ------------------------------------------------------------------------------------------------ aggregation
def collect_predictions(
    folds: pd.DataFrame,
    model_input_meta: dict[str, Any],
    params: dict[str, Any],
    *shard_results: dict[str, FoldResult],
    model: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Node: the pooled prediction table, the per-epoch history and attention examples of the current folds.

    Picks, for every fold of the folds table, the stored result with exactly the key this run would train;
    a missing one is an error naming the fold and its shard (run that shard), never a silent gap.
    """
    by_key: dict[str, FoldResult] = {}
    for results in shard_results:
        by_key.update(results)
    predictions, histories, missing = [], [], []
    attention: dict[str, list] = {"sample_ids": [], "maps": [], "faces": [], "folds": []}
    for _, row in folds.iterrows():
        key = fold_key(model, model_input_meta["fingerprint"], row, params["model"], params["training"])
        result = by_key.get(key)
        if result is None:
            missing.append(f"{row['fold']} (shard {row['shard']})")
            continue
        predictions.append(result.predictions)
        histories.append(result.history.assign(fold=result.fold))
        for sid, amap, face in zip(result.attention.get("sample_ids", []), result.attention.get("maps", []),
                                   result.attention.get("faces", []), strict=False):
            attention["sample_ids"].append(str(sid))
            attention["maps"].append(np.asarray(amap, dtype=np.float32))
            attention["faces"].append(np.asarray(face, dtype=np.uint8))
            attention["folds"].append(result.fold)
    if missing:
        raise ValueError(
            f"{model}: no result for fold(s) {', '.join(missing)} with the current inputs and settings; run the "
            f"missing shard(s), e.g. kedro run --pipelines={model} --namespaces={model}.shard_<k>"
        )
    table = pd.concat(predictions, ignore_index=True) if predictions else pd.DataFrame()
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return table, history, attention


def evaluate_predictions(
    predictions: pd.DataFrame, model_input_meta: dict[str, Any], params: dict[str, Any], dataset: str,
    split: dict[str, Any], *, model: str,
) -> dict[str, Any]:
    """Node: every metric of every selection, from the pooled prediction table only (scikit-learn).

    Under ``split.protocol: holdout`` the folds are repeated splits, so a sample may be tested in several folds.
    """
    repeated = split.get("protocol") == "holdout"
    classes = list(model_input_meta["classes"])
    selections = sorted(set(predictions["selection"]), key=SELECTIONS.index)
    primary = str(params.get("selection", "honest"))
    if primary not in selections:
        raise ValueError(f"{model}: selection {primary!r} was not computed (have {selections})")
    return {
        "model": model,
        "dataset": dataset,
        "label_set": model_input_meta["label_set"],
        "classes": classes,
        "primary_selection": primary,
        "selections": {s: compute_metrics(predictions, classes, s, repeated_splits=repeated) for s in selections},
        "excluded_samples": model_input_meta.get("excluded", []),
        "n_samples": model_input_meta["n_samples"],
    }


# ---------------------------------------------------------------------------------------------------- report
def _title(what: str, metrics: dict[str, Any], selection: str) -> str:
    return run_title(what, model=metrics["model"], dataset=metrics["dataset"], label_set=metrics["label_set"],
                     selection=selection)


def report_figures(
    metrics: dict[str, Any], history: pd.DataFrame, attention: dict[str, Any]
) -> tuple[Figure, Figure, Figure, Figure, Figure]:
    """Node: confusion matrices (one per selection), per-subject accuracy, training curves, attention overlay."""
    primary = metrics["primary_selection"]
    by_sel = metrics["selections"]
    confusion_honest = confusion_matrix_figure(
        by_sel["honest"]["confusion_matrix"], metrics["classes"], _title("Confusion matrix", metrics, "honest"))
    oracle = by_sel.get("oracle_epoch", by_sel["honest"])
    confusion_oracle = confusion_matrix_figure(
        oracle["confusion_matrix"], metrics["classes"],
        _title("Confusion matrix", metrics, "oracle_epoch" if "oracle_epoch" in by_sel else "honest"))
    per_subject = per_subject_accuracy_figure(
        pd.DataFrame(by_sel[primary]["per_subject"]), title=_title("Per-subject accuracy", metrics, primary))
    curves = training_curves_figure(history, title=_title("Training curves", metrics, "training"))
    k = len(attention.get("sample_ids", []))
    overlay = attention_overlay_figure(
        list(attention.get("faces", []))[:8], list(attention.get("maps", []))[:8],
        [f"{s} ({f})" for s, f in zip(attention.get("sample_ids", []), attention.get("folds", []), strict=False)][:8],
        title=_title(f"First CA block attention on {min(k, 8)} test faces", metrics, primary),
    )
    return confusion_honest, confusion_oracle, per_subject, curves, overlay


def scorecard_node(metrics: dict[str, Any]) -> pd.DataFrame:
    """Node: the paper's claimed numbers next to ours, both selections, with deltas."""
    ours = [
        {"selection": sel, "dataset": metrics["dataset"], "label_set": metrics["label_set"], "metrics": m}
        for sel, m in metrics["selections"].items()
    ]
    return build_scorecard(load_paper_claims(), ours, metrics["model"], include_unmatched_claims=True)


def scorecard_plot(scorecard: pd.DataFrame, metrics: dict[str, Any]) -> Figure:
    """Node: the scorecard as a figure (previewable in kedro-viz)."""
    return scorecard_figure(scorecard, title=f"{metrics['model']}: paper claim vs ours ({metrics['dataset']}, "
                                            f"{metrics['label_set']})")


def render_report(
    scorecard: pd.DataFrame, metrics: dict[str, Any], history: pd.DataFrame, params: dict[str, Any]
) -> str:
    """Node: the markdown report (figures referenced by the file names they get in the MLflow run)."""
    figures = {
        "Confusion matrix (honest)": "confusion_honest.png",
        "Confusion matrix (oracle_epoch)": "confusion_oracle_epoch.png",
        "Per-subject accuracy": "per_subject_accuracy.png",
        "Training curves": "training_curves.png",
        "Attention of the first CA block": "attention_overlay.png",
        "Scorecard": "scorecard.png",
    }
    epochs = int(history["epoch"].max()) if len(history) else 0
    run_info = {
        "model": metrics["model"],
        "dataset": metrics["dataset"],
        "label_set": metrics["label_set"],
        "primary selection": metrics["primary_selection"],
        "samples": metrics["n_samples"],
        "samples excluded before training": len(metrics.get("excluded_samples", [])),
        "epochs per fold": epochs,
        "seed": params.get("seed", 0),
    }
    return render_report_markdown(scorecard, metrics["selections"], figures, run_info)


# --------------------------------------------------------------------------------------------------- builders
def shard_pipeline(model: str, shard: int, shards: int) -> Pipeline:
    """``<model>.shard_<k>``: one training node reading the model input and folds, streaming fold results."""
    fn = functools.update_wrapper(functools.partial(train_shard, model=model, shard=shard, shards=shards), train_shard)
    node = Node(
        fn,
        inputs=["model_input", "model_input_meta", "folds", "completed_folds", "params:model_params"],
        outputs="fold_results",
        name="train_shard",
        tags=["train", "gpu", model],
    )
    return Pipeline(
        [node],
        namespace=f"shard_{shard}",
        inputs={"model_input", "model_input_meta", "folds"},
        parameters={"params:model_params": "params:model_params"},
    )


def create_training_pipeline(model: str, feature: str, input_kind: str) -> Pipeline:
    """Input bundle, ``n_shards()`` shard namespaces, aggregation, evaluation and report of one model."""
    shards = n_shards()
    build = functools.update_wrapper(functools.partial(build_model_input, input_kind=input_kind), build_model_input)
    collect = functools.update_wrapper(functools.partial(collect_predictions, model=model), collect_predictions)
    evaluate = functools.update_wrapper(functools.partial(evaluate_predictions, model=model), evaluate_predictions)
    nodes = Pipeline([
        Node(build, {"sample_index": "sample_index", "feature": feature, "label_maps": "label_maps"},
             ["model_input", "model_input_meta"],
             name="build_model_input", tags=["train", model]),
        Node(collect, ["folds", "model_input_meta", "params:model_params",
                       *[f"shard_{k}.fold_results" for k in range(shards)]],
             ["predictions", "training_history", "attention_examples"], name="collect_predictions",
             tags=["evaluate", model]),
        Node(evaluate, ["predictions", "model_input_meta", "params:model_params", "params:dataset", "params:split"],
             "metrics",
             name="evaluate", tags=["evaluate", model]),
        Node(report_figures, ["metrics", "training_history", "attention_examples"],
             ["confusion_honest_figure", "confusion_oracle_epoch_figure", "per_subject_accuracy_figure",
              "training_curves_figure", "attention_overlay_figure"], name="report_figures", tags=["report", model]),
        Node(scorecard_node, "metrics", "scorecard", name="scorecard", tags=["report", model]),
        Node(scorecard_plot, ["scorecard", "metrics"], "scorecard_figure", name="scorecard_figure",
             tags=["report", model]),
        Node(render_report, ["scorecard", "metrics", "training_history", "params:model_params"], "report",
             name="render_report", tags=["report", model]),
    ])
    shard_pipes = sum((shard_pipeline(model, k, shards) for k in range(shards)), Pipeline([]))
    return Pipeline(
        [nodes, shard_pipes],
        namespace=model,
        inputs={"sample_index", feature, "folds", "label_maps"},
        parameters={"params:model_params": f"params:{model}", "params:dataset": "params:dataset",
                    "params:split": "params:split"},
    )
