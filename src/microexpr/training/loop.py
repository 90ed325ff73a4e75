"""Fit and predict one fold: a fresh model under a fixed seed, a fixed schedule, per-epoch test probabilities.

``train_fold`` is pure with respect to its inputs: numpy arrays in (the model input contract below), a
``FoldOutcome`` out. It never reads files, globals or MLflow; the Kedro node around it does the I/O and the
tracking hook logs ``FoldOutcome.history``.

Input contract (one entry per sample, N samples; the key-frame input builder's output):
    sample_id (N,) str; y (N,) int64 label ids; classes (C,) str
    <name>_frames (N, K, H, W, 3) uint8 RGB and <name>_offsets (N, K) int16 (offset of each stored frame from
        the key frame; ``PAD_OFFSET`` = empty slot), for every framed input the model consumes ("onset", "apex")
    rise (N,) = apex − onset, fall (N,) = offset − apex, in frames (for the training frame windows)
    <name> (N, ...) numeric, for any other input the model consumes (passed as a float tensor, unaugmented)

Randomness (kedro.md G10: folds may run in threads): the model is initialised under a module lock with the global
CPU generator forked and seeded, so concurrent folds cannot interleave; shuffling and frame choice come from a
numpy Generator and augmentation from a CPU ``torch.Generator``, both derived from ``seed``. Models with
stochastic layers (dropout, drop-path) draw from the device's global generator inside ``forward``; for those, each
training forward runs under the same lock with that generator forked and seeded from the fold's own stream, so
the result does not depend on other threads either (the lock serialises only those forwards).
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, fields
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from microexpr.models import build_model
from microexpr.training.augment import AugmentConfig, augment_frames, to_model_tensor
from microexpr.training.sampling import (
    FrameWindows,
    allowed_windows,
    choose_frame_offsets,
    exact_frame_index,
    validate_frames_config,
)

__all__ = [
    "ATTENTION_SIZE",
    "FoldOutcome",
    "ModelInputs",
    "OptimizerConfig",
    "Runtime",
    "SchedulerConfig",
    "TrainConfig",
    "build_optimizer",
    "build_scheduler",
    "predict_proba",
    "resolve_runtime",
    "train_fold",
]

# side of the stored attention maps and face thumbnails (the first CA block's map at 224² input)
ATTENTION_SIZE = 112
JITTERED_INPUTS = ("onset", "apex")  # framed inputs that get training frame windows; others use offset 0
HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "lr", "seconds", "samples_per_s", "test_acc")
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
SCHEDULERS = ("exponential", "cosine", "none")
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
    torch optimiser accepts (betas, eps, momentum, nesterov, ...) in ``options``."""

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
    """``scheduler``: exponential (``gamma``), cosine (to ``min_lr``) or none; stepped after each of the first
    ``decay_epochs`` epochs only (None = every epoch; the reference MMNet code decays for 50 of 74 epochs)."""

    name: str = "exponential"
    gamma: float = 0.987
    decay_epochs: int | None = None
    min_lr: float = 0.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> SchedulerConfig:
        params = dict(params or {})
        _unknown_keys("scheduler", params, [f.name for f in fields(cls)])
        config = cls(**params)
        if config.name not in SCHEDULERS:
            raise ValueError(f"scheduler.name={config.name!r} is not one of {', '.join(SCHEDULERS)}")
        if not 0 < config.gamma <= 1:
            raise ValueError(f"scheduler.gamma must be in (0, 1], got {config.gamma!r}")
        if config.decay_epochs is not None and (
            isinstance(config.decay_epochs, bool) or config.decay_epochs < 0
        ):
            raise ValueError(
                f"scheduler.decay_epochs must be a non-negative integer or null, got {config.decay_epochs!r}"
            )
        return config


