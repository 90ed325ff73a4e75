"""What a training shard produces per fold, and the keys that make a killed run resumable fold by fold."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from microexpr.hashing import content_key

TRAINING_VERSION = 2  # 2: the key covers the seed, the selections and the task settings


def fold_seed(base_seed: int, fold: str) -> int:
    """A per-fold seed that depends only on the base seed and the fold id (not on shard or order)."""
    digest = hashlib.sha256(f"{int(base_seed)}:{fold}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class FoldSettings:
    """Every setting that changes a fold's result: base seed, selections, model, task and training blocks."""

    seed: int
    selections: tuple[str, ...]
    model: dict[str, Any]
    task: dict[str, Any]
    training: dict[str, Any]

    @classmethod
    def from_params(
        cls, seed: Any, selections: Any, model: Any, task: Any, training: Any
    ) -> FoldSettings:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        return cls(int(seed), tuple(str(s) for s in (selections or ())), dict(model or {}), dict(task or {}),
                   dict(training or {}))


def fold_key(model: str, input_fingerprint: str, fold_row: Any, settings: FoldSettings) -> str:
    """Identity of one fold's training: same key = same inputs, same fold definition, same settings, same seed."""
    return content_key(
        "fold",
        TRAINING_VERSION,
        model,
        input_fingerprint,
        str(fold_row["fold"]),
        sorted(map(str, fold_row["test_subjects"])),
        sorted(map(str, fold_row["train_subjects"])),
        settings.seed,
        list(settings.selections),
        settings.model,
        settings.task,
        settings.training,
    )


@dataclass
class FoldResult:
    """One trained-and-evaluated fold: per-epoch history, the test predictions of every selection, and the task's
    report extras of a few test samples. ``reused`` marks a result loaded from an earlier (interrupted) run."""

    model: str
    fold: str
    shard: int
    key: str
    test_subjects: list[str]
    n_train: int
    n_test: int
    seed: int
    history: pd.DataFrame
    predictions: pd.DataFrame
    extras: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    wall_seconds: float = 0.0
    reused: bool = False


@dataclass
class ShardDone:
    """Last chunk of every shard: which folds it covered (trained now or reused)."""

    model: str
    shard: int
    folds: dict[str, str]  # fold -> key
    reused: list[str]
