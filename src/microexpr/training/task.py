"""The seam between the shared training loop and one paper's model: a ``Task``.

A task is registered with its model class (``@register_model("mmnet", task=MMNetTask)`` in ``models/<name>.py``)
and says everything the shared code must not know about a model:

- ``features``: the preprocessing features its input bundle is built from (the pipeline computes exactly these);
- the per-sample arrays of the bundle (``sample_arrays``) and their **roles**:
  ``model_inputs`` (one ``InputSpec`` per ``forward`` keyword: the arrays it is built from and its data config),
  ``targets`` (training targets other than the class label), ``training_only`` (arrays used while training only:
  AU sets, token ids, frame-window lengths). Prediction is handed a ``PredictInputs`` that holds only the arrays
  of ``model_inputs``: the labels, targets and training-only arrays of a test sample are not reachable there;
- per-epoch sampling (``epoch_order``, ``train_batch``: frame jitter, sub-clips, region replacing, augmentation);
- ``loss(outputs, batch, fold)`` → ``LossTerms`` (the total that is optimised and every named term, all logged);
- ``scores(outputs)`` → class probabilities; ``param_groups`` (e.g. a text encoder with its own learning rate);
- optional report extras (attention maps, embeddings, predicted flow) and the figures made from them
  (``make_annotated_report_figures`` may colour them by the test samples' annotations, joined after prediction);
- ``catalog_inputs``: catalog entries the task needs besides features (e.g. a pretrained text encoder loaded by a
  Kedro dataset). The training pipeline wires them as inputs of the bundle and shard nodes; the task receives them
  as ``resources`` and may turn them into model constructor options (``model_options``). Default: none.
- ``inference_modules``: the model's top-level submodules prediction runs, when some are training-only (a text
  branch): the full-data model saves only their tensors and prediction builds the model without the rest
  (``microexpr.inference.card``). Default: the whole model.

The loop (``microexpr.training.loop``) owns what every model shares: seeding, device and precision, the epoch
loop with gradient accumulation, the history and prediction. A task's settings come from the ``task`` block of
``parameters_<model>.yml`` (``settings_class``), checked for unknown keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from microexpr.training.augment import IMAGENET_MEAN, IMAGENET_STD
from microexpr.training.runtime import Runtime

__all__ = [
    "META_ARRAYS",
    "Detections",
    "FoldContext",
    "InputSpec",
    "LossTerms",
    "NoSettings",
    "PredictInputs",
    "Streams",
    "Task",
    "TrainData",
    "check_task_class",
    "settings_from_params",
]

META_ARRAYS: tuple[str, ...] = ("sample_id", "dataset", "subject", "fold_subject", "y", "classes")
INPUT_KINDS = ("image", "clip", "vector", "tokens")


@dataclass(frozen=True)
class InputSpec:
    """Data config of one model input (``forward`` keyword): the bundle arrays it is built from, and how.

    kind: image (B, C, H, W) | clip (B, C, T, H, W) | vector (B, D) | tokens (B, L) integer ids.
    channels: C for images and clips. mean / std: per-channel normalisation in [0, 1] units (None = none).
    geometric: gets the shared flip/rotation/translation. colour: gets colour jitter (RGB inputs only).
    """

    arrays: tuple[str, ...]
    kind: str = "image"
    channels: int | None = 3
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    geometric: bool = True
    colour: bool = True

    def __post_init__(self) -> None:
        if self.kind not in INPUT_KINDS:
            raise ValueError(f"InputSpec.kind must be one of {INPUT_KINDS}, got {self.kind!r}")
        if not self.arrays or not all(isinstance(a, str) for a in self.arrays):
            raise ValueError(f"InputSpec.arrays must name the bundle arrays the input is built from, got {self.arrays!r}")


class LossTerms(NamedTuple):
    """``total``: the scalar that is optimised. ``terms``: every named part (scalars), logged per epoch."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


class Detections(NamedTuple):
    """Binary decisions of an auxiliary detector on test samples (``predicted``, e.g. an AU head's p >= 0.5) and the
    annotation they are scored against (``annotated``), both (n,) 0/1. A ``Task.auxiliary_metrics`` value of this
    type is pooled as counts over the test samples (support, accuracy, F1, balanced accuracy), not as a mean."""

    predicted: np.ndarray
    annotated: np.ndarray


class Streams(NamedTuple):
    """A fold's random streams: ``data`` (numpy: order, frame / sub-clip / partner choice) and ``augment`` (torch CPU)."""

    data: np.random.Generator
    augment: torch.Generator


