"""The full-data model: its weights and its JSON card, built by the training DAG and checked before any use.

A card says everything prediction needs to treat a new clip exactly as training treated the training clips, taken
from the run that trained it (never from today's configuration): the model name and constructor options, the task
settings, the label set and its classes, the preprocessing parameters of every feature the task reads (and of the
face alignment), the feature recipe and input-bundle versions, the dataset, the run's honest LOSO metrics (the
number to quote for this model) and the MLflow run id. ``check_card`` compares a card with this code and
``instantiate`` rebuilds the model from the card and the weights; any disagreement is a :class:`CardMismatch`
that names it, never a silent mis-prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CARD_FORMAT = "microexpr.final_model"
CARD_VERSION = 1
FULL_DATA_FOLD = "full_data"  # the fold id the full-data model's seed derives from
ALIGNMENT_FEATURE = "face_alignment"
METRIC_KEYS = {"accuracy": "acc", "uf1": "uf1", "uar": "uar", "wf1": "wf1"}  # card key -> metrics.json key

__all__ = [
    "CARD_FORMAT",
    "CARD_VERSION",
    "CardMismatch",
    "FinalModel",
    "build_card",
    "card_features",
    "check_card",
    "code_versions",
    "drop_training_modules",
    "inference_state",
    "instantiate",
    "loso_summary",
]


class CardMismatch(ValueError):
    """A model card that this code cannot honour (recipe versions, classes, model options or weights differ)."""


@dataclass
class FinalModel:
    """What the full-data node returns and the catalog stores: the card and the weights (``state``: tensor name ->
    CPU tensor). ``state`` is None when ``final_model`` was off: the card then says why and nothing can predict."""

    card: dict[str, Any]
    state: dict[str, Any] | None = None

    @property
    def trained(self) -> bool:
        return self.state is not None


def card_features(features: tuple[str, ...] | list[str]) -> list[str]:
    """The preprocessing steps a model's inputs go through: the face alignment, then its task's features."""
    return [ALIGNMENT_FEATURE, *[f for f in features if f != ALIGNMENT_FEATURE]]


def inference_state(state: Mapping[str, Any], modules: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """The tensors of ``state`` that the inference model holds: those of the top-level submodules ``modules``
    (``Task.inference_modules``) and the model's own direct tensors; every tensor when ``modules`` is empty."""
    if not modules:
        return dict(state)
    return {name: tensor for name, tensor in state.items() if "." not in name or name.split(".", 1)[0] in modules}


def drop_training_modules(model: Any, modules: tuple[str, ...] | list[str]) -> Any:
    """``model`` without the top-level submodules outside ``modules`` (set to None, so their tensors leave the
    state dict and a prediction that reached them fails loudly); unchanged when ``modules`` is empty."""
    if not modules:
        return model
    children = dict(model.named_children())
    unknown = sorted(set(modules) - set(children))
    if unknown:
        raise ValueError(f"{type(model).__name__} has no submodules {unknown} (inference_modules); it has "
                         f"{sorted(children)}")
    for name in children:
        if name not in modules:
            setattr(model, name, None)
    return model


def code_versions(features: list[str]) -> dict[str, Any]:
    """The versions of this code that decide what a feature and a bundle look like (recipes, bundle layout)."""
    from microexpr import __version__
    from microexpr.features.recipes import RECIPE_VERSION
    from microexpr.training.inputs import BUNDLE_VERSION

    return {"recipes": dict.fromkeys(features, RECIPE_VERSION), "bundle": BUNDLE_VERSION, "microexpr": __version__}


