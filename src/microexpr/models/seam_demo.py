"""A small demonstration model of the training seam (not a paper): every part a paper's model may need, in miniature.

It is the worked example of docs/adding-a-model.md and the model the seam's end-to-end test trains through
``kedro run --pipelines=seam_demo``. What it shows:

- **two features** in one bundle: the exact onset and apex from ``key_frames`` (model inputs) and the TV-L1 flow
  onset → apex from ``flow_onset_apex``, resized to the key-frame grid (a **training target**);
- a **training-only input**: the sample's FACS AUs as a multi-hot vector, fed to an AU encoder in training only;
  prediction never sees it (the honesty contract);
- **named loss terms**: cross-entropy, an auxiliary flow regression (MSE) and an alignment of the video embedding
  with the AU embedding (1 − cosine); total = ce + flow_weight · flow + align_weight · align;
- **geometric augmentation that moves the target**: one flip / rotation / translation for onset, apex and the flow
  target (a flip negates u);
- **two optimiser parameter groups**: the video network and the AU encoder (``au_lr_scale`` × lr);
- a **report extra**: the predicted flow magnitude over the first test faces (figure ``flow_prediction``).

Model: conv encoder on apex − onset (stride 4) → flow head (1×1 conv, upsampled ×4) and pooled embedding →
classifier; AU encoder: Linear → ReLU → Linear to the embedding size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from microexpr.models import register_model
from microexpr.training.augment import AugmentConfig, augment_batch, to_input_tensor
from microexpr.training.runtime import Runtime
from microexpr.training.sampling import exact_frame_index
from microexpr.training.task import FoldContext, InputSpec, LossTerms, PredictInputs, Streams, Task

__all__ = ["AU_VOCABULARY", "SeamDemoNet", "SeamDemoSettings", "SeamDemoTask", "au_multi_hot"]

# The 21 AUs of the CVA+FPF paper's AU vector (reference_models.md §2.1): a fixed vocabulary for the demo.
AU_VOCABULARY: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 16, 17, 18, 20, 23, 24, 25, 26, 28, 45)
FLOW_SIZE = 56  # side of the stored report thumbnails


def au_multi_hot(aus: Any, vocabulary: tuple[int, ...]) -> np.ndarray:
    """(len(vocabulary),) float32 0/1 of the AU numbers in ``aus`` (codes such as "12", "L12", "R4" → 12, 4)."""
    present = set()
    for code in list(aus) if aus is not None else []:
        digits = "".join(ch for ch in str(code) if ch.isdigit())
        if digits:
            present.add(int(digits))
    return np.array([1.0 if au in present else 0.0 for au in vocabulary], dtype=np.float32)


def resize_flow(flow: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 2) flow in pixels → (size, size, 2) with the vectors rescaled to the new pixel size."""
    height, width = flow.shape[:2]
    resized = cv2.resize(flow.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.stack([resized[..., 0] * (size / width), resized[..., 1] * (size / height)], axis=-1)


@dataclass(frozen=True)
class SeamDemoSettings:
    """``seam_demo.task``: loss weights, the AU encoder's learning-rate factor, augmentation, AU vocabulary."""

    flow_weight: float = 1.0
    align_weight: float = 0.5
    au_lr_scale: float = 0.5
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0))
    au_vocabulary: tuple[int, ...] = AU_VOCABULARY

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SeamDemoSettings:
        known = {"flow_weight", "align_weight", "au_lr_scale", "augment", "au_vocabulary"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"seam_demo.task got unknown key(s) {unknown}; accepted: {sorted(known)}")
        values = dict(params)
        if "augment" in values:
            values["augment"] = AugmentConfig.from_params(values["augment"])
        if "au_vocabulary" in values:
            values["au_vocabulary"] = tuple(int(a) for a in values["au_vocabulary"])
        settings = cls(**values)
        for name in ("flow_weight", "align_weight"):
            if getattr(settings, name) < 0:
                raise ValueError(f"seam_demo.task.{name} must be >= 0, got {getattr(settings, name)!r}")
        if settings.au_lr_scale <= 0:
            raise ValueError(f"seam_demo.task.au_lr_scale must be > 0, got {settings.au_lr_scale!r}")
        return settings