@dataclass(frozen=True)
class NoSettings:
    """Settings of a task that has none."""


def settings_from_params(settings_class: type, params: Mapping[str, Any] | None, task_name: str) -> Any:
    """Build a task's settings dataclass from its ``task`` parameter block; unknown keys raise, named.

    A settings class may define ``from_params`` itself (nested sections, validation); otherwise its fields are
    filled directly.
    """
    params = dict(params or {})
    builder = getattr(settings_class, "from_params", None)
    if builder is not None:
        return builder(params)
    known = {f.name for f in dataclasses.fields(settings_class)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"{task_name}.task got unknown key(s) {', '.join(map(repr, unknown))}; accepted: "
            f"{', '.join(sorted(known)) or '(none)'}"
        )
    return settings_class(**params)


class PredictInputs(Mapping[str, np.ndarray]):
    """What prediction may read: sample ids and the arrays of the task's declared model inputs, nothing else.

    Asking for any other array (a label, a target, a training-only array) raises a KeyError that names the
    honesty contract, so a task cannot reach a test sample's annotations by accident.
    """

    def __init__(self, sample_id: np.ndarray, arrays: Mapping[str, np.ndarray], task_name: str) -> None:
        self.sample_id = np.asarray(sample_id).astype(str)
        self._arrays = MappingProxyType(dict(arrays))
        self._task = task_name

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._arrays[name]
        except KeyError:
            raise KeyError(
                f"{self._task}: {name!r} is not a declared model input, so prediction cannot read it (honesty "
                f"contract: labels, targets and training-only arrays never reach prediction; readable: "
                f"{sorted(self._arrays)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


@dataclass(frozen=True)
class TrainData:
    """The whole checked bundle (training side): labels, class names and every declared array, N rows each."""

    sample_id: np.ndarray
    y: np.ndarray
    classes: list[str]
    arrays: Mapping[str, np.ndarray]

    @property
    def n(self) -> int:
        return int(self.sample_id.shape[0])


@dataclass
class FoldContext:
    """One fold as the task sees it while training: the data, the training positions and the task's fold state."""

    data: TrainData
    train: np.ndarray
    state: Any = None


class Task:
    """Base class of every model's task (see the module docstring). Subclasses set the class attributes and
    implement ``sample_arrays``, ``example_arrays`` and ``train_batch``; the rest has classification defaults."""

    features: ClassVar[tuple[str, ...]] = ()
    model_inputs: ClassVar[Mapping[str, InputSpec]] = {}
    targets: ClassVar[tuple[str, ...]] = ()
    training_only: ClassVar[tuple[str, ...]] = ()
    padding: ClassVar[Mapping[str, float]] = {}
    settings_class: ClassVar[type] = NoSettings
    report_figures: ClassVar[Mapping[str, str]] = {}  # figure file stem -> title; made by ``make_report_figures``
    demonstration: ClassVar[bool] = False  # a demo model, not a paper: left out of plain ``kedro run``
    catalog_inputs: ClassVar[tuple[str, ...]] = ()  # catalog entries handed to the task as ``resources``
    # Top-level submodules of the model that prediction runs (e.g. the video streams and classifier, not a
    # training-only text branch): the full-data model keeps only their tensors and ``microexpr predict`` builds
    # the model without the others. Empty (default): the whole model.
    inference_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: Any = None, name: str | None = None,
                 resources: Mapping[str, Any] | None = None) -> None:
        self.name = name or type(self).__name__
        self.settings = settings if settings is not None else settings_from_params(self.settings_class, {}, self.name)
        unknown = sorted(set(resources or {}) - set(self.catalog_inputs))
        if unknown:
            raise ValueError(f"{self.name}: resources {unknown} are not among the task's catalog_inputs "
                             f"{list(self.catalog_inputs)}")
        self.resources: Mapping[str, Any] = MappingProxyType(dict(resources or {}))

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None, name: str | None = None,
                    resources: Mapping[str, Any] | None = None) -> Task:
        """The task with settings from the ``<model>.task`` parameter block (unknown keys raise) and the loaded
        catalog entries it names in ``catalog_inputs`` (``resources``; absent ones stay absent, e.g. in unit tests)."""
        return cls(settings_from_params(cls.settings_class, params, name or cls.__name__), name=name,
                   resources=resources)

    def model_options(self) -> dict[str, Any]:
        """Model constructor keywords derived from the task's resources (e.g. a pretrained text encoder), added
        to the ``model`` parameter block when a fold's model is built (default: none)."""
        return {}

    # ---------------------------------------------------------------------------------- run labels
    def run_tags(self) -> dict[str, str]:
        """Settings-derived labels every output of a run states (metrics, MLflow tags, report), e.g.
        ``{"init": "imagenet"}`` or ``{"au_source": "predicted"}``. Default: none."""
        return {}

    def leak(self) -> str | None:
        """A label such as ``"au_leak"`` when these settings feed test-sample annotations to the model (a paper's
        own protocol, reproduced on request); it reaches the run name, the report title and ``metrics["leak"]`` so
        such results are never mistaken for honest ones. Default: None (nothing leaks)."""
        return None

    # ------------------------------------------------------------------------------------------ roles
    @classmethod
    def input_arrays(cls) -> tuple[str, ...]:
        """Bundle arrays prediction may read: those the model inputs are built from."""
        return tuple(dict.fromkeys(a for spec in cls.model_inputs.values() for a in spec.arrays))

    @classmethod
    def declared_arrays(cls) -> tuple[str, ...]:
        """Every per-sample array of the bundle besides the meta arrays, in role order."""
        return tuple(dict.fromkeys([*cls.input_arrays(), *cls.targets, *cls.training_only]))

    # ---------------------------------------------------------------------------------- input bundle
    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The bundle arrays of one sample from its index row and its feature arrays (one entry per feature)."""
        raise NotImplementedError

    def input_sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]
                            ) -> dict[str, np.ndarray]:
        """The model-input arrays (``input_arrays``) of one new sample, for prediction (``microexpr predict``: no
        annotation, no catalog resources). Default: ``sample_arrays`` limited to them; a task whose other arrays
        need a resource (a tokenizer for training-only text) overrides it to compute the inputs alone."""
        arrays = self.sample_arrays(row, features)
        return {name: arrays[name] for name in self.input_arrays() if name in arrays}

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
        """Random declared arrays for ``n`` samples in the bundle's exact dtypes and shapes (contract tests)."""
        raise NotImplementedError

    def bundle_settings(self) -> dict[str, Any]:
        """Settings that change what ``sample_arrays`` produces (they key the bundle's fingerprint)."""
        return {}

    def bundle_warnings(self, bundle: Mapping[str, np.ndarray]) -> list[str]:
        """Problems worth a WARNING once per run, found on the whole bundle (e.g. windows beyond stored frames)."""
        return []

    # -------------------------------------------------------------------------------------------- fold
    def prepare_fold(self, data: TrainData, train: np.ndarray) -> Any:
        """Fold state computed from the training side only (class weights, frame windows, partner pools)."""
        return None

    def epoch_order(self, train_size: int, rng: np.random.Generator) -> np.ndarray:
        """Positions into the fold's training samples for one epoch (default: a shuffle of all of them)."""
        return rng.permutation(train_size)

    def train_batch(
        self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams, runtime: Runtime
    ) -> dict[str, torch.Tensor]:
        """Tensors of the training samples ``fold.train[batch_pos]`` on the device: model inputs (sampled and
        augmented), targets and training-only arrays. The loop adds the labels as ``y``."""
        raise NotImplementedError

    def predict_batches(
        self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime, batch_size: int
    ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Test batches: (positions into ``rows`` each item belongs to, model-input tensors). Several items may
        belong to one sample (sub-clips): the loop averages their scores per sample."""
        for start in range(0, rows.size, batch_size):
            owners = np.arange(start, min(start + batch_size, rows.size))
            yield owners, self.predict_inputs(inputs, rows[owners], runtime)

    def predict_inputs(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        """Model-input tensors of test samples ``rows`` (no augmentation, no jitter)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ model and loss
    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor], training: bool) -> Any:
        """Run the model on a batch: its declared inputs as keyword arguments (training-only inputs in training)."""
        return model(**{name: batch[name] for name in self.model_inputs})

    def loss(self, outputs: Any, batch: Mapping[str, torch.Tensor], fold: FoldContext) -> LossTerms:
        """Default: plain cross-entropy of the logits against ``batch["y"]``."""
        ce = F.cross_entropy(self.logits(outputs).float(), batch["y"])
        return LossTerms(ce, {"ce": ce})

    def logits(self, outputs: Any) -> torch.Tensor:
        """The class logits within the model's outputs (default: the outputs are the logits)."""
        return outputs

    def scores(self, outputs: Any) -> torch.Tensor:
        """Class probabilities (B, C) float32 from the model's outputs."""
        return torch.softmax(self.logits(outputs).float(), dim=1)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Optimiser parameter groups: ``params``, ``name`` (history column ``lr_<name>``), optionally
        ``lr_scale`` (× optimizer.lr) or ``weight_decay``."""
        return [{"name": "all", "params": [p for p in model.parameters() if p.requires_grad]}]

    def auxiliary_metrics(
        self, model: nn.Module, inputs: PredictInputs, targets: Mapping[str, np.ndarray], rows: np.ndarray,
        runtime: Runtime, batch_size: int,
    ) -> dict[str, np.ndarray | Detections]:
        """Per-sample scores of the model's auxiliary outputs on test samples ``rows`` after the last epoch (e.g. flow
        end-point error, landmark NME): name -> (len(rows),) float. Outputs must come from ``inputs`` only;
        ``targets`` (the task's ``targets`` arrays, all samples) only score them, so the class predictions never
        see them. They reach the prediction table as ``aux_<name>`` and the metrics as ``auxiliary`` (means).
        A value may instead be ``Detections`` (an auxiliary detector's 0/1 decisions and the 0/1 annotations, e.g.
        one per AU): columns ``auxpred_<name>`` / ``auxtrue_<name>``, metrics ``auxiliary_detections`` (pooled
        counts: support, accuracy, F1, balanced accuracy) [none]."""
        return {}

    # ----------------------------------------------------------------------------------------- report
    def report_extras(
        self, model: nn.Module, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime
    ) -> dict[str, np.ndarray]:
        """Per-fold arrays for the task's report figures, from test inputs only (one row per sample in ``rows``)."""
        return {}

    @classmethod
    def make_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str]) -> dict[str, Any]:
        """Figures (``report_figures`` stems → matplotlib Figure) from the extras pooled over folds (with ``fold``)."""
        return {}

    @classmethod
    def make_annotated_report_figures(
        cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str], annotations: pd.DataFrame
    ) -> dict[str, Any]:
        """Figures that may also read the shown test samples' annotations (evaluation only, after prediction).

        ``annotations``: one row per extras row, in the same order: ``sample_id``, ``fold``, ``y_true`` (class id),
        ``label_true``, ``label``, ``aus`` (the sample index's annotated AU items) and ``au_codes`` (their AU
        numbers). The report extras were computed from test inputs before these were joined, so no prediction can
        depend on them.
        Default: ``make_report_figures(extras, title)`` (a task that needs no annotations overrides nothing)."""
        return cls.make_report_figures(extras, title)