@dataclass(frozen=True)
class TrainConfig:
    """Training settings of one model (``training`` block of ``parameters_<model>.yml``); defaults = MMNet's
    documented training defaults (docs/models.md). Sections: optimizer, scheduler, augment (``AugmentConfig``),
    frames (``sampling.FRAME_MODES``).

    - precision: auto | fp32 | bf16. auto = bf16 autocast on CUDA with bf16 support and on CPUs with native
      bf16 (AVX512-BF16 or AMX: the MMNet step is ≈2× faster than fp32 there), else fp32.
    - channels_last: auto | true | false. auto = on for CUDA and CPU (2-core AVX512-BF16 CPU, MMNet step:
      1.0-1.1× in bf16, 1.2× in fp32).
    - device: auto (CUDA if available) | cpu | cuda | cuda:<k>.
    - evaluate_each_epoch: predict the test samples after every epoch (needed for ``oracle_epoch``
      selection; costs one test forward per epoch); else only after the last.
    - eval_batch_size: batch of the test forward (null = batch_size).
    - attention_samples: first test samples whose first attention map is kept for the report figure.
    - num_threads: torch intra-op threads (process-wide), null = leave as is.
    - return_model_state: put the final weights (CPU state dict) into the outcome.
    """

    epochs: int = 70
    batch_size: int = 32
    eval_batch_size: int | None = None
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    frames: dict[str, Any] = field(default_factory=lambda: validate_frames_config({}))
    precision: str = "auto"
    channels_last: str | bool = "auto"
    device: str = "auto"
    evaluate_each_epoch: bool = True
    attention_samples: int = 4
    num_threads: int | None = None
    return_model_state: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
        """Build from a parameters mapping (nested mappings for the sub-sections); unknown keys raise, named."""
        if isinstance(params, TrainConfig):
            return params
        params = dict(params or {})
        _unknown_keys("training", params, [f.name for f in fields(cls)])
        params["optimizer"] = OptimizerConfig.from_params(params.get("optimizer"))
        params["scheduler"] = SchedulerConfig.from_params(params.get("scheduler"))
        params["augment"] = AugmentConfig.from_params(params.get("augment"))
        params["frames"] = validate_frames_config(params.get("frames") or {})
        config = cls(**params)
        config._check()
        return config

    def _check(self) -> None:
        for name in ("epochs", "batch_size"):
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
        if self.attention_samples < 0:
            raise ValueError(f"training.attention_samples must be >= 0, got {self.attention_samples!r}")


@dataclass(frozen=True)
class Runtime:
    """Resolved device, precision ("bf16" | "fp32") and memory layout of one training run."""

    device: torch.device
    precision: str
    channels_last: bool

    def autocast(self) -> Any:
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN then runs bf16 convolutions natively (MMNet step ≈2× faster than fp32;
    benchmarks/mmnet_train_throughput.py)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_runtime(cfg: TrainConfig) -> Runtime:
    """Pick device, precision and channels_last from the ``auto`` settings and what this machine has."""
    if cfg.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"training.device={cfg.device!r} but CUDA is not available on this machine")
    if cfg.precision == "auto":
        if device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
        else:
            bf16 = device.type == "cpu" and _cpu_has_native_bf16()
        precision = "bf16" if bf16 else "fp32"
    else:
        precision = cfg.precision
    channels_last = device.type in ("cuda", "cpu") if cfg.channels_last == "auto" else bool(cfg.channels_last)
    return Runtime(device, precision, channels_last)


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimiser over every trainable parameter (weight decay on all, as the reference)."""
    optimizer_cls = OPTIMIZERS[cfg.name.lower()]
    params = [p for p in model.parameters() if p.requires_grad]
    return optimizer_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **cfg.options)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: SchedulerConfig, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch LR schedule (stepped by the loop after each of the first ``decay_epochs`` epochs)."""
    if cfg.name == "none":
        return None
    if cfg.name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
    horizon = cfg.decay_epochs if cfg.decay_epochs is not None else epochs
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(horizon, 1), eta_min=cfg.min_lr)


@dataclass
class FoldOutcome:
    """What one fold's training produced (all numpy / pandas; the model itself only if asked for).

    history: one row per epoch (``HISTORY_COLUMNS``; ``seconds`` is the whole epoch including the test pass,
    ``samples_per_s`` the training part only, ``test_acc`` NaN where the test set was not evaluated).
    epoch_probs: (E, n_test, C) float32 softmax probabilities after each epoch in ``evaluated_epochs`` (all
    epochs with ``evaluate_each_epoch``, else only the last). attention: ``sample_ids`` (k,), ``maps`` (k, 112,
    112) float16 (the first attention map, (0, 112, 112) for models without maps), ``faces`` (k, 112, 112, 3)
    uint8 exact-onset thumbnails.
    """

    history: pd.DataFrame
    test_sample_ids: np.ndarray
    epoch_probs: np.ndarray
    evaluated_epochs: np.ndarray
    classes: list[str]
    attention: dict[str, np.ndarray]
    seed: int
    device: str
    precision: str
    channels_last: bool
    wall_seconds: float
    model_state: dict[str, torch.Tensor] | None = None

    @property
    def epochs(self) -> int:
        return int(len(self.history))

    @property
    def evaluated_each_epoch(self) -> bool:
        return np.array_equal(self.evaluated_epochs, np.arange(1, self.epochs + 1))


