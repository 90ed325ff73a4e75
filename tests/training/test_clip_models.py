"""A 3-D convolution model on clips trains through the same seam: ``channels_last: auto`` resolves to off (2-D
channels_last cannot hold 5-D weights), clips are augmented frame-consistently, and per-sample sub-clips are
averaged into one score per sample at prediction (as MOL's video-level scores)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from microexpr.models import register_model
from microexpr.training.augment import AugmentConfig, augment_batch, to_input_tensor
from microexpr.training.loop import train_fold
from microexpr.training.runtime import Runtime
from microexpr.training.task import FoldContext, InputSpec, PredictInputs, Streams, Task

CLIP_T, SUB_T = 6, 4  # stored frames per sample, frames per sub-clip (3 sub-clips per sample)


class TinyClipTask(Task):
    """Grey clips (T, H, W, 1); training takes one random sub-clip of SUB_T frames, prediction averages all."""

    features = ()
    model_inputs = {"clip": InputSpec(arrays=("clip",), kind="clip", channels=1, mean=(0.5,), std=(0.25,), colour=False)}
    training_only = ()

    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        raise NotImplementedError("test model: no preprocessing feature")

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 16) -> dict[str, np.ndarray]:
        return {"clip": rng.integers(0, 256, size=(n, CLIP_T, size, size, 1), dtype=np.uint8)}

    def train_batch(self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams,
                    runtime: Runtime) -> dict[str, torch.Tensor]:
        rows = fold.train[batch_pos]
        starts = streams.data.integers(0, CLIP_T - SUB_T + 1, size=rows.size)
        clips = np.stack([fold.data.arrays["clip"][r, s : s + SUB_T] for r, s in zip(rows, starts, strict=True)])
        spec = self.model_inputs["clip"]
        clip = to_input_tensor(clips, spec.mean, spec.std, runtime.device)
        moved = augment_batch([clip], AugmentConfig(brightness=0, contrast=0, saturation=0, padding=2), streams.augment,
                              colour=[False])
        return {"clip": moved.images[0]}

    def predict_batches(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime,
                        batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        spec = self.model_inputs["clip"]
        for start in range(CLIP_T - SUB_T + 1):
            clips = inputs["clip"][rows, start : start + SUB_T]
            yield np.arange(rows.size), {"clip": to_input_tensor(clips, spec.mean, spec.std, runtime.device)}


@register_model("tiny_clip3d_test", task=TinyClipTask)
class TinyClip3d(nn.Module):
    """Conv3d → global pooling → linear."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(clip)).mean(dim=(2, 3, 4)))


def _clips(n: int = 12) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    clip = rng.integers(0, 120, size=(n, CLIP_T, 16, 16, 1)).astype(np.uint8)
    clip[y == 1] += 100  # class 1 is brighter: learnable
    return {"sample_id": np.array([f"c/s{i}" for i in range(n)]), "y": y.astype(np.int64),
            "classes": np.array(["dark", "bright"]), "clip": clip}


def test_a_3d_convolution_model_trains_with_channels_last_auto() -> None:
    inputs = _clips()
    cfg = {"epochs": 3, "batch_size": 4, "channels_last": "auto", "optimizer": {"lr": 0.05, "weight_decay": 0.0},
           "report_samples": 0}
    outcome = train_fold("tiny_clip3d_test", {}, inputs, np.arange(8), np.arange(8, 12), cfg, seed=0)
    assert outcome.channels_last is True  # only 3-D convolutions: auto lays them out channels_last_3d on a CPU
    assert outcome.epoch_probs.shape == (3, 4, 2)
    np.testing.assert_allclose(outcome.epoch_probs.sum(axis=2), 1.0, atol=1e-5)
    assert np.isfinite(outcome.history["train_loss"]).all()


def test_sub_clip_scores_are_averaged_into_one_score_per_sample() -> None:
    from microexpr.training.loop import _train_data, predict_inputs, predict_proba
    from microexpr.training.runtime import resolve_runtime

    torch.manual_seed(0)
    model = TinyClip3d(2).eval()
    task = TinyClipTask()
    data = _train_data(task, _clips())
    view = predict_inputs(task, data)
    runtime = resolve_runtime("cpu", "fp32", "auto", model)
    rows = np.arange(8, 12)
    probs = predict_proba(model, task, view, rows, runtime, 4, 2)
    with torch.inference_mode():
        expected = np.mean([
            torch.softmax(model(**batch), 1).numpy() for _, batch in task.predict_batches(view, rows, runtime, 4)
        ], axis=0)
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_clip_augmentation_moves_every_frame_alike() -> None:
    clip = torch.randn(3, 1, 5, 12, 12)
    still = clip[:, :, :1].expand(-1, -1, 5, -1, -1).contiguous()  # the same frame 5 times
    cfg = AugmentConfig(hflip=0.5, rotation=10.0, padding=3, brightness=0, contrast=0, saturation=0)
    (moved,) = augment_batch([still], cfg, torch.Generator().manual_seed(0), colour=[False]).images
    assert moved.shape == still.shape
    for t in range(1, 5):
        torch.testing.assert_close(moved[:, :, t], moved[:, :, 0])
    assert not torch.allclose(moved, still)
