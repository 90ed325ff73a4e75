"""Model registry: the one model list. One file per paper in this package registers its model with its task.

    @register_model("mmnet", task=MMNetTask)
    class MMNet(nn.Module):
        def __init__(self, num_classes: int, *, variant: str = "mmnet", ...): ...
        def forward(self, onset, apex): ...     # keyword inputs = the task's model_inputs

    build_model("mmnet", num_classes=5, variant="ca_only")  -> nn.Module
    task_class("mmnet")                                      -> MMNetTask (inputs, features, loss, sampling, ...)
    available_models()                                       -> ("mmnet", ...)

Pipelines, input bundles, the features to compute, the MLflow hook and the report all derive from this registry
(microexpr.training.task explains the task). Every module directly inside ``microexpr.models`` (not ``layers``)
is imported on the first lookup, so a new paper's file registers itself without editing this one. Configuration
keys are checked against the constructor's signature, so a typo in ``parameters_<pipeline>.yml`` fails with the
key named instead of being ignored.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from microexpr.training.task import Task, check_task_class

__all__ = [
    "available_models",
    "build_model",
    "build_task",
    "constructor_keys",
    "example_config",
    "model_class",
    "register_model",
    "task_class",
]

ModelClass = TypeVar("ModelClass", bound=type[nn.Module])

_REGISTRY: dict[str, tuple[type[nn.Module], type[Task]]] = {}
_NON_MODEL_MODULES = frozenset({"layers"})
_discovered = False


def register_model(name: str, *, task: type[Task]) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: register ``cls`` under ``name`` with the task that trains it (checked here)."""

    def decorator(cls: ModelClass) -> ModelClass:
        forward_parameters = list(inspect.signature(cls.forward).parameters)[1:]
        check_task_class(task, name, forward_parameters)
        existing = _REGISTRY.get(name)
        if existing is not None and existing != (cls, task):
            raise ValueError(
                f"model name {name!r} is already registered by {existing[0].__module__}.{existing[0].__qualname__}"
            )
        _REGISTRY[name] = (cls, task)
        return cls

    return decorator


def _discover_models() -> None:
    """Import every model module of this package once, so their ``@register_model`` decorators run."""
    global _discovered
    if _discovered:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _NON_MODEL_MODULES:
            continue
        module_name = f"{__name__}.{info.name}"
        try:
            importlib.import_module(module_name)
        except Exception as error:
            raise ImportError(f"importing model module {module_name} failed: {error}") from error
    _discovered = True


def available_models() -> tuple[str, ...]:
    """Registered model names, sorted."""
    _discover_models()
    return tuple(sorted(_REGISTRY))


def _entry(name: str) -> tuple[type[nn.Module], type[Task]]:
    _discover_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available models: {', '.join(available_models())}") from None


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; KeyError listing the registered names if unknown."""
    return _entry(name)[0]


def task_class(name: str) -> type[Task]:
    """The task class registered with model ``name``."""
    return _entry(name)[1]


def build_task(name: str, params: dict | None = None, resources: dict[str, Any] | None = None) -> Task:
    """The task of model ``name`` with settings from its ``task`` parameter block and the loaded catalog entries
    its ``catalog_inputs`` name (``resources``)."""
    return task_class(name).from_params(params, name=name, resources=resources)


def _config_keys(cls: type[nn.Module]) -> tuple[set[str], bool]:
    """Keyword names ``cls.__init__`` accepts besides ``num_classes``, and whether it takes ``**kwargs``."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in parameters if p.kind in keyword_kinds and p.name != "num_classes"}
    return names, takes_var_kwargs


def example_config(name: str, size: int) -> dict[str, Any]:
    """Constructor options that make model ``name`` accept its task's example arrays at ``size``: the model class's
    ``example_config(size)`` classmethod when it has one (e.g. MMNet's image_size), else none."""
    builder = getattr(model_class(name), "example_config", None)
    return dict(builder(size)) if builder is not None else {}


def constructor_keys(cls: type[nn.Module]) -> set[str]:
    """The configuration keys a model class accepts (its constructor's keywords besides ``num_classes``)."""
    return _config_keys(cls)[0]


def build_model(name: str, num_classes: int, **cfg: object) -> nn.Module:
    """Instantiate the model registered as ``name`` with ``num_classes`` outputs and constructor options ``cfg``.

    Raises KeyError for an unknown model, TypeError for a configuration key the model does not accept (naming
    the key and the accepted ones), ValueError for a non-positive ``num_classes``.
    """
    cls = model_class(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"model {name!r}: num_classes must be a positive int, got {num_classes!r}")
    accepted, takes_var_kwargs = _config_keys(cls)
    unknown = sorted(set(cfg) - accepted)
    if unknown and not takes_var_kwargs:
        raise TypeError(
            f"model {name!r} got unknown config key(s) {', '.join(map(repr, unknown))}; "
            f"accepted keys: {', '.join(sorted(accepted))}"
        )
    return cls(num_classes=num_classes, **cfg)
