"""MOL: joint micro-expression recognition, optical-flow and landmark learning (paper 003; code CYF-cuber/MOL).

Input: a grey clip of T = 8 frames (B, 1, T, S, S), S = 128 (crops of the 144² aligned faces).

- conv stack (shared by every frame; no nonlinearity, as coded): 1→8 k4/2, 8→32 k3/2, 32→64 k2/2 p1, 64→128 k1
  → 128 × S/8 × S/8;
- for every consecutive pair (t, t+1): F5C = FCC then CCC (``f + CCC(f)``), with separate weights for frame t and
  frame t+1 (the code's FCC_1/CCC_1, FCC_2/CCC_2), ``f5c_blocks`` of them stacked;
- fusion of the pairs' features along time (code: interleaved [f_t(0), f_t+1(1), f_t(1), …], 14 steps) → a 3D-CNN
  MER head (Conv3d 128→32 k(2,2,5) s(2,2,1), MaxPool3d 2, dropout, FC 256, ReLU, dropout, FC C);
- a landmark head on each pair's frame-t+1 features (conv 3×3 → ReLU → FC 512 → ReLU → FC 136): frames 1..T−1;
- a FlowNetC head per pair on the raw frames and the pair's F5C features: flow (2, S, S) for each pair.

Every ablation of the paper's Tables VIII–XII and every paper-vs-code difference is a constructor argument
(docs/models.md, "MOL"). The training task (``MOLTask``): sub-clips of ⌊L/8⌋-spaced frames, a random crop per
epoch with the landmark targets moved by it, a horizontal flip (paper) that negates u and mirrors the landmark
indices, loss CE + λ_of·MSE(flow) + λ_ldm·L1(landmarks)/inter-pupil distance, video-level scores (the sub-clips'
probabilities averaged), and the flow EPE and landmark NME of the test subject as auxiliary metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from microexpr.features.recipes import interval_pairs
from microexpr.models import register_model
from microexpr.models.mol_layers import CCC, FCC, FCC_AXES, FlowNetC
from microexpr.training.augment import IBUG68_MIRROR
from microexpr.training.runtime import Runtime
from microexpr.training.task import FoldContext, InputSpec, LossTerms, PredictInputs, Streams, Task

__all__ = ["FUSIONS", "MOL", "MOLSettings", "MOLTask", "crop_clip", "endpoint_error", "flip_clip",
           "inter_ocular_distance", "inter_pupil_distance", "landmark_nme", "subclip_frames"]

FUSIONS = ("concat", "add", "subtract", "first", "last", "all_frames")
FCC_KINDS = (*FCC_AXES, "transformer")
N_LANDMARKS = 68
CONV_STACK = ((1, 8, 4, 2, 0), (8, 32, 3, 2, 0), (32, 64, 2, 2, 1), (64, 128, 1, 1, 0))  # in, out, k, stride, pad
STRIDE = 8  # of the conv stack and of the FlowNet encoder


def _feature_size(image_size: int) -> int:
    size = image_size
    for _, _, kernel, stride, pad in CONV_STACK:
        size = (size + 2 * pad - kernel) // stride + 1
    return size


class InputNorm(nn.Module):
    """The code's video normalisation (subtract the mean of all values, divide by the max of what is left) with
    statistics of the training batches only: cumulative mean and max updated in training mode, frozen in eval mode
    (the code instead normalises each test subject with its own statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("max", torch.ones((), dtype=torch.float64))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                n = float(video.numel())
                total = self.count + n
                peak = video.double().max()
                if self.count > 0:  # the largest value seen so far, from the statistics before this batch
                    peak = torch.maximum(self.max + self.mean, peak)
                self.mean.copy_((self.mean * self.count + video.double().sum()) / total)
                self.count.copy_(total)
                self.max.copy_((peak - self.mean).clamp(min=1e-6))
        return (video - self.mean.to(video.dtype)) / self.max.to(video.dtype)


class TransformerMixer(nn.Module):
    """The paper's "vanilla transformer" in place of FCC: one pre-norm transformer block over the H·W positions
    with a learned positional embedding (timm ``Block``, 4 heads, MLP ratio 2)."""

    def __init__(self, channels: int, positions: int, heads: int = 4) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, positions, channels))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.block = Block(channels, heads, mlp_ratio=2.0, qkv_bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.block(x.flatten(2).transpose(1, 2) + self.position)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class F5C(nn.Module):
    """One F5C block: FCC (or a variant, or none) then ``f + CCC(f)`` (or none)."""

    def __init__(self, channels: int, positions: int, *, fcc: str | None, ccc: bool, meta_kernel: int,
                 fcc_fuse: bool, ccc_axis: str, ccc_k: int, ccc_double_difference: bool, ccc_project: bool) -> None:
        super().__init__()
        if fcc == "transformer":
            self.fcc: nn.Module = TransformerMixer(channels, positions)
        elif fcc is not None:
            self.fcc = FCC(channels, meta_kernel, fcc, fuse=fcc_fuse)
        else:
            self.fcc = nn.Identity()
        self.ccc = CCC(positions, channels, ccc_k, ccc_axis, ccc_double_difference, ccc_project) if ccc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fcc(x)
        return x + self.ccc(x) if self.ccc is not None else x


class MERHead(nn.Module):
    """Conv3d C→32 k(2,2,5) s(2,2,1) → MaxPool3d 2 → dropout → FC 256 → ReLU → dropout → FC classes, on the
    (B, C, h, w, L) stacked pair features (the code's layout: time last). ``dropout``: both dropouts' p (code 0.5)."""

    def __init__(self, channels: int, size: int, steps: int, num_classes: int, hidden: int = 256,
                 dropout: float = 0.5) -> None:
        super().__init__()
        if steps < 5:
            raise ValueError(f"the MER head's temporal kernel 5 needs at least 5 fused steps, got {steps}")
        self.conv = nn.Conv3d(channels, 32, (2, 2, 5), stride=(2, 2, 1))
        flat = 32 * (((size - 2) // 2 + 1) // 2) ** 2 * ((steps - 4) // 2)
        if flat < 1:
            raise ValueError(f"features of {size}x{size} x {steps} steps are too small for the MER head")
        if not 0 <= dropout < 1:
            raise ValueError(f"the MER head's dropout must be in [0, 1), got {dropout!r}")
        self.pool, self.dropout = nn.MaxPool3d(2), nn.Dropout(dropout)
        self.fc1, self.fc2 = nn.Linear(flat, hidden), nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(self.conv(x))).flatten(1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class LandmarkHead(nn.Module):
    """Conv 3×3 C→32 (no padding) → ReLU → FC 512 → ReLU → FC 136 (x, y interleaved) → (B, 68, 2)."""

    def __init__(self, channels: int, size: int, hidden: int = 512) -> None:
        super().__init__()
        if size < 3:
            raise ValueError(f"the landmark head needs features of at least 3x3, got {size}x{size}")
        self.conv = nn.Conv2d(channels, 32, 3)
        self.fc1, self.fc2 = nn.Linear(32 * (size - 2) ** 2, hidden), nn.Linear(hidden, 2 * N_LANDMARKS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(F.relu(self.conv(x)).flatten(1)))
        return self.fc2(x).view(-1, N_LANDMARKS, 2)


def fuse_pairs(first: torch.Tensor, second: torch.Tensor, fusion: str) -> torch.Tensor:
    """(B, P, C, h, w) features of frame t and t+1 of every pair → (B, C, h, w, L) for the MER head.

    concat: [f_t(0), f_t+1(1), f_t(1), f_t+1(2), …] (L = 2P, the code); add: f_t + f_t+1; subtract: f_t+1 − f_t;
    first: f_t; last: f_t+1 (L = P); all_frames: every frame once, f_t(0..P−1) and f_t+1(P) (L = P + 1).
    """
    if fusion == "concat":
        stacked = torch.stack([first, second], dim=2).flatten(1, 2)
    elif fusion == "add":
        stacked = first + second
    elif fusion == "subtract":
        stacked = second - first
    elif fusion == "first":
        stacked = first
    elif fusion == "last":
        stacked = second
    elif fusion == "all_frames":
        stacked = torch.cat([first, second[:, -1:]], dim=1)
    else:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    return stacked.permute(0, 2, 3, 4, 1)


def fused_steps(pairs: int, fusion: str) -> int:
    return {"concat": 2 * pairs, "all_frames": pairs + 1}.get(fusion, pairs)


@dataclass(frozen=True)
class MOLSettings:
    """``mol.task``: loss weights, the code's extra ÷(T−1) on the flow term, crop margin, flip, the landmark
    normaliser. Defaults: the paper where it is readable, else the code (docs/models.md, "MOL")."""

    flow_weight: float = 10.0           # λ_of (code; the paper's value is lost)
    landmark_weight: float = 0.5        # λ_ldm (code default; its README example uses 0.1)
    flow_divide_by_pairs: bool = False  # the code divides the flow MSE by T−1 once more (paper: plain MSE)
    clip_length: int = 8
    crop_margin: int = 16               # stored side − crop side (144 → 128)
    hflip: float = 0.5                  # paper: flipped clips; the code never flips (0 in conf/mol_reference)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MOLSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"mol.task got unknown key(s) {unknown}; accepted: {sorted(known)}")
        settings = cls(**params)
        if settings.flow_weight < 0 or settings.landmark_weight < 0:
            raise ValueError("mol.task flow_weight and landmark_weight must be >= 0")
        if not 0 <= settings.hflip <= 1:
            raise ValueError(f"mol.task.hflip must be a probability, got {settings.hflip!r}")
        if settings.clip_length < 2 or settings.crop_margin < 0:
            raise ValueError("mol.task needs clip_length >= 2 and crop_margin >= 0")
        return settings


# ------------------------------------------------------------------------------------------ pure helpers
def subclip_frames(n_frames: int, clip_length: int, j: int) -> np.ndarray:
    """Positions of sub-clip ``j`` of a video of ``n_frames``: i·⌊n/T⌋ + j for i < T (the code's sampling)."""
    interval = n_frames // clip_length
    if not 0 <= j < interval:
        raise ValueError(f"sub-clip {j} of a {n_frames}-frame video (interval {interval})")
    return np.arange(clip_length) * interval + j


def subclip_flow_slots(n_frames: int, clip_length: int, j: int) -> np.ndarray:
    """Where the flows of sub-clip ``j``'s consecutive pairs are stored (``interval_pairs`` order: j-major)."""
    return j * (clip_length - 1) + np.arange(clip_length - 1)


def crop_clip(frames: np.ndarray, flows: np.ndarray | None, landmarks: np.ndarray | None, x: int, y: int,
              size: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Crop (T, H, W) frames, (P, H, W, 2) flows and (T, K, 2) landmarks (x, y pixels) at origin (x, y): frames and
    flows are cut, landmarks shifted by the origin (a copy; the code shifted one shared array in place)."""
    cut = frames[:, y : y + size, x : x + size]
    cut_flows = None if flows is None else flows[:, y : y + size, x : x + size]
    moved = None if landmarks is None else landmarks - np.array([x, y], dtype=landmarks.dtype)
    return cut, cut_flows, moved


def flip_clip(frames: np.ndarray, flows: np.ndarray | None, landmarks: np.ndarray | None
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Horizontal mirror: frames reversed along x; flows reversed and u negated; landmarks x → W − 1 − x and
    re-indexed left ↔ right (IBUG68_MIRROR). An involution."""
    width = frames.shape[-1]
    flipped = frames[..., ::-1]
    out_flows = None
    if flows is not None:
        out_flows = flows[:, :, ::-1].copy()
        out_flows[..., 0] *= -1
    out_landmarks = None
    if landmarks is not None:
        out_landmarks = landmarks[..., list(IBUG68_MIRROR), :].copy()
        out_landmarks[..., 0] = width - 1 - out_landmarks[..., 0]
    return flipped, out_flows, out_landmarks


def _eye_centres(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return points[..., 36:42, :].mean(-2), points[..., 42:48, :].mean(-2)


def inter_pupil_distance(points: torch.Tensor) -> torch.Tensor:
    """(…, 68, 2) → (…) distance between the eye centres (mean of each eye's six points): the code's normaliser."""
    left, right = _eye_centres(points)
    return (right - left).norm(dim=-1)


def inter_ocular_distance(points: torch.Tensor) -> torch.Tensor:
    """(…, 68, 2) → (…) distance between the outer eye corners (points 36 and 45): the usual NME normaliser."""
    return (points[..., 45, :] - points[..., 36, :]).norm(dim=-1)


def landmark_nme(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(…, 68, 2) → (…) mean point-to-point error / inter-ocular distance of the target."""
    return (predicted - target).norm(dim=-1).mean(-1) / inter_ocular_distance(target).clamp(min=1e-6)


def endpoint_error(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(…, 2, H, W) → (…) mean end-point error (pixels)."""
    return (predicted - target).norm(dim=-3).mean((-2, -1))


def landmark_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The code's landmark term: L1 summed over x, y and the 68 points, ÷ inter-pupil distance, summed over the
    frames, averaged over the batch, ÷ 68. (B, P, 68, 2) each."""
    per_frame = (predicted - target).abs().sum((-2, -1)) / inter_pupil_distance(target).clamp(min=1e-6)
    return per_frame.sum(1).mean() / N_LANDMARKS


# ------------------------------------------------------------------------------------------------ the task
class MOLTask(Task):
    """Sub-clip training of MOL with flow and landmark targets (module docstring; docs/models.md, "MOL")."""

    features = ("mol_clips",)
    model_inputs = {"video": InputSpec(arrays=("frames", "n_frames"), kind="clip", channels=1, mean=None, std=None,
                                       geometric=False, colour=False)}
    targets = ("flows", "landmarks")
    padding = {"frames": 0, "flows": 0, "landmarks": 0}
    settings_class = MOLSettings
    report_figures = {"flow_landmarks": "Predicted landmarks and flow magnitude on test clips"}

    def bundle_settings(self) -> dict[str, Any]:
        return {"clip_length": self.settings.clip_length}

    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        clip = features["mol_clips"]
        n = int(np.asarray(clip["frames"]).shape[0])
        stored = np.asarray(clip["flow_pairs"]).reshape(-1, 2)
        expected = np.array(interval_pairs(n, self.settings.clip_length), dtype=np.int64).reshape(-1, 2)
        if stored.shape != expected.shape or not np.array_equal(stored, expected):
            raise ValueError(f"sample {row['sample_id']}: mol_clips flow pairs were made for another clip length "
                             f"than mol.task.clip_length {self.settings.clip_length}")
        return {
            "frames": np.asarray(clip["frames"], dtype=np.uint8),
            "n_frames": np.int32(n),
            "flows": np.asarray(clip["flows"], dtype=np.float16),
            "landmarks": np.asarray(clip["landmarks"], dtype=np.float32),
        }

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
        """Clips of 8–17 frames at side ``size`` + 16 (the crop is ``size``), landmarks inside the crop."""
        stored, length = size + MOLSettings.crop_margin, 17
        counts = rng.integers(8, length + 1, size=n).astype(np.int32)
        pairs = (length // 8) * 7
        frames = np.zeros((n, length, stored, stored), dtype=np.uint8)
        flows = np.zeros((n, pairs, stored, stored, 2), dtype=np.float16)
        for i, count in enumerate(counts):
            frames[i, :count] = rng.integers(0, 256, size=(count, stored, stored), dtype=np.uint8)
            used = (count // 8) * 7
            flows[i, :used] = rng.normal(0, 1, size=(used, stored, stored, 2))
        base = rng.uniform(0.3, 0.7, size=(n, 1, N_LANDMARKS, 2)) * stored
        landmarks = (base + rng.normal(0, 1, size=(n, length, N_LANDMARKS, 2))).astype(np.float32)
        return {"frames": frames, "n_frames": counts, "flows": flows, "landmarks": landmarks}

    # ------------------------------------------------------------------------------------------ batches
    def _crop_size(self, stored: int) -> int:
        size = stored - self.settings.crop_margin
        if size < 8:
            raise ValueError(f"mol: stored clips of {stored} px leave a {size} px crop (crop_margin "
                             f"{self.settings.crop_margin})")
        return size

    def _clip(self, arrays: Mapping[str, np.ndarray], row: int, j: int, x: int, y: int, size: int,
              with_targets: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        n, length = int(arrays["n_frames"][row]), self.settings.clip_length
        positions = subclip_frames(n, length, j)
        frames = arrays["frames"][row, positions]
        flows = landmarks = None
        if with_targets:
            flows = np.asarray(arrays["flows"][row, subclip_flow_slots(n, length, j)], dtype=np.float32)
            landmarks = arrays["landmarks"][row, positions[1:]]
        return crop_clip(frames, flows, landmarks, x, y, size)

    def train_batch(self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams,
                    runtime: Runtime) -> dict[str, torch.Tensor]:
        """One random sub-clip, one random crop and (with probability hflip) a mirror per training video."""
        arrays, rows = fold.data.arrays, fold.train[batch_pos]
        stored = arrays["frames"].shape[-1]
        size = self._crop_size(stored)
        videos, flows, points = [], [], []
        for row in rows:
            interval = int(arrays["n_frames"][row]) // self.settings.clip_length
            j = int(streams.data.integers(interval))
            x, y = (int(v) for v in torch.randint(0, stored - size + 1, (2,), generator=streams.augment))
            frames, flow, landmarks = self._clip(arrays, row, j, x, y, size, with_targets=True)
            if float(torch.rand((), generator=streams.augment)) < self.settings.hflip:
                frames, flow, landmarks = flip_clip(frames, flow, landmarks)
            videos.append(np.ascontiguousarray(frames))
            flows.append(np.ascontiguousarray(flow))
            points.append(landmarks)
        device = runtime.device
        return {
            "video": _video_tensor(np.stack(videos), device),
            "flows": torch.from_numpy(np.stack(flows)).permute(0, 1, 4, 2, 3).to(device),
            "landmarks": torch.from_numpy(np.stack(points).astype(np.float32)).to(device),
        }

    def predict_batches(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime,
                        batch_size: int) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """Every sub-clip of every test video, centre-cropped; the loop averages a video's sub-clip scores."""
        for owners, items in _subclip_batches(inputs, rows, self.settings.clip_length, batch_size):
            yield owners, {"video": self._test_videos(inputs, items, runtime)}

    def predict_inputs(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        """The first sub-clip of each test video, centre-cropped."""
        return {"video": self._test_videos(inputs, [(int(r), 0) for r in rows], runtime)}

    def _test_videos(self, inputs: Mapping[str, np.ndarray], items: list[tuple[int, int]], runtime: Runtime) -> torch.Tensor:
        stored = inputs["frames"].shape[-1]
        size = self._crop_size(stored)
        offset = (stored - size) // 2
        clips = [self._clip(inputs, row, j, offset, offset, size, with_targets=False)[0] for row, j in items]
        return _video_tensor(np.stack(clips), runtime.device)

    # ------------------------------------------------------------------------------------- model and loss
    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor], training: bool) -> dict[str, Any]:
        return model(video=batch["video"])

    def logits(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return outputs["logits"]

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor], fold: FoldContext) -> LossTerms:
        """CE + λ_of·MSE(flow) [÷(T−1), code] + λ_ldm·landmark L1 / inter-pupil distance (terms of absent heads
        are left out)."""
        ce = F.cross_entropy(outputs["logits"].float(), batch["y"])
        terms, total = {"ce": ce}, ce
        if outputs.get("flow") is not None and self.settings.flow_weight > 0:
            flow = F.mse_loss(outputs["flow"].float(), batch["flows"].float())
            if self.settings.flow_divide_by_pairs:
                flow = flow / (self.settings.clip_length - 1)
            terms["flow"], total = flow, total + self.settings.flow_weight * flow
        if outputs.get("landmarks") is not None and self.settings.landmark_weight > 0:
            ldm = landmark_loss(outputs["landmarks"].float(), batch["landmarks"].float())
            terms["landmarks"], total = ldm, total + self.settings.landmark_weight * ldm
        return LossTerms(total, terms)

    # ----------------------------------------------------------------------------------- test-side extras
    def _aux_predictions(self, model: nn.Module, inputs: PredictInputs, items: list[tuple[int, int]],
                         runtime: Runtime) -> dict[str, torch.Tensor]:
        with torch.no_grad(), runtime.autocast():
            outputs = self.forward(model, {"video": self._test_videos(inputs, items, runtime)}, training=False)
        return {k: outputs[k].detach().float() for k in ("flow", "landmarks") if outputs.get(k) is not None}

    def auxiliary_metrics(self, model: nn.Module, inputs: PredictInputs, targets: Mapping[str, np.ndarray],
                          rows: np.ndarray, runtime: Runtime, batch_size: int) -> dict[str, np.ndarray]:
        """Per test video: flow EPE (pixels) against the TV-L1 targets and landmark NME (inter-ocular), averaged over
        its centre-cropped sub-clips and pairs. Predictions come from the inputs alone; targets only score them."""
        stored = inputs["frames"].shape[-1]
        size = self._crop_size(stored)
        offset = (stored - size) // 2
        sums: dict[str, np.ndarray] = {}
        counts = np.zeros(rows.size)
        for owners, items in _subclip_batches(inputs, rows, self.settings.clip_length, batch_size):
            predicted = self._aux_predictions(model, inputs, items, runtime)
            if not predicted:
                return {}
            for slot, (owner, (row, j)) in enumerate(zip(owners, items, strict=True)):
                flow, points = _target_clip(targets, int(inputs["n_frames"][row]), row, j, offset, size,
                                            self.settings.clip_length)
                values = {}
                if "flow" in predicted:
                    values["epe"] = float(endpoint_error(predicted["flow"][slot].cpu(),
                                                         torch.from_numpy(flow).permute(0, 3, 1, 2)).mean())
                if "landmarks" in predicted:
                    values["nme"] = float(landmark_nme(predicted["landmarks"][slot].cpu(), torch.from_numpy(points)).mean())
                for name, value in values.items():
                    sums.setdefault(name, np.zeros(rows.size))[owner] += value
                counts[owner] += 1
        return {name: (total / np.maximum(counts, 1)).astype(np.float64) for name, total in sums.items()}

    def report_extras(self, model: nn.Module, inputs: PredictInputs, rows: np.ndarray,
                      runtime: Runtime) -> dict[str, np.ndarray]:
        """The centre crop of sub-clip 0's last frame and the predicted last-pair flow and landmarks of each video."""
        items = [(int(r), 0) for r in rows]
        video = self._test_videos(inputs, items, runtime)
        predicted = self._aux_predictions(model, inputs, items, runtime)
        size = video.shape[-1]
        extras = {"faces": inputs_face(video), "flow": np.zeros((rows.size, 2, size, size), dtype=np.float16),
                  "landmarks": np.zeros((rows.size, N_LANDMARKS, 2), dtype=np.float32)}
        if "flow" in predicted:
            extras["flow"] = predicted["flow"][:, -1].cpu().numpy().astype(np.float16)
        if "landmarks" in predicted:
            extras["landmarks"] = predicted["landmarks"][:, -1].cpu().numpy()
        return extras

    @classmethod
    def make_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str]) -> dict[str, Any]:
        """Predicted flow magnitude and landmarks over up to 6 test faces (targets are not part of the extras:
        extras come from test inputs only; the EPE and NME in the metrics compare with the targets)."""
        faces = np.asarray(extras.get("faces", np.zeros((0,))))
        if faces.ndim != 3 or faces.shape[0] == 0:
            return {}
        import matplotlib.pyplot as plt

        shown = min(6, faces.shape[0])
        figure, axes = plt.subplots(2, shown, figsize=(2.2 * shown, 4.6), squeeze=False)
        for i in range(shown):
            axes[0, i].imshow(faces[i], cmap="gray")
            axes[0, i].scatter(*np.asarray(extras["landmarks"][i]).T, s=3, c="tab:red")
            axes[0, i].set_title(f"{extras['sample_ids'][i]}\n({extras['fold'][i]})", fontsize=7)
            magnitude = np.linalg.norm(np.asarray(extras["flow"][i], dtype=np.float32), axis=0)
            axes[1, i].imshow(magnitude, cmap="magma")
            for ax in axes[:, i]:
                ax.axis("off")
        axes[0, 0].set_ylabel("landmarks")
        figure.suptitle(title(f"{cls.report_figures['flow_landmarks']} ({shown}; top: landmarks, bottom: |flow|)"),
                        fontsize=9)
        figure.tight_layout()
        return {"flow_landmarks": figure}


def _target_clip(targets: Mapping[str, np.ndarray], n: int, row: int, j: int, offset: int, size: int,
                 clip_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Flow (P, S, S, 2) and landmark (P, 68, 2) targets of sub-clip ``j``, centre-cropped like the test input."""
    positions = subclip_frames(n, clip_length, j)
    flows = np.asarray(targets["flows"][row, subclip_flow_slots(n, clip_length, j)], dtype=np.float32)
    _, flows, points = crop_clip(np.zeros((1, 1, 1)), flows, targets["landmarks"][row, positions[1:]], offset, offset,
                                 size)
    return np.ascontiguousarray(flows), np.ascontiguousarray(points, dtype=np.float32)


def _subclip_batches(inputs: Mapping[str, np.ndarray], rows: np.ndarray, clip_length: int,
                     batch_size: int) -> Iterator[tuple[np.ndarray, list[tuple[int, int]]]]:
    """(positions into ``rows``, [(row, sub-clip j)]) batches covering every sub-clip of every video in ``rows``."""
    items = [(position, int(row), j) for position, row in enumerate(rows)
             for j in range(max(1, int(inputs["n_frames"][row]) // clip_length))]
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        yield np.array([p for p, _, _ in chunk], dtype=np.int64), [(r, j) for _, r, j in chunk]


def _video_tensor(clips: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(B, T, S, S) uint8 → (B, 1, T, S, S) float in [0, 1] (the model normalises with training statistics)."""
    return torch.from_numpy(np.ascontiguousarray(clips)).to(device).float().div_(255.0).unsqueeze(1)


def inputs_face(video: torch.Tensor) -> np.ndarray:
    """(B, 1, T, S, S) [0, 1] → (B, S, S) uint8 of the last frame."""
    return (video[:, 0, -1].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


# ------------------------------------------------------------------------------------------------ the model
@register_model("mol", task=MOLTask)
class MOL(nn.Module):
    """``forward(video)`` with video (B, 1, T, S, S) in [0, 1] → dict: logits (B, C), flow (B, T−1, 2, S, S) or None,
    landmarks (B, T−1, 68, 2) or None (frames 1..T−1, pixels of the S crop).

    Args (paper ablation tables in brackets):
        image_size: S (128). clip_length: T (8).
        flow_head / landmark_head: the auxiliary tasks [VIII: w/o flow, w/o landmarks, MER only].
        fcc: fcc | vertical (FCC-V) | horizontal (FCC-H) | transformer (vanilla) | none [IX, X]. ccc: on/off [IX].
        f5c_blocks: stacked F5C blocks, 1–3 [XI]. fusion: concat | add | subtract | first | last | all_frames [XII].
        ccc_axis: channels (paper) | positions (code). ccc_double_difference: the code's W2·(x∘n − 2x).
        ccc_project: the paper's 1×1 conv after CCC. fcc_fuse: the paper's fusing 1×1 conv after FCC's concat.
        ccc_k: neighbours (4). meta_kernel: FCC meta kernel length (32). flownet_width: FlowNet base width (64).
        pretrained: a local checkpoint (state dict) to start from; a classifier of another shape is left fresh.
        mer_dropout: p of the MER head's two dropouts (code: 0.5).
    """

    @classmethod
    def example_config(cls, size: int) -> dict[str, int]:
        """The task's example clips at ``size``, with a FlowNet an eighth as wide (keeps the contract tests light)."""
        return {"image_size": size, "flownet_width": 8}

    def __init__(self, num_classes: int, *, image_size: int = 128, clip_length: int = 8, flow_head: bool = True,
                 landmark_head: bool = True, fcc: str = "fcc", ccc: bool = True, f5c_blocks: int = 1,
                 fusion: str = "concat", ccc_axis: str = "channels", ccc_double_difference: bool = False,
                 ccc_project: bool = True, fcc_fuse: bool = True, ccc_k: int = 4, meta_kernel: int = 32,
                 flownet_width: int = 64, pretrained: str | None = None, mer_dropout: float = 0.5) -> None:
        super().__init__()
        if fcc not in (*FCC_KINDS, "none"):
            raise ValueError(f"fcc must be one of {(*FCC_KINDS, 'none')}, got {fcc!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if f5c_blocks < 1 and (fcc != "none" or ccc):
            raise ValueError("f5c_blocks must be >= 1 (switch F5C off with fcc: none, ccc: false)")
        if image_size % STRIDE:
            raise ValueError(f"image_size must be a multiple of {STRIDE}, got {image_size}")
        self.image_size, self.clip_length, self.fusion = image_size, clip_length, fusion
        size = _feature_size(image_size)
        if size != image_size // STRIDE:
            raise ValueError(f"image_size {image_size}: conv stack gives {size}, FlowNet {image_size // STRIDE}")
        channels = CONV_STACK[-1][1]
        self.norm = InputNorm()
        self.conv_stack = nn.Sequential(*[nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in CONV_STACK])
        options = {"fcc": None if fcc == "none" else fcc, "ccc": ccc, "meta_kernel": meta_kernel,
                   "fcc_fuse": fcc_fuse, "ccc_axis": ccc_axis, "ccc_k": ccc_k,
                   "ccc_double_difference": ccc_double_difference, "ccc_project": ccc_project}
        blocks = f5c_blocks if (fcc != "none" or ccc) else 0
        self.f5c_first = nn.Sequential(*[F5C(channels, size * size, **options) for _ in range(blocks)])
        self.f5c_second = nn.Sequential(*[F5C(channels, size * size, **options) for _ in range(blocks)])
        pairs = clip_length - 1
        self.mer_head = MERHead(channels, size, fused_steps(pairs, fusion), num_classes, dropout=mer_dropout)
        self.landmark_head = LandmarkHead(channels, size) if landmark_head else None
        self.flownet = FlowNetC(2 * channels, flownet_width) if flow_head else None
        if pretrained:
            self.load_pretrained(pretrained)

    def load_pretrained(self, path: str) -> None:
        """Load a local state dict (e.g. from the pretraining recipe in docs/models.md); tensors whose shape differs
        (a classifier for another label set) keep their fresh initialisation."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        own = self.state_dict()
        kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(kept, strict=False)

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor | None]:
        batch, _, length, height, width = video.shape
        if length != self.clip_length or (height, width) != (self.image_size, self.image_size):
            raise ValueError(f"MOL expects (B, 1, {self.clip_length}, {self.image_size}, {self.image_size}), "
                             f"got {tuple(video.shape)}")
        frames = self.norm(video).transpose(1, 2).reshape(batch * length, 1, height, width)
        features = self.conv_stack(frames)
        _, channels, h, w = features.shape
        features = features.view(batch, length, channels, h, w)
        pairs = length - 1
        first = self.f5c_first(features[:, :-1].reshape(batch * pairs, channels, h, w))
        second = self.f5c_second(features[:, 1:].reshape(batch * pairs, channels, h, w))
        shape = (batch, pairs, channels, h, w)
        logits = self.mer_head(fuse_pairs(first.view(shape), second.view(shape), self.fusion))
        landmarks = flow = None
        if self.landmark_head is not None:
            landmarks = self.landmark_head(second).view(batch, pairs, N_LANDMARKS, 2)
        if self.flownet is not None:
            encoded = [e.view(batch, length, *e.shape[1:]) for e in self.flownet.encode(frames)]
            enc_a = [e[:, :-1].reshape(batch * pairs, *e.shape[2:]) for e in encoded]
            enc_b = [e[:, 1:].reshape(batch * pairs, *e.shape[2:]) for e in encoded]
            clip = frames.view(batch, length, 1, height, width)
            flow = self.flownet(clip[:, :-1].reshape(batch * pairs, 1, height, width),
                                clip[:, 1:].reshape(batch * pairs, 1, height, width),
                                torch.cat([first, second], dim=1), (enc_a, enc_b))
            flow = flow.view(batch, pairs, 2, height, width)
        return {"logits": logits, "flow": flow, "landmarks": landmarks}
