"""Model registry: one file per paper in this package registers its classes by name.

    @register_model("mmnet")
    class MMNet(nn.Module):
        consumes = ("onset", "apex")          # input tensors forward() takes as keyword arguments
        def __init__(self, num_classes: int, *, variant: str = "mmnet", ...): ...

    build_model("mmnet", num_classes=5, variant="ca_only")  -> nn.Module
    available_models()                                       -> ("mmnet", ...)

Every module directly inside ``microexpr.models`` (not ``layers``) is imported on the first lookup, so a new paper's
file registers itself without editing this one. Configuration keys are checked against the constructor's
signature, so a typo in ``parameters_<pipeline>.yml`` fails with the key named instead of being ignored.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import TypeVar

from torch import nn

__all__ = ["available_models", "build_model", "model_class", "register_model"]

ModelClass = TypeVar("ModelClass", bound=type[nn.Module])

_REGISTRY: dict[str, type[nn.Module]] = {}
_NON_MODEL_MODULES = frozenset({"layers"})
_discovered = False


def register_model(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: register ``cls`` under ``name``; the class must declare ``consumes``."""

    def decorator(cls: ModelClass) -> ModelClass:
        consumes = getattr(cls, "consumes", None)
        if not (isinstance(consumes, tuple) and consumes and all(isinstance(c, str) for c in consumes)):
            raise TypeError(
                f"model {name!r} ({cls.__module__}.{cls.__qualname__}) must declare "
                f"`consumes: tuple[str, ...]` naming its input tensors, got {consumes!r}"
            )
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"model name {name!r} is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        _REGISTRY[name] = cls
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


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; KeyError listing the registered names if unknown."""
    _discover_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available models: {', '.join(available_models())}") from None


def _config_keys(cls: type[nn.Module]) -> tuple[set[str], bool]:
    """Keyword names ``cls.__init__`` accepts besides ``num_classes``, and whether it takes ``**kwargs``."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in parameters if p.kind in keyword_kinds and p.name != "num_classes"}
    return names, takes_var_kwargs


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