@dataclass(frozen=True)
class ModelInputs:
    """The arrays a model consumes, checked once: framed inputs (frames + offsets) and plain per-sample arrays."""

    consumes: tuple[str, ...]
    sample_id: np.ndarray
    y: np.ndarray
    classes: list[str]
    frames: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    plain: dict[str, np.ndarray]

    @classmethod
    def from_arrays(cls, inputs: Mapping[str, np.ndarray], consumes: Sequence[str]) -> ModelInputs:
        for key in ("sample_id", "y", "classes"):
            if key not in inputs:
                raise KeyError(f"model inputs lack {key!r} (have {sorted(inputs)})")
        sample_id = np.asarray(inputs["sample_id"]).astype(str)
        n = sample_id.shape[0]
        classes = [str(c) for c in np.asarray(inputs["classes"]).tolist()]
        y = np.asarray(inputs["y"])
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must be (N,) = ({n},) integer label ids, got {y.dtype} {y.shape}")
        bad = np.flatnonzero((y < 0) | (y >= len(classes)))
        if bad.size:
            raise ValueError(
                f"label ids outside [0, {len(classes)}) for classes {classes}: samples {sample_id[bad[:5]].tolist()}"
            )
        frames, offsets, plain = {}, {}, {}
        for name in consumes:
            if f"{name}_frames" in inputs:
                frames[name] = _checked_frames(inputs, name, n)
                offsets[name] = np.asarray(inputs[f"{name}_offsets"])
                if offsets[name].shape != frames[name].shape[:2]:
                    raise ValueError(
                        f"{name}_offsets has shape {offsets[name].shape}, expected {frames[name].shape[:2]}"
                    )
                exact_frame_index(offsets[name], sample_id, f"{name}_offsets")  # offset 0 stored everywhere
            elif name in inputs:
                plain[name] = np.asarray(inputs[name])
                if plain[name].shape[:1] != (n,):
                    raise ValueError(
                        f"input {name!r} must have one row per sample ({n}), got {plain[name].shape}"
                    )
            else:
                raise KeyError(
                    f"the model consumes {name!r} but the inputs hold neither '{name}_frames' nor '{name}' "
                    f"(have {sorted(inputs)})"
                )
        return cls(tuple(consumes), sample_id, y.astype(np.int64), classes, frames, offsets, plain)

    def exact_choice(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Stored-frame index of offset 0 (exact key frame) per framed input, for the samples ``idx``."""
        return {
            name: exact_frame_index(self.offsets[name][idx], self.sample_id[idx], f"{name}_offsets")
            for name in self.frames
        }

    def tensors(
        self, idx: np.ndarray, choice: Mapping[str, np.ndarray], runtime: Runtime
    ) -> dict[str, torch.Tensor]:
        """Model keyword arguments for the samples ``idx`` with the stored frames ``choice``, on the device."""
        batch: dict[str, torch.Tensor] = {}
        for name in self.consumes:
            if name in self.frames:
                pixels = self.frames[name][idx, choice[name]]
                batch[name] = to_model_tensor(pixels, runtime.device, runtime.channels_last)
            else:
                batch[name] = (
                    torch.from_numpy(np.ascontiguousarray(self.plain[name][idx])).float().to(runtime.device)
                )
        return batch


def _checked_frames(inputs: Mapping[str, np.ndarray], name: str, n: int) -> np.ndarray:
    frames = inputs[f"{name}_frames"]
    if f"{name}_offsets" not in inputs:
        raise KeyError(f"model inputs hold {name}_frames but not {name}_offsets")
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[0] != n or frames.shape[-1] != 3:
        raise ValueError(
            f"{name}_frames must be uint8 (N={n}, K, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    return frames


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
    data: ModelInputs,
    idx: np.ndarray,
    runtime: Runtime,
    batch_size: int,
) -> np.ndarray:
    """Softmax probabilities (len(idx), C) float32 on the exact key frames, eval mode, no augmentation."""
    idx = np.asarray(idx, dtype=np.int64)
    probs = np.zeros((idx.size, len(data.classes)), dtype=np.float32)
    if idx.size == 0:
        return probs
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, idx.size, batch_size):
            part = idx[start : start + batch_size]
            batch = data.tensors(part, data.exact_choice(part), runtime)
            with runtime.autocast():
                logits = model(**batch)
            probs[start : start + part.size] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    model.train(was_training)
    return probs


def _attention_summary(
    model: nn.Module, data: ModelInputs, test_idx: np.ndarray, runtime: Runtime, k: int
) -> dict[str, np.ndarray]:
    """First attention map and an exact-onset thumbnail for the first ``k`` test samples (report figure)."""
    idx = test_idx[:k]
    size = ATTENTION_SIZE
    empty_maps = np.zeros((0, size, size), dtype=np.float16)
    face_input = "onset" if "onset" in data.frames else next(iter(data.frames), None)
    faces = np.zeros((idx.size, size, size, 3), dtype=np.uint8)
    if face_input is not None and idx.size:
        choice = data.exact_choice(idx)[face_input]
        for row, (sample, slot) in enumerate(zip(idx, choice, strict=True)):
            faces[row] = cv2.resize(
                data.frames[face_input][sample, slot], (size, size), interpolation=cv2.INTER_AREA
            )
    summary = {"sample_ids": data.sample_id[idx], "maps": empty_maps, "faces": faces}
    if idx.size == 0 or "return_attention" not in inspect.signature(model.forward).parameters:
        return summary
    model.eval()
    with torch.inference_mode(), runtime.autocast():
        _, maps = model(**data.tensors(idx, data.exact_choice(idx), runtime), return_attention=True)
    if len(maps):
        first = maps[0].float()
        if first.shape[-2:] != (size, size):
            first = F.interpolate(first, size=(size, size), mode="bilinear", align_corners=False)
        summary["maps"] = first[:, 0].cpu().numpy().astype(np.float16)
    return summary


def _seed_streams(seed: int) -> tuple[np.random.Generator, torch.Generator, np.random.Generator]:
    """Independent streams for shuffling + frame choice (numpy), augmentation (torch CPU) and dropout seeds."""
    data_seq, augment_seq, dropout_seq = np.random.SeedSequence(seed).spawn(3)
    torch_seed = int(augment_seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
    return (
        np.random.default_rng(data_seq),
        torch.Generator().manual_seed(torch_seed),
        np.random.default_rng(dropout_seq),
    )


@dataclass
class _FoldState:
    """Everything one fold's epochs share: model, data, optimiser, random streams."""

    model: nn.Module
    data: ModelInputs
    train: np.ndarray
    windows: FrameWindows | None
    optimizer: torch.optim.Optimizer
    runtime: Runtime
    cfg: TrainConfig
    data_rng: np.random.Generator
    augment_gen: torch.Generator
    dropout_rng: np.random.Generator
    stochastic: bool

    def training_batch(self, batch_pos: np.ndarray) -> dict[str, torch.Tensor]:
        """Model inputs of the training samples at ``batch_pos``: jittered key frames, augmented together."""
        idx = self.train[batch_pos]
        data = self.data
        choice = data.exact_choice(idx)
        for name in JITTERED_INPUTS:
            if name in data.frames and self.windows is not None:
                allowed = getattr(self.windows, name)[batch_pos]
                offsets = data.offsets[name][idx]
                choice[name] = choose_frame_offsets(
                    offsets, allowed, self.data_rng, data.sample_id[idx], f"{name}_offsets"
                )
        batch = data.tensors(idx, choice, self.runtime)
        framed = [name for name in data.consumes if name in data.frames]
        if framed:
            augmented = augment_frames([batch[name] for name in framed], self.cfg.augment, self.augment_gen)
            batch.update(zip(framed, augmented, strict=True))
        return batch

    def train_epoch(self) -> tuple[float, float]:
        """One pass over the shuffled training samples; mean loss and accuracy (on the augmented inputs)."""
        self.model.train()
        y_train = torch.from_numpy(self.data.y[self.train]).to(self.runtime.device)
        loss_sum, correct = 0.0, 0
        for batch_pos in _batches(self.data_rng.permutation(self.train.size), self.cfg.batch_size):
            batch = self.training_batch(batch_pos)
            target = y_train[batch_pos]
            step_seed = int(self.dropout_rng.integers(2**62))
            with _seeded_forward(self.runtime.device, step_seed, self.stochastic), self.runtime.autocast():
                logits = self.model(**batch)
            loss = F.cross_entropy(logits.float(), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += float(loss.detach()) * batch_pos.size
            correct += int((logits.detach().argmax(1) == target).sum())
        return loss_sum / self.train.size, correct / self.train.size


def _frame_windows(
    inputs: Mapping[str, np.ndarray], data: ModelInputs, train: np.ndarray, cfg: TrainConfig
) -> FrameWindows | None:
    """Training frame windows when the model consumes onset or apex frames (needs ``rise`` and ``fall``)."""
    if not any(name in data.frames for name in JITTERED_INPUTS):
        return None
    for key in ("rise", "fall"):
        if key not in inputs:
            raise KeyError(f"model inputs lack {key!r}, needed for the training frame windows")
    rise, fall = np.asarray(inputs["rise"])[train], np.asarray(inputs["fall"])[train]
    return allowed_windows(cfg.frames, rise, fall, data.sample_id[train])


def train_fold(
    model_name: str,
    model_cfg: Mapping[str, Any] | None,
    inputs: Mapping[str, np.ndarray],
    train_idx: Sequence[int],
    test_idx: Sequence[int],
    cfg: TrainConfig | Mapping[str, Any],
    seed: int,
    progress: ProgressCallback | None = None,
) -> FoldOutcome:
    """Train a fresh ``model_name`` on ``train_idx`` for ``cfg.epochs`` and predict ``test_idx`` (see module doc).

    ``train_idx``/``test_idx`` are positions into the input arrays; the test side may be empty (then every
    prediction array is empty), a class may be absent from the training side. ``progress(epoch, epochs, loss,
    acc, samples_per_s)`` is called after each epoch. Same ``seed``, inputs and settings → identical
    probabilities on CPU (on CUDA up to non-deterministic kernels).
    """
    started = time.perf_counter()
    cfg = TrainConfig.from_params(cfg)
    if cfg.num_threads is not None:
        torch.set_num_threads(int(cfg.num_threads))
    runtime = resolve_runtime(cfg)
    if "classes" not in inputs:
        raise KeyError(f"model inputs lack 'classes' (have {sorted(inputs)})")
    model = _build_seeded_model(model_name, len(np.asarray(inputs["classes"])), model_cfg or {}, seed)
    data = ModelInputs.from_arrays(inputs, model.consumes)
    train, test = _check_indices(train_idx, test_idx, data.sample_id)
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = model.to(runtime.device, memory_format=memory_format)
    optimizer = build_optimizer(model, cfg.optimizer)
    scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.epochs)
    decay_epochs = cfg.epochs if cfg.scheduler.decay_epochs is None else cfg.scheduler.decay_epochs
    data_rng, augment_gen, dropout_rng = _seed_streams(seed)
    fold = _FoldState(
        model, data, train, _frame_windows(inputs, data, train, cfg), optimizer, runtime, cfg,
        data_rng, augment_gen, dropout_rng, _has_stochastic_layers(model),
    )  # fmt: skip

    rows, epoch_probs, evaluated = [], [], []
    for epoch in range(1, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        train_loss, train_acc = fold.train_epoch()
        samples_per_s = train.size / (time.perf_counter() - epoch_start)
        if scheduler is not None and epoch <= decay_epochs:
            scheduler.step()
        test_acc = math.nan
        if cfg.evaluate_each_epoch or epoch == cfg.epochs:
            probs = predict_proba(model, data, test, runtime, cfg.eval_batch_size or cfg.batch_size)
            epoch_probs.append(probs)
            evaluated.append(epoch)
            if test.size:
                test_acc = float((probs.argmax(1) == data.y[test]).mean())
        seconds = time.perf_counter() - epoch_start
        rows.append((epoch, train_loss, train_acc, lr, seconds, samples_per_s, test_acc))
        if progress is not None:
            progress(epoch, cfg.epochs, train_loss, train_acc, samples_per_s)

    attention = _attention_summary(model, data, test, runtime, cfg.attention_samples)
    state = None
    if cfg.return_model_state:
        state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    return FoldOutcome(
        history=pd.DataFrame(rows, columns=list(HISTORY_COLUMNS)),
        test_sample_ids=data.sample_id[test],
        epoch_probs=np.stack(epoch_probs).astype(np.float32),
        evaluated_epochs=np.asarray(evaluated, dtype=np.int64),
        classes=data.classes,
        attention=attention,
        seed=int(seed),
        device=str(runtime.device),
        precision=runtime.precision,
        channels_last=runtime.channels_last,
        wall_seconds=time.perf_counter() - started,
        model_state=state,
    )