class SeamDemoTask(Task):
    """The demo's task (module docstring)."""

    features = ("key_frames", "flow_onset_apex")
    model_inputs = {"onset": InputSpec(arrays=("onset",)), "apex": InputSpec(arrays=("apex",))}
    targets = ("flow",)
    training_only = ("au",)
    settings_class = SeamDemoSettings
    report_figures = {"flow_prediction": "Predicted flow magnitude on test faces"}
    demonstration = True

    def bundle_settings(self) -> dict[str, Any]:
        return {"au_vocabulary": list(self.settings.au_vocabulary)}

    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        frames = features["key_frames"]
        sid = str(row["sample_id"])
        onset_slot = exact_frame_index(frames["onset_offsets"][None], [sid], "onset_offsets")[0]
        apex_slot = exact_frame_index(frames["apex_offsets"][None], [sid], "apex_offsets")[0]
        onset, apex = frames["onset_frames"][onset_slot], frames["apex_frames"][apex_slot]
        flow = resize_flow(np.asarray(features["flow_onset_apex"]["flow"])[..., :2], onset.shape[0])
        return {"onset": onset, "apex": apex, "flow": flow.astype(np.float32),
                "au": au_multi_hot(row["aus"], self.settings.au_vocabulary)}

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
        return {
            "onset": rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8),
            "apex": rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8),
            "flow": rng.normal(0, 1, size=(n, size, size, 2)).astype(np.float32),
            "au": (rng.random((n, len(AU_VOCABULARY))) < 0.2).astype(np.float32),
        }

    def _frames(self, arrays: Mapping[str, np.ndarray], rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        return {name: to_input_tensor(arrays[name][rows], spec.mean, spec.std, runtime.device, runtime.channels_last)
                for name, spec in self.model_inputs.items()}

    def train_batch(self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams,
                    runtime: Runtime) -> dict[str, torch.Tensor]:
        """Onset, apex and the flow target under one shared transform; the AU vector for the AU encoder."""
        rows = fold.train[batch_pos]
        frames = self._frames(fold.data.arrays, rows, runtime)
        flow = to_input_tensor(fold.data.arrays["flow"][rows], None, None, runtime.device)
        moved = augment_batch([frames["onset"], frames["apex"]], self.settings.augment, streams.augment, flows=[flow])
        au = torch.from_numpy(fold.data.arrays["au"][rows]).to(runtime.device)
        return {"onset": moved.images[0], "apex": moved.images[1], "flow": moved.flows[0], "au": au}

    def predict_inputs(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        return self._frames(inputs, rows, runtime)

    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor], training: bool) -> dict[str, torch.Tensor]:
        """The AU vector reaches the model in training only."""
        return model(onset=batch["onset"], apex=batch["apex"], au=batch["au"] if training else None)

    def logits(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return outputs["logits"]

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
             fold: FoldContext) -> LossTerms:
        ce = F.cross_entropy(outputs["logits"].float(), batch["y"])
        flow = F.mse_loss(outputs["flow"].float(), batch["flow"].float())
        video = F.normalize(outputs["embedding"].float(), dim=1)
        text = F.normalize(outputs["au_embedding"].float(), dim=1)
        has_aus = (batch["au"].sum(1) > 0).float()
        align = ((1.0 - (video * text).sum(1)) * has_aus).sum() / has_aus.sum().clamp(min=1.0)
        total = ce + self.settings.flow_weight * flow + self.settings.align_weight * align
        return LossTerms(total, {"ce": ce, "flow": flow, "align": align})

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        au_encoder = list(model.au_encoder.parameters())
        ids = {id(p) for p in au_encoder}
        video = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return [{"name": "video", "params": video},
                {"name": "au_encoder", "params": au_encoder, "lr_scale": self.settings.au_lr_scale}]

    def report_extras(self, model: nn.Module, inputs: PredictInputs, rows: np.ndarray,
                      runtime: Runtime) -> dict[str, np.ndarray]:
        """Predicted flow magnitude (FLOW_SIZE²) and an apex thumbnail per test sample."""
        with runtime.autocast():
            outputs = self.forward(model, self.predict_inputs(inputs, rows, runtime), training=False)
        flow = F.interpolate(outputs["flow"].float(), size=(FLOW_SIZE, FLOW_SIZE), mode="bilinear", align_corners=False)
        faces = np.stack([cv2.resize(inputs["apex"][row], (FLOW_SIZE, FLOW_SIZE), interpolation=cv2.INTER_AREA)
                          for row in rows])
        return {"flow_magnitude": flow.norm(dim=1).detach().cpu().numpy().astype(np.float16), "faces": faces}

    @classmethod
    def make_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str]) -> dict[str, Any]:
        from microexpr.evaluation.figures import attention_overlay_figure

        magnitude = np.asarray(extras.get("flow_magnitude", np.zeros((0, 0, 0))))
        if magnitude.ndim != 3 or magnitude.shape[0] == 0:
            return {}
        shown = min(8, magnitude.shape[0])
        captions = [f"{s} ({f})" for s, f in zip(extras["sample_ids"][:shown], extras["fold"][:shown], strict=True)]
        figure = attention_overlay_figure(list(extras["faces"][:shown]), [m.astype(np.float32) for m in magnitude[:shown]],
                                          captions, title=title(f"{cls.report_figures['flow_prediction']} ({shown})"))
        return {"flow_prediction": figure}


@register_model("seam_demo", task=SeamDemoTask)
class SeamDemoNet(nn.Module):
    """``forward(onset, apex, au=None)`` → dict: logits (B, C), flow (B, 2, H, W), embedding (B, D) and, when the
    AU vector is given (training only), au_embedding (B, D).

    Args:
        num_classes: classifier outputs. width: channels of the first conv (the second has 2 × width).
        embed_dim: size of the video and AU embeddings. n_aus: length of the AU vector (the task's vocabulary).
    """

    def __init__(self, num_classes: int, *, width: int = 16, embed_dim: int = 32, n_aus: int = len(AU_VOCABULARY)) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
        )
        self.flow_head = nn.Conv2d(2 * width, 2, 1)
        self.embed = nn.Linear(2 * width, embed_dim)
        self.classifier = nn.Linear(embed_dim, num_classes)
        self.au_encoder = nn.Sequential(nn.Linear(n_aus, embed_dim), nn.ReLU(inplace=True), nn.Linear(embed_dim, embed_dim))

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, au: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        features = self.encoder(apex - onset)
        flow = F.interpolate(self.flow_head(features), size=onset.shape[-2:], mode="bilinear", align_corners=False)
        embedding = self.embed(features.mean(dim=(2, 3)))
        outputs = {"logits": self.classifier(F.relu(embedding)), "flow": flow, "embedding": embedding}
        if au is not None:
            outputs["au_embedding"] = self.au_encoder(au)
        return outputs