def loso_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The honest LOSO numbers of the run (selection ``honest``; the primary selection if honest was not computed,
    labelled): accuracy, UF1, UAR, WF1, plus the protocol, folds and sample count they come from."""
    selections = metrics.get("selections") or {}
    chosen = "honest" if "honest" in selections else str(metrics.get("primary_selection", ""))
    values = selections.get(chosen, {})
    summary: dict[str, Any] = {"selection": chosen, "protocol": metrics.get("split_protocol", ""),
                               "n_folds": metrics.get("n_folds"), "n_samples": metrics.get("n_samples")}
    for key, source in METRIC_KEYS.items():
        value = values.get(source)
        summary[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
    for key in ("leak", "tags"):
        if metrics.get(key):
            summary[key] = metrics[key]
    return summary


def build_card(
    *, model: str, model_config: Mapping[str, Any], task_settings: Mapping[str, Any] | None,
    training: Mapping[str, Any], seed: int, classes: list[str], label_set: str, dataset: str,
    features: list[str], preprocessing: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, Any],
    trained_on: Mapping[str, Any] | None = None, leak: str | None = None, run_tags: Mapping[str, str] | None = None,
    skipped: str | None = None, inference_modules: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """The JSON card of a full-data model (module docstring). ``weights`` is filled by the catalog when it writes
    them (file, sha256, bytes) and ``mlflow_run_id`` by the tracking hook. ``inference_modules``: the submodules
    the weights hold when the model has training-only parts (``Task.inference_modules``; empty: the whole model)."""
    steps = card_features(features)
    missing = [f for f in steps if f not in preprocessing]
    if missing:
        raise ValueError(f"{model}: the card needs the preprocessing parameters of {missing}")
    return {
        "format": CARD_FORMAT,
        "card_version": CARD_VERSION,
        "model": model,
        "model_config": dict(model_config or {}),
        "inference_modules": list(inference_modules),
        "task_settings": dict(task_settings or {}),
        "training": dict(training or {}),
        "seed": int(seed),
        "label_set": label_set,
        "classes": [str(c) for c in classes],
        "dataset": dataset,
        "features": steps,
        "preprocessing": {f: dict(preprocessing[f]) for f in steps},
        "versions": code_versions(steps),
        "loso_metrics": loso_summary(metrics),
        "leak": leak,
        "run_tags": dict(run_tags or {}),
        "trained_on": dict(trained_on or {}),
        "mlflow_run_id": None,
        "weights": None,
        "skipped": skipped,
    }


def _mismatch(card: Mapping[str, Any], what: str) -> CardMismatch:
    return CardMismatch(f"model card of {card.get('model', '?')!r} does not match this code: {what}")


def check_card(card: Mapping[str, Any], label_maps: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`CardMismatch` when the card cannot be honoured by this code: unknown format, no weights,
    an unregistered model, features the model's task no longer reads, recipe or bundle versions this code does not
    compute, or classes that differ from the label set in ``label_maps`` (``conf/base/labels.yml``) when given."""
    from microexpr.models import available_models, task_class

    if card.get("format") != CARD_FORMAT or card.get("card_version") != CARD_VERSION:
        raise CardMismatch(f"not a microexpr model card of version {CARD_VERSION} (format {card.get('format')!r}, "
                           f"version {card.get('card_version')!r})")
    if card.get("skipped") or not card.get("weights"):
        raise _mismatch(card, f"this version holds no weights ({card.get('skipped') or 'no weights entry'}); run the "
                              f"model's pipeline with {card.get('model')}.final_model: true")
    name = str(card.get("model"))
    if name not in available_models():
        raise _mismatch(card, f"model {name!r} is not registered here (available: {', '.join(available_models())})")
    expected = card_features(task_class(name).features)
    if list(card.get("features", [])) != expected:
        raise _mismatch(card, f"it lists features {card.get('features')}, the {name} task reads {expected}")
    ours = code_versions(expected)
    theirs = card.get("versions") or {}
    if theirs.get("recipes") != ours["recipes"] or theirs.get("bundle") != ours["bundle"]:
        raise _mismatch(card, f"it was made with feature recipe versions {theirs.get('recipes')} and bundle version "
                              f"{theirs.get('bundle')}; this code computes {ours['recipes']} and {ours['bundle']}, so "
                              "its inputs would differ from training's. Retrain, or use the microexpr version "
                              f"{theirs.get('microexpr')!r} that made it")
    kept = list(task_class(name).inference_modules)
    if list(card.get("inference_modules") or []) != kept:
        raise _mismatch(card, f"its weights hold the submodules {card.get('inference_modules') or 'all'}, the {name} "
                              f"task predicts with {kept or 'all'}")
    classes = card.get("classes")
    if not isinstance(classes, list) or not classes or len(set(classes)) != len(classes):
        raise _mismatch(card, f"classes must be a non-empty list of distinct names, got {classes!r}")
    if label_maps is not None:
        _check_classes(card, label_maps)


def _check_classes(card: Mapping[str, Any], label_maps: Mapping[str, Any]) -> None:
    """The card's classes must be the label set's classes (for the card's dataset) in this code's labels.yml."""
    from microexpr.data.labels import load_label_sets

    sets = load_label_sets(dict(label_maps))
    label_set = str(card.get("label_set"))
    if label_set not in sets:
        raise _mismatch(card, f"label set {label_set!r} is not defined in labels.yml (have {', '.join(sorted(sets))})")
    datasets = list((card.get("trained_on") or {}).get("datasets") or [card.get("dataset")])
    try:
        expected = list(sets[label_set].classes_for(str(datasets[0])))
    except Exception as error:  # noqa: BLE001 - a label set that cannot label the dataset: same message
        raise _mismatch(card, f"label set {label_set!r} cannot label dataset {datasets[0]!r}: {error}") from None
    if list(card["classes"]) != expected:
        raise _mismatch(card, f"classes {card['classes']} differ from label set {label_set!r} here: {expected}")


def instantiate(final: FinalModel) -> tuple[Any, Any]:
    """(model in eval mode, task) rebuilt from the card and loaded with the weights (strict: every tensor name and
    shape must match); a :class:`CardMismatch` naming what differs otherwise. A model with training-only parts is
    built without them (the card's ``inference_modules``): its weights hold the inference model only, and the task
    gets no resources (a text encoder, say), since prediction never needs them."""
    from microexpr.models import build_model, build_task

    card = final.card
    if final.state is None:
        raise _mismatch(card, "no weights were loaded")
    name = str(card["model"])
    try:
        task = build_task(name, card.get("task_settings") or {})
        model = build_model(name, num_classes=len(card["classes"]), **dict(card.get("model_config") or {}))
        model = drop_training_modules(model, list(card.get("inference_modules") or []))
    except (TypeError, ValueError) as error:
        raise _mismatch(card, f"its model or task settings are not accepted: {error}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(final.state))
    unexpected = sorted(set(final.state) - set(own))
    reshaped = sorted(k for k in set(own) & set(final.state) if tuple(own[k].shape) != tuple(final.state[k].shape))
    if missing or unexpected or reshaped:
        details = [f"{label} {names[:4]}{' …' if len(names) > 4 else ''}" for label, names in
                   (("missing tensors", missing), ("unexpected tensors", unexpected),
                    ("tensors of another shape", [f"{k} {tuple(final.state[k].shape)} vs {tuple(own[k].shape)}"
                                                  for k in reshaped])) if names]
        raise _mismatch(card, "the weights do not fit the model the card describes (" + "; ".join(details) +
                              f"; classes {card['classes']})")
    model.load_state_dict(final.state, strict=True)
    model.eval()
    return model, task
