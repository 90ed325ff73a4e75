"""Fit and predict one fold: a fresh model under a fixed seed, a fixed schedule, per-epoch test probabilities.

``train_fold`` is what every model shares: seeding, device and precision, the epoch loop with gradient
accumulation, the history (every named loss term, learning rates, throughput) and prediction. Everything that is
one model's business (inputs, sampling, augmentation, loss, scores, parameter groups, report extras) comes from
its task (microexpr.training.task). ``train_fold`` is pure with respect to its inputs: the model's input bundle
(numpy arrays) in, a ``FoldOutcome`` out; it never reads files, globals or MLflow (the Kedro node around it does
the I/O; the tracking hook logs ``FoldOutcome.history``).

Honesty: prediction (every epoch's test pass and the report extras) is handed a ``PredictInputs`` view holding
only the arrays of the task's declared model inputs; labels, targets and training-only arrays of the test
samples are never passed to it.

Randomness (kedro.md G10: folds may run in threads): the model is initialised under a module lock with the global
CPU generator forked and seeded, so concurrent folds cannot interleave; the epoch order and the task's sampling
come from a numpy Generator and augmentation from a CPU ``torch.Generator``, both derived from ``seed``. Models
with stochastic layers (dropout, drop-path) draw from the device's global generator inside ``forward``; for those,
each training forward runs under the same lock with that generator forked and seeded from the fold's own stream,
so the result does not depend on other threads either (the lock serialises only those forwards).
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from microexpr.models import build_model, build_task
from microexpr.training.inputs import check_bundle
from microexpr.training.runtime import Runtime, place_model, resolve_runtime
from microexpr.training.task import Detections, FoldContext, PredictInputs, Streams, Task, TrainData

logger = logging.getLogger(__name__)

__all__ = [
    "HISTORY_COLUMNS",
    "FoldOutcome",
    "OptimizerConfig",
    "Runtime",
    "SchedulerConfig",
    "TrainConfig",
    "build_optimizer",
    "build_scheduler",
    "predict_inputs",
    "predict_proba",
    "resolve_runtime",
    "train_fold",
]

# Columns every history has; a task adds ``train_loss_<term>`` per loss term and ``lr_<group>`` per extra group.
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "lr", "seconds", "samples_per_s", "test_acc")
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
SCHEDULERS = ("exponential", "cosine", "cosine_restarts", "none")
ProgressCallback = Callable[[int, int, float, float, float], None]

_RNG_LOCK = threading.Lock()  # guards every use of torch's global generators (init, stochastic forwards)


def _unknown_keys(section: str, params: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"{section} got unknown key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(sorted(known))}"
        )


@dataclass(frozen=True)
class OptimizerConfig:
    """``optimizer``: name (AdamW | Adam | SGD, case-insensitive), lr, weight_decay, and any other keyword the
    torch optimiser accepts (betas, eps, momentum, nesterov, ...) in ``options``. A task's parameter group may set
    its own lr / weight_decay (e.g. a pretrained text encoder)."""

    name: str = "AdamW"
    lr: float = 8e-4
    weight_decay: float = 0.6
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> OptimizerConfig:
        params = dict(params or {})
        name = str(params.pop("name", cls.name))
        if name.lower() not in OPTIMIZERS:
            raise ValueError(f"optimizer.name={name!r} is not one of AdamW, Adam, SGD")
        optimizer_cls = OPTIMIZERS[name.lower()]
        accepted = [
            p for p in inspect.signature(optimizer_cls.__init__).parameters if p not in ("self", "params")
        ]
        _unknown_keys(f"optimizer ({optimizer_cls.__name__})", params, accepted)
        lr = float(params.pop("lr", cls.lr))
        weight_decay = float(params.pop("weight_decay", cls.weight_decay))
        if lr <= 0 or weight_decay < 0:
            raise ValueError(f"optimizer: lr must be > 0 and weight_decay >= 0, got {lr!r}, {weight_decay!r}")
        return cls(name=optimizer_cls.__name__, lr=lr, weight_decay=weight_decay, options=params)


@dataclass(frozen=True)
class SchedulerConfig:
    """``scheduler``: exponential (``gamma``), cosine (to ``min_lr``), cosine_restarts (SGDR: cosine to ``min_lr``
    restarted after ``t_0`` epochs, each cycle ``t_mult`` times longer; torch's CosineAnnealingWarmRestarts) or none;
    stepped after each of the first ``decay_epochs`` epochs only (None = every epoch; a reference code may decay for
    only part of its schedule).

    ``warmup_epochs``: a linear learning-rate warm-up from lr/(warmup_epochs + 1) to lr over that many epochs
    before the schedule starts (0 = none). No paper uses one: it is a demonstration setting (``--env quick``)
    and the report lists it when it is on.
    """

    name: str = "exponential"
    gamma: float = 0.987
    decay_epochs: int | None = None
    min_lr: float = 0.0
    warmup_epochs: int = 0
    t_0: int = 10
    t_mult: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> SchedulerConfig:
        params = dict(params or {})
        _unknown_keys("scheduler", params, [f.name for f in fields(cls)])
        config = cls(**params)
        if config.name not in SCHEDULERS:
            raise ValueError(f"scheduler.name={config.name!r} is not one of {', '.join(SCHEDULERS)}")
        if not 0 < config.gamma <= 1:
            raise ValueError(f"scheduler.gamma must be in (0, 1], got {config.gamma!r}")
        if config.t_0 < 1 or config.t_mult < 1:
            raise ValueError(f"scheduler.t_0 and t_mult must be >= 1, got {config.t_0!r}, {config.t_mult!r}")
        for name in ("decay_epochs", "warmup_epochs"):
            value = getattr(config, name)
            if value is None and name == "decay_epochs":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"scheduler.{name} must be a non-negative integer, got {value!r}")
        return config


@dataclass(frozen=True)
class TrainConfig:
    """What the shared loop needs (``training`` block of ``parameters_<model>.yml``); the model's own policies
    (augmentation, frame jitter, loss weights) are its task's settings (``task`` block).

    - epochs, batch_size, eval_batch_size (null = batch_size).
    - accumulate_steps: optimiser step every k batches, the loss scaled by 1/k (batch 16 × 2 = an effective 32).
    - precision: auto | fp32 | bf16; channels_last: auto | true | false; device: auto | cpu | cuda | cuda:<k>
      (microexpr.training.runtime).
    - evaluate_each_epoch: predict the test samples after every epoch (needed for the ``oracle_epoch``
      selection; costs one test forward per epoch); else only after the last.
    - report_samples: first test samples per fold whose report extras the task keeps (attention maps, ...).
    - compile: train through ``torch.compile(model)`` (prediction and report extras stay eager). The first
      training step of a process compiles (a 9 M-parameter CNN on a 2-core CPU: ≈ 100 s; a later fold's fresh model
      reuses the compiled code), then steps are faster (docs/performance.md measures it). Worth it for full schedules, not for
      minute-long demos. If compiling fails (no C++ compiler, unsupported platform) the fold trains eagerly, with a
      WARNING.
    - num_threads: torch intra-op threads (process-wide), null = leave as is.
    - return_model_state: put the final weights (CPU state dict) into the outcome.
    - validation_subjects: size of the inner subject split that the optional ``validated_epoch`` selection trains
      on each training fold to choose its epoch (a fraction of the training subjects if < 1, else a count); unused
      unless a model's ``selections`` name ``validated_epoch`` (microexpr.training.selection).
    """

    epochs: int = 70
    batch_size: int = 32
    eval_batch_size: int | None = None
    accumulate_steps: int = 1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    precision: str = "auto"
    channels_last: str | bool = "auto"
    device: str = "auto"
    evaluate_each_epoch: bool = True
    report_samples: int = 4
    compile: bool = False
    num_threads: int | None = None
    return_model_state: bool = False
    validation_subjects: float = 0.2

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
        """Build from a parameters mapping (nested mappings for the sub-sections); unknown keys raise, named."""
        if isinstance(params, TrainConfig):
            return params
        params = dict(params or {})
        _unknown_keys("training", params, [f.name for f in fields(cls)])
        params["optimizer"] = OptimizerConfig.from_params(params.get("optimizer"))
        params["scheduler"] = SchedulerConfig.from_params(params.get("scheduler"))
        config = cls(**params)
        config._check()
        return config

    def _check(self) -> None:
        for name in ("epochs", "batch_size", "accumulate_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"training.{name} must be a positive integer, got {value!r}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ValueError(
                f"training.eval_batch_size must be positive or null, got {self.eval_batch_size!r}"
            )
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"training.precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.channels_last not in ("auto", True, False):
            raise ValueError(
                f"training.channels_last must be auto, true or false, got {self.channels_last!r}"
            )
        if self.report_samples < 0:
            raise ValueError(f"training.report_samples must be >= 0, got {self.report_samples!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"training.compile must be true or false, got {self.compile!r}")
        size = self.validation_subjects
        if isinstance(size, bool) or not isinstance(size, int | float) or size <= 0 or (size >= 1 and size % 1):
            raise ValueError(f"training.validation_subjects must be a fraction in (0, 1) or a whole count >= 1, "
                             f"got {size!r}")


def build_optimizer(groups: list[dict[str, Any]], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the task's parameter groups (weight decay on all unless a group says so).

    A group may carry ``lr_scale``: its learning rate is ``optimizer.lr`` times that factor (e.g. a pretrained text
    encoder trained slower than the rest), and it follows the same schedule.
    """
    optimizer_cls = OPTIMIZERS[cfg.name.lower()]
    resolved = []
    for group in groups:
        group = dict(group)
        scale = group.pop("lr_scale", None)
        if scale is not None:
            if not float(scale) > 0:
                raise ValueError(f"parameter group {group.get('name', '?')!r}: lr_scale must be > 0, got {scale!r}")
            group["lr"] = cfg.lr * float(scale)
        resolved.append(group)
    return optimizer_cls(resolved, lr=cfg.lr, weight_decay=cfg.weight_decay, **cfg.options)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch LR schedule (stepped by the loop after each warm-up epoch and each of the first ``decay_epochs``)."""
    if cfg.name == "none":
        main = None
    elif cfg.name == "exponential":
        main = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
    elif cfg.name == "cosine_restarts":
        main = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=cfg.t_0, T_mult=cfg.t_mult,
                                                                    eta_min=cfg.min_lr)
    else:
        horizon = cfg.decay_epochs if cfg.decay_epochs is not None else epochs - cfg.warmup_epochs
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(horizon, 1), eta_min=cfg.min_lr)
    if cfg.warmup_epochs == 0:
        return main
    warmup = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=1.0 / (cfg.warmup_epochs + 1), end_factor=1.0, total_iters=cfg.warmup_epochs
    )
    if main is None:
        return warmup
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, main], milestones=[cfg.warmup_epochs])


@dataclass
class FoldOutcome:
    """What one fold's training produced (all numpy / pandas; the model itself only if asked for).

    history: one row per epoch (``HISTORY_COLUMNS`` plus ``train_loss_<term>`` for each of the task's loss terms
    and ``lr_<group>`` for each further parameter group; ``seconds`` is the whole epoch including the test pass,
    ``samples_per_s`` the training part only, ``test_acc`` NaN where the test set was not evaluated).
    epoch_probs: (E, n_test, C) float32 class probabilities after each epoch in ``evaluated_epochs`` (all epochs
    with ``evaluate_each_epoch``, else only the last). extras: the task's report extras of the first
    ``report_samples`` test samples (``sample_ids`` plus task-defined arrays, one row per sample).
    """

    history: pd.DataFrame
    test_sample_ids: np.ndarray
    epoch_probs: np.ndarray
    evaluated_epochs: np.ndarray
    classes: list[str]
    extras: dict[str, np.ndarray]
    seed: int
    device: str
    precision: str
    channels_last: bool
    wall_seconds: float
    model_state: dict[str, torch.Tensor] | None = None
    auxiliary: dict[str, np.ndarray] = field(default_factory=dict)
    detections: dict[str, Detections] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return int(len(self.history))

    @property
    def evaluated_each_epoch(self) -> bool:
        return np.array_equal(self.evaluated_epochs, np.arange(1, self.epochs + 1))


def _check_indices(
    train_idx: Sequence[int], test_idx: Sequence[int], sample_id: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = sample_id.shape[0]
    checked = []
    for name, idx in (("train_idx", train_idx), ("test_idx", test_idx)):
        array = np.asarray(idx, dtype=np.int64).reshape(-1)
        if array.size and (array.min() < 0 or array.max() >= n):
            raise IndexError(f"{name} holds positions outside [0, {n})")
        values, counts = np.unique(array, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{name} repeats samples: {sample_id[values[counts > 1]][:5].tolist()}")
        checked.append(array)
    train, test = checked
    if train.size == 0:
        raise ValueError("train_idx is empty: a fold needs training samples")
    overlap = np.intersect1d(train, test)
    if overlap.size:
        raise ValueError(
            f"samples are in both the training and the test side: {sample_id[overlap[:5]].tolist()}"
        )
    return train, test


def _train_data(task: Task, bundle: Mapping[str, np.ndarray]) -> TrainData:
    """The checked bundle as the training side sees it (labels checked against the class list)."""
    check_bundle(task, bundle)
    sample_id = np.asarray(bundle["sample_id"]).astype(str)
    classes = [str(c) for c in np.asarray(bundle["classes"]).tolist()]
    y = np.asarray(bundle["y"])
    if y.shape != sample_id.shape or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be (N,) = ({sample_id.size},) integer label ids, got {y.dtype} {y.shape}")
    bad = np.flatnonzero((y < 0) | (y >= len(classes)))
    if bad.size:
        raise ValueError(f"label ids outside [0, {len(classes)}) for classes {classes}: samples {sample_id[bad[:5]].tolist()}")
    arrays = {name: np.asarray(bundle[name]) for name in task.declared_arrays()}
    return TrainData(sample_id, y.astype(np.int64), classes, arrays)


def predict_inputs(task: Task, data: TrainData) -> PredictInputs:
    """The prediction view of the bundle: sample ids and the task's model-input arrays only."""
    return PredictInputs(data.sample_id, {name: data.arrays[name] for name in task.input_arrays()}, task.name)


def _build_seeded_model(
    model_name: str, num_classes: int, model_cfg: Mapping[str, Any], seed: int
) -> nn.Module:
    """Build the model with the global CPU generator forked and seeded, under the lock (thread-safe init)."""
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return build_model(model_name, num_classes=num_classes, **dict(model_cfg or {}))


def _has_stochastic_layers(model: nn.Module) -> bool:
    """Dropout with p > 0 or a timm-style drop-path / drop-block (``drop_prob`` > 0) anywhere in the model."""
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            return True
        drop_prob = getattr(module, "drop_prob", None)
        if isinstance(drop_prob, float) and drop_prob > 0:
            return True
    return False


@contextmanager
def _seeded_forward(device: torch.device, seed: int, enabled: bool) -> Iterator[None]:
    """Fork and seed the global generator of ``device`` for one forward pass (stochastic layers), under the lock."""
    if not enabled:
        yield
        return
    cuda_devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with _RNG_LOCK, torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        for index in cuda_devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches of ``order``; a last batch of one sample joins the previous one (BatchNorm needs
    two samples in training, and no sample is left out of an epoch)."""
    batches = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
    if len(batches) > 1 and batches[-1].size == 1:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def predict_proba(
    model: nn.Module,
    task: Task,
    inputs: PredictInputs,
    rows: np.ndarray,
    runtime: Runtime,
    batch_size: int,
    n_classes: int,
) -> np.ndarray:
    """Class probabilities (len(rows), C) float32 of the test samples ``rows``: eval mode, no augmentation, the
    task's test batches; several items of one sample (sub-clips) are averaged."""
    rows = np.asarray(rows, dtype=np.int64)
    probs = np.zeros((rows.size, n_classes), dtype=np.float32)
    if rows.size == 0:
        return probs
    counts = np.zeros(rows.size, dtype=np.int64)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for owners, batch in task.predict_batches(inputs, rows, runtime, batch_size):
            with runtime.autocast():
                outputs = task.forward(model, batch, training=False)
            scores = task.scores(outputs).float().cpu().numpy()
            if np.unique(owners).size == owners.size and not counts[owners].any():
                probs[owners] = scores
            else:
                np.add.at(probs, owners, scores)
            np.add.at(counts, owners, 1)  # an owner may repeat within a batch (several sub-clips)
    model.train(was_training)
    if (counts == 0).any():
        raise ValueError(f"{task.name}: predict_batches gave no item for samples {inputs.sample_id[rows[counts == 0]][:5]}")
    several = counts > 1
    probs[several] /= counts[several, None]
    return probs


def _auxiliary_metrics(model: nn.Module, task: Task, view: PredictInputs, data: TrainData, test: np.ndarray,
                       runtime: Runtime, batch_size: int) -> tuple[dict[str, np.ndarray], dict[str, Detections]]:
    """The task's per-sample auxiliary scores and detector decisions (``Detections``) of the test samples after the
    last epoch, checked one per sample (decisions: 0/1)."""
    if not test.size:
        return {}, {}
    model.eval()
    with torch.inference_mode():
        scores = task.auxiliary_metrics(model, view, {n: data.arrays[n] for n in task.targets}, test, runtime,
                                        batch_size)
    checked: dict[str, np.ndarray] = {}
    detections: dict[str, Detections] = {}
    for name, values in scores.items():
        if isinstance(values, Detections):
            pair = [np.asarray(v).reshape(-1) for v in values]
            if any(v.size != test.size or not np.isin(v, (0, 1)).all() for v in pair):
                raise ValueError(f"{task.name}.auxiliary_metrics: detections {name!r} must hold one 0/1 decision and "
                                 f"one 0/1 annotation per test sample ({test.size})")
            detections[str(name)] = Detections(*(v.astype(np.int8) for v in pair))
            continue
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.size != test.size:
            raise ValueError(f"{task.name}.auxiliary_metrics gave {values.size} values of {name!r} for {test.size} samples")
        checked[str(name)] = values
    return checked, detections


def _seed_streams(seed: int) -> tuple[Streams, np.random.Generator]:
    """Independent streams for the data (order, sampling), augmentation (torch CPU) and dropout seeds."""
    data_seq, augment_seq, dropout_seq = np.random.SeedSequence(seed).spawn(3)
    torch_seed = int(augment_seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
    streams = Streams(np.random.default_rng(data_seq), torch.Generator().manual_seed(torch_seed))
    return streams, np.random.default_rng(dropout_seq)


@dataclass
class _EpochStats:
    """Running sums of one epoch: per-sample weighted loss terms and correct predictions."""

    samples: int = 0
    correct: int = 0
    total: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)

    def add(self, total: torch.Tensor, terms: Mapping[str, torch.Tensor], n: int, correct: int) -> None:
        self.samples += n
        self.correct += correct
        self.total += float(total.detach()) * n
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + float(value.detach()) * n

    def row(self) -> dict[str, float]:
        out = {"train_loss": self.total / self.samples, "train_acc": self.correct / self.samples}
        out.update({f"train_loss_{name}": value / self.samples for name, value in self.terms.items()})
        return out


@dataclass
class _Fold:
    """Everything one fold's epochs share: model, task, data, optimiser, random streams. ``trained`` is what the
    training forward calls: the model, or ``torch.compile(model)`` until compiling it fails."""

    model: nn.Module
    trained: nn.Module
    task: Task
    context: FoldContext
    optimizer: torch.optim.Optimizer
    runtime: Runtime
    cfg: TrainConfig
    streams: Streams
    dropout_rng: np.random.Generator
    stochastic: bool

    def train_epoch(self) -> dict[str, float]:
        """One pass over the task's epoch order; mean loss terms and accuracy (on the augmented inputs)."""
        self.model.train()
        context, runtime, steps = self.context, self.runtime, self.cfg.accumulate_steps
        stats = _EpochStats()
        batches = _batches(self.task.epoch_order(context.train.size, self.streams.data), self.cfg.batch_size)
        self.optimizer.zero_grad(set_to_none=True)
        for number, batch_pos in enumerate(batches, start=1):
            batch = self.task.train_batch(context, batch_pos, self.streams, runtime)
            rows = context.train[batch_pos]
            batch["y"] = torch.from_numpy(context.data.y[rows]).to(runtime.device)
            step_seed = int(self.dropout_rng.integers(2**62))
            outputs = self._forward(batch, step_seed)
            losses = self.task.loss(outputs, batch, context)
            (losses.total if steps == 1 else losses.total / steps).backward()
            if number % steps == 0 or number == len(batches):
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                predicted = self.task.scores(outputs).argmax(1)
            stats.add(losses.total, losses.terms, int(batch_pos.size), int((predicted == batch["y"]).sum()))
        return stats.row()


    def _forward(self, batch: dict[str, torch.Tensor], step_seed: int) -> Any:
        """The training forward (seeded for stochastic layers); a failed compile falls back to the eager model."""
        try:
            with _seeded_forward(self.runtime.device, step_seed, self.stochastic), self.runtime.autocast():
                return self.task.forward(self.trained, batch, training=True)
        except Exception as error:  # noqa: BLE001 - any compiler failure; eager mode re-raises real errors below
            if self.trained is self.model:
                raise
            logger.warning("torch.compile failed (%s: %s); training this fold without it",
                           type(error).__name__, str(error).splitlines()[0][:200])
            self.trained = self.model
            with _seeded_forward(self.runtime.device, step_seed, self.stochastic), self.runtime.autocast():
                return self.task.forward(self.model, batch, training=True)


def _learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """``lr`` of the first parameter group and ``lr_<name>`` of every other (named by the task)."""
    rates = {"lr": float(optimizer.param_groups[0]["lr"])}
    for position, group in enumerate(optimizer.param_groups[1:], start=1):
        rates[f"lr_{group.get('name', position)}"] = float(group["lr"])
    return rates


def train_fold(
    model_name: str,
    model_cfg: Mapping[str, Any] | None,
    inputs: Mapping[str, np.ndarray],
    train_idx: Sequence[int],
    test_idx: Sequence[int],
    cfg: TrainConfig | Mapping[str, Any],
    seed: int,
    progress: ProgressCallback | None = None,
    task_cfg: Mapping[str, Any] | Task | None = None,
) -> FoldOutcome:
    """Train a fresh ``model_name`` on ``train_idx`` for ``cfg.epochs`` and predict ``test_idx`` (module doc).

    ``inputs`` is the model's bundle (microexpr.training.inputs); ``task_cfg`` its task settings (the ``task``
    parameter block) or a built task. ``train_idx``/``test_idx`` are positions into the bundle; the test side may
    be empty (then every prediction array is empty), a class may be absent from the training side.
    ``progress(epoch, epochs, loss, acc, samples_per_s)`` is called after each epoch. Same ``seed``, inputs and
    settings → identical probabilities on CPU (on CUDA up to non-deterministic kernels).
    """
    started = time.perf_counter()
    cfg = TrainConfig.from_params(cfg)
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    task = task_cfg if isinstance(task_cfg, Task) else build_task(model_name, dict(task_cfg or {}))
    data = _train_data(task, inputs)
    train, test = _check_indices(train_idx, test_idx, data.sample_id)
    options = task.model_options()
    clash = sorted(set(options) & set(model_cfg or {}))
    if clash:
        raise ValueError(f"{task.name}: model option(s) {clash} come from the task's catalog inputs; remove them "
                         "from the model parameter block")
    model = _build_seeded_model(model_name, len(data.classes), {**dict(model_cfg or {}), **options}, seed)
    runtime = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last, model)
    model = place_model(model, runtime)
    optimizer = build_optimizer(task.param_groups(model), cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.epochs)
    decay = cfg.epochs if cfg.scheduler.decay_epochs is None else cfg.scheduler.decay_epochs
    scheduled_epochs = cfg.scheduler.warmup_epochs + decay
    streams, dropout_rng = _seed_streams(seed)
    context = FoldContext(data, train, task.prepare_fold(data, train))
    trained = torch.compile(model) if cfg.compile else model
    fold = _Fold(model, trained, task, context, optimizer, runtime, cfg, streams, dropout_rng,
                 _has_stochastic_layers(model))
    view = predict_inputs(task, data)
    eval_batch = cfg.eval_batch_size or cfg.batch_size

    rows, epoch_probs, evaluated = [], [], []
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        rates = _learning_rates(optimizer)
        stats = fold.train_epoch()
        samples_per_s = train.size / (time.perf_counter() - epoch_start)
        if scheduler is not None and epoch <= scheduled_epochs:
            scheduler.step()
        test_acc = math.nan
        if cfg.evaluate_each_epoch or epoch == cfg.epochs:
            probs = predict_proba(model, task, view, test, runtime, eval_batch, len(data.classes))
            epoch_probs.append(probs)
            evaluated.append(epoch)
            if test.size:
                test_acc = float((probs.argmax(1) == data.y[test]).mean())
        seconds = time.perf_counter() - epoch_start
        rows.append({"epoch": epoch, **stats, **rates, "seconds": seconds, "samples_per_s": samples_per_s,
                     "test_acc": test_acc})
        if progress is not None:
            progress(epoch, cfg.epochs, stats["train_loss"], stats["train_acc"], samples_per_s)

    auxiliary, detections = _auxiliary_metrics(model, task, view, data, test, runtime, eval_batch)
    shown = test[: cfg.report_samples]
    extras = {"sample_ids": data.sample_id[shown]}
    if shown.size:
        model.eval()
        with torch.inference_mode():
            extras.update(task.report_extras(model, view, shown, runtime))
    state = None
    if cfg.return_model_state:
        state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    history = pd.DataFrame(rows)
    first = [c for c in HISTORY_COLUMNS if c in history.columns]
    history = history[first + [c for c in history.columns if c not in first]]
    return FoldOutcome(
        history=history,
        test_sample_ids=data.sample_id[test],
        epoch_probs=np.stack(epoch_probs).astype(np.float32),
        evaluated_epochs=np.asarray(evaluated, dtype=np.int64),
        classes=data.classes,
        extras=extras,
        seed=int(seed),
        device=str(runtime.device),
        precision=runtime.precision,
        channels_last=runtime.channels_last,
        wall_seconds=time.perf_counter() - started,
        model_state=state,
        auxiliary=auxiliary,
        detections=detections,
    )
