"""Full-data model stage of any registered model: after the LOSO folds, one model trained on every subject.

LOSO answers "how good is the method"; this stage keeps a model to use on new clips (``microexpr predict``): the
same fixed schedule, seed and settings as a fold, trained on all samples of the input bundle (everycure-org/matrix's
"full-train fold"). Its card carries the run's honest LOSO metrics, the only number to quote for it: the full-data
model itself has no held-out subject left to measure it on. ``<model>.final_model: false`` (conf/quick, conf/test)
stores a card that says so and trains nothing. The catalog writes it (``<model>.final_model``), the tracking hook
adds the MLflow run id and logs it as the run's model.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import numpy as np
from kedro.pipeline import Node, Pipeline

from microexpr.dag.preprocess import feature_config
from microexpr.inference.card import (
    ALIGNMENT_FEATURE,
    FULL_DATA_FOLD,
    FinalModel,
    build_card,
    card_features,
    inference_state,
)
from microexpr.models import build_task, task_class
from microexpr.training.loop import train_fold
from microexpr.training.results import fold_seed

logger = logging.getLogger(__name__)

PREPROCESS_PREFIX = "preprocess_"


def preprocessing_of(features: list[str], params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each step's settings as its recipe receives them (``workers`` left out; crop settings resolved)."""
    out = {}
    for feature in features:
        block = dict(params[feature] or {})
        if feature == ALIGNMENT_FEATURE:
            out[feature] = {k: v for k, v in block.items() if k != "workers"}
        else:
            out[feature] = feature_config(feature, block)
    return out


def train_final_model(
    model_input: dict[str, np.ndarray],
    model_input_meta: dict[str, Any],
    metrics: dict[str, Any],
    seed: int,
    model_params: dict[str, Any],
    task_params: dict[str, Any] | None,
    training: dict[str, Any],
    enabled: bool,
    dataset: str,
    *,
    model: str,
    **preprocess: dict[str, Any],
) -> FinalModel:
    """Node: train ``model`` on every sample of its bundle (fixed schedule, seed of fold ``full_data``) and return
    the weights with their card; a card alone, saying why, when ``enabled`` is false. Keyword inputs named by the
    task's ``catalog_inputs`` (e.g. a text encoder) reach the task as resources. Only the tensors of the task's
    ``inference_modules`` are kept (all when it names none): a training-only branch is not saved."""
    if not isinstance(enabled, bool):
        raise ValueError(f"{model}.final_model must be true or false, got {enabled!r}")
    resource_names = set(task_class(model).catalog_inputs)
    resources = {name: value for name, value in preprocess.items() if name in resource_names}
    task = build_task(model, task_params, resources)
    features = card_features(task_class(model).features)
    params = {name.removeprefix(PREPROCESS_PREFIX): block for name, block in preprocess.items()
              if name not in resource_names}
    meta = model_input_meta
    card_args = dict(
        model=model, model_config=model_params, task_settings=task_params, training=training, seed=seed,
        classes=[str(c) for c in meta["classes"]], label_set=str(meta["label_set"]), dataset=str(dataset),
        features=features, preprocessing=preprocessing_of(features, params), metrics=metrics,
        trained_on={"n_samples": int(meta["n_samples"]), "n_subjects": meta.get("n_subjects"),
                    "datasets": meta.get("datasets"), "input_fingerprint": meta.get("fingerprint")},
        leak=task.leak(), run_tags={str(k): str(v) for k, v in task.run_tags().items()},
        inference_modules=task_class(model).inference_modules,
    )
    if not enabled:
        logger.info("%s: final_model is false; no full-data model is trained (its card says so)", model)
        return FinalModel(build_card(**card_args, skipped=f"{model}.final_model was false in this run"), None)
    every = max(1, int(training.get("epochs", 10)) // 5)
    all_rows = np.arange(len(model_input["sample_id"]))
    seed_value = fold_seed(seed, FULL_DATA_FOLD)
    logger.info("%s: training the full-data model on %d samples of %s subjects, seed %d", model, all_rows.size,
                meta.get("n_subjects"), seed_value)
    started = time.perf_counter()

    def progress(epoch: int, epochs: int, loss: float, acc: float, samples_per_s: float) -> None:
        if epoch == 1 or epoch == epochs or epoch % every == 0:
            logger.info("%s full-data epoch %d/%d: loss %.4f, train acc %.3f, %.1f samples/s", model, epoch, epochs,
                        loss, acc, samples_per_s)

    config = {**training, "return_model_state": True, "evaluate_each_epoch": False, "report_samples": 0}
    outcome = train_fold(model, model_params, model_input, all_rows, [], config, seed_value, progress, task_cfg=task)
    card = build_card(**card_args)
    last = outcome.history.iloc[-1]
    card["full_data_training"] = {
        "fold_seed": seed_value, "epochs": outcome.epochs, "final_train_loss": float(last["train_loss"]),
        "final_train_acc": float(last["train_acc"]), "device": outcome.device, "precision": outcome.precision,
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    return FinalModel(card, inference_state(outcome.model_state, task_class(model).inference_modules))


def create_final_model_pipeline(model: str) -> Pipeline:
    """``<model>.train_final_model``: bundle + LOSO metrics + settings -> ``<model>.final_model``."""
    features = card_features(task_class(model).features)
    preprocess = {f"{PREPROCESS_PREFIX}{f}": f"params:preprocess.{f}" for f in features}
    inputs = {"model_input": "model_input", "model_input_meta": "model_input_meta", "metrics": "metrics",
              "seed": "params:seed", "model_params": "params:model", "task_params": "params:task",
              "training": "params:training", "enabled": "params:final_model", "dataset": "params:dataset",
              **preprocess, **{name: name for name in task_class(model).catalog_inputs}}
    node = Node(_bind_model(model), inputs, "final_model", name="train_final_model", tags=["train", "gpu", model])
    own = ["seed", "model", "task", "training", "final_model"]
    return Pipeline(
        [node], namespace=model, inputs=set(task_class(model).catalog_inputs) or None,
        parameters={**{f"params:{name}": f"params:{model}.{name}" for name in own},
                    "params:dataset": "params:dataset", **{v: v for v in preprocess.values()}},
    )


def _bind_model(model: str):
    """``train_final_model`` with the model fixed, keeping its name and docstring (node name, kedro-viz)."""
    return functools.update_wrapper(functools.partial(train_final_model, model=model), train_final_model)