def check_task_class(task: type[Task], model_name: str, forward_parameters: Sequence[str]) -> None:
    """Registration-time checks of a task's declarations (roles disjoint, inputs accepted by ``forward``)."""
    if not (isinstance(task, type) and issubclass(task, Task)):
        raise TypeError(f"model {model_name!r}: task must be a Task subclass, got {task!r}")
    if not task.model_inputs:
        raise TypeError(f"model {model_name!r}: task {task.__name__} declares no model_inputs")
    missing = sorted(set(task.model_inputs) - set(forward_parameters))
    if missing:
        raise TypeError(
            f"model {model_name!r}: task {task.__name__} feeds {missing} but forward() takes {list(forward_parameters)}"
        )
    inputs = set(task.input_arrays())
    for role, names in (("targets", task.targets), ("training_only", task.training_only)):
        leaked = sorted(inputs & set(names))
        if leaked:
            raise TypeError(
                f"model {model_name!r}: {leaked} are declared both as model-input arrays and as {role}; an array a "
                "test sample's prediction reads cannot be a target or training-only"
            )
    reserved = sorted(set(task.declared_arrays()) & set(META_ARRAYS))
    if reserved:
        raise TypeError(f"model {model_name!r}: task {task.__name__} declares reserved array names {reserved}")
    overlap = sorted(set(task.targets) & set(task.training_only))
    if overlap:
        raise TypeError(f"model {model_name!r}: {overlap} are declared as both targets and training_only")
    names = task.catalog_inputs
    if not isinstance(names, tuple) or not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"model {model_name!r}: catalog_inputs must be a tuple of catalog entry names, got {names!r}")
    clash = sorted(set(names) & {*task.features, "sample_index", "label_maps", "folds", "model_input"})
    if clash:
        raise TypeError(f"model {model_name!r}: catalog_inputs {clash} clash with features or pipeline datasets")
    if not isinstance(task.report_figures, Mapping):
        raise TypeError(f"model {model_name!r}: report_figures must map figure file stems to titles")
    kept = task.inference_modules
    if not isinstance(kept, tuple) or not all(isinstance(n, str) and n and "." not in n for n in kept):
        raise TypeError(f"model {model_name!r}: inference_modules must be a tuple of top-level submodule names, "
                        f"got {kept!r}")
