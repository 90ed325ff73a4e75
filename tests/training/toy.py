"""A tiny registered model and a learnable toy data set in the key-frame input contract (shared by these tests).

The toy problem: every sample is a random textured face-sized image; its apex frames add a class-dependent
brightening (class 0 top half, class 1 bottom half, class 2 a centre square) to the onset, so only the motion
``apex - onset`` tells the classes apart, as in micro-expressions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microexpr.models import register_model
from microexpr.models.mmnet import MMNetTask
from microexpr.training.sampling import PAD_OFFSET

CLASSES = np.array(["top", "bottom", "centre"])
SIZE = 32


@register_model("tiny_motion_test", task=MMNetTask)
class TinyMotionNet(nn.Module):
    """Conv on apex − onset, one spatial attention gate, 2×2 pooling, linear head (optional dropout); trained
    through MMNet's key-frame task."""

    def __init__(self, num_classes: int, width: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.gate = nn.Conv2d(width, 1, 1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(width * 4, num_classes)

    def forward(
        self, onset: torch.Tensor, apex: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        features = F.relu(self.bn(self.conv(apex - onset)))
        attention = torch.sigmoid(self.gate(features))
        pooled = F.adaptive_avg_pool2d(features * attention, 2).flatten(1)
        logits = self.fc(self.drop(pooled))
        return (logits, (attention,)) if return_attention else logits


def class_pattern(label: int, size: int = SIZE) -> np.ndarray:
    """(size, size, 1) float brightening mask of one class."""
    mask = np.zeros((size, size, 1), dtype=np.float32)
    half, quarter = size // 2, size // 4
    if label == 0:
        mask[:half] = 1.0
    elif label == 1:
        mask[half:] = 1.0
    else:
        mask[quarter:-quarter, quarter:-quarter] = 1.0
    return mask


def toy_inputs(
    n: int, n_classes: int = 2, seed: int = 0, size: int = SIZE, strength: float = 60.0
) -> dict[str, np.ndarray]:
    """Key-frame model inputs for ``n`` samples with labels cycling over the first ``n_classes`` classes.

    Onset frames at offsets 0..3 (the last slot padding for every third sample), apex frames at −3..0.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    base = rng.uniform(40, 200, size=(n, 1, size, size, 3)).astype(np.float32)
    onset = base + rng.normal(0, 2, size=(n, 4, size, size, 3))
    motion = np.stack([class_pattern(label, size) for label in y])[:, None] * strength
    apex = base + motion + rng.normal(0, 2, size=(n, 4, size, size, 3))
    onset_offsets = np.tile(np.array([0, 1, 2, 3], dtype=np.int16), (n, 1))
    onset_offsets[::3, 3] = PAD_OFFSET
    apex_offsets = np.tile(np.array([-3, -2, -1, 0], dtype=np.int16), (n, 1))
    return {
        "sample_id": np.array([f"toy/s{i:03d}" for i in range(n)]),
        "fold_subject": np.array([f"toy/sub{i % 4}" for i in range(n)]),
        "dataset": np.array(["toy"] * n),
        "subject": np.array([f"sub{i % 4}" for i in range(n)]),
        "y": y.astype(np.int64),
        "classes": CLASSES[:n_classes].copy(),
        "onset_frames": np.clip(onset, 0, 255).astype(np.uint8),
        "onset_offsets": onset_offsets,
        "apex_frames": np.clip(apex, 0, 255).astype(np.uint8),
        "apex_offsets": apex_offsets,
        "rise": np.full(n, 12, dtype=np.int32),
        "fall": np.full(n, 10, dtype=np.int32),
    }


TINY_TASK = {
    "augment": {"padding": 2, "rotation": 3.0, "hflip": 0.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0},
}


def tiny_config(**overrides: object) -> dict[str, object]:
    """Fast training settings for the toy problem (its task settings: ``TINY_TASK``)."""
    config: dict[str, object] = {
        "epochs": 6,
        "batch_size": 8,
        "optimizer": {"name": "AdamW", "lr": 0.02, "weight_decay": 0.0},
        "scheduler": {"name": "exponential", "gamma": 0.9},
        "report_samples": 2,
    }
    config.update(overrides)
    return config
