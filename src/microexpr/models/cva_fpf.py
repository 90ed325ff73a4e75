"""CVA-FPF: continuous vertical attention + Swin facial position focaliser + AU vector (paper 001).

No official code exists; the closest public code is the follow-up FaceSleuth repository, whose ``CCA_Y`` block is
this paper's CVA (../shared/reference/reference_models.md §2 says what it does and where it disagrees with the
paper). Three parts, summed or concatenated before the classifier:

- motion branch on ``apex - onset``: MMNet's stem (models/layers/stem.py), then four CVA blocks 128/128/256/512,
  strides 1/2/2/2 (conv3x3 -> BN -> ReLU -> conv1x1 -> BN + shortcut, ReLU; then an axis attention: average-pool
  along W, 1x1 reduce, BN, h-swish, 1x1 restore, sigmoid -> one weight per channel and row, "vertical"); the
  continuity product multiplies each map by the previous block's map, max-pooled (and 1x1-projected where the
  channels change) -> F_M, 512x14x14 at 224²;
- FPF: a Swin transformer (patch 4, embed 128, depths 2/2/6, heads 4/8/16, window 7; timm, random init) with
  shared weights on onset and apex, the two 512x14x14 maps summed -> E, added to F_M;
- head: the paper's "flatten, concatenate the 21-d AU vector, MLP" (``head="paper"``) or the code's
  fc1(flatten -> 512) -> concat AU -> BN -> ReLU -> fc2 -> BN -> fc3 (``head="code"``).

Where the AU vector comes from is the task's ``au_source``: ``predicted`` (default, honest: an AU head on the
pooled fused features, trained with BCE on the training fold's AU annotations), ``annotation`` (the paper's
test-time label leak, labelled ``au_leak`` everywhere) or ``none`` (no AU input, ``au_embedding=False``).

Every ablation of the paper's Tables 2-7 is a constructor argument (``attention``, ``continuity``, ``fpf``,
``fpf_input``, ``au_embedding``); paper-vs-code differences are arguments too (``attention_pooling``,
``attention_channels``, ``head``). docs/models.md, "CVA-FPF", lists every case and the default chosen.
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
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from microexpr.data.au import AU21_ORDER
from microexpr.models import register_model
from microexpr.models.layers.attention import ResidualBlock
from microexpr.models.layers.stem import STEM_CHANNELS, init_resnet_, motion_stem
from microexpr.models.mmnet import ATTENTION_SIZE, MMNetTask, PositionCalibration
from microexpr.training.augment import AugmentConfig
from microexpr.training.runtime import Runtime
from microexpr.training.sampling import validate_frames_config
from microexpr.training.task import Detections, FoldContext, InputSpec, LossTerms, PredictInputs, Streams

__all__ = [
    "AU_SOURCES",
    "AxisAttention",
    "CVABlock",
    "CVAFPF",
    "CVAFPFTask",
    "CVAFPFTaskSettings",
    "FacialPositionFocaliser",
    "au_head_accuracy",
    "au21_vector",
    "reduced_channels",
]

STAGE_CHANNELS = (128, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
TOTAL_STRIDE = 16  # stem 2 x stages 1*2*2*2; Swin: patch 4 x two patch mergings
N_AUS = len(AU21_ORDER)
HEAD_WIDTHS = (512, 128)  # fc1 and fc2 outputs (code)

# attention direction -> (gate per row from W-pooling, gate per column from H-pooling); paper Table 3
DIRECTIONS: dict[str, tuple[bool, bool]] = {"vertical": (True, False), "horizontal": (False, True),
                                            "both": (True, True), "none": (False, False)}
CONTINUITY = ("continuous", "independent")  # paper Table 4
POOLINGS = ("paper", "joint")  # paper Eq. 1: pool the attended axis only; code (CCA_Y): H- and W-pools share f1 + BN
ATTENTION_CHANNELS = ("paper", "code")  # bottleneck max{8, C/32} (paper) or 8 in every block (code)
FPF_KINDS = ("swin", "vit", "none")  # paper Tables 2 and 5
FPF_INPUTS = ("both", "onset", "apex")  # paper Table 6
HEADS = ("paper", "code")
BASELINE_BLOCKS = {"resnet18": 3, "cva_convs": 1}  # attention "none": ResNet18 BasicBlock (paper baseline) or CVA convs
AU_SOURCES = ("predicted", "annotation", "none")


def _choice(name: str, value: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"CVAFPF: {name}={value!r} is not one of {', '.join(map(repr, allowed))}")
    return value


def reduced_channels(channels: int, rule: str) -> int:
    """The attention bottleneck width: max{8, C/32} (paper, C = the block's output channels) or 8 (code)."""
    return max(8, channels // 32) if rule == "paper" else 8


def au21_vector(codes: Any) -> np.ndarray:
    """Binary float32 vector of the 21 AUs in the paper's order (AU21_ORDER) from a sample's parsed AU numbers
    (laterality and intensity already dropped by the parser; AUs outside the 21, e.g. AU38, are not representable)."""
    present = {int(c) for c in (codes if codes is not None else [])}
    return np.array([1.0 if au in present else 0.0 for au in AU21_ORDER], dtype=np.float32)


class AxisAttention(nn.Module):
    """Axis attention of the CVA block: per-channel weights for every row ("vertical") and/or column.

    The attended feature map is average-pooled along W (row descriptors, C x H) and/or along H (column
    descriptors, C x W); the descriptors run through a shared 1x1 reduce (``reduced`` channels, bias), BN and
    h-swish, then a 1x1 restore per axis and a sigmoid. ``pooling="joint"`` (the code's ``CCA_Y``, coordinate
    attention) always pools both axes through the shared reduce and BN, even when only the row gate is applied;
    ``"paper"`` pools only the attended axes (Eq. 1). Returns the gate, broadcastable to (B, C, H, W):
    (B, C, H, 1) vertical, (B, C, 1, W) horizontal, (B, C, H, W) both.
    """

    def __init__(self, channels: int, reduced: int, direction: str = "vertical", pooling: str = "paper") -> None:
        super().__init__()
        self.rows, self.columns = DIRECTIONS[_choice("attention", direction, DIRECTIONS)]
        if not (self.rows or self.columns):
            raise ValueError("AxisAttention needs a direction: vertical, horizontal or both")
        self.pool_rows = self.rows or _choice("attention_pooling", pooling, POOLINGS) == "joint"
        self.pool_columns = self.columns or pooling == "joint"
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.norm = nn.BatchNorm2d(reduced)
        self.act = nn.Hardswish()
        self.restore_rows = nn.Conv2d(reduced, channels, 1) if self.rows else None
        self.restore_columns = nn.Conv2d(reduced, channels, 1) if self.columns else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pools = []
        if self.pool_rows:
            pools.append(x.mean(dim=3, keepdim=True))  # (B, C, H, 1)
        if self.pool_columns:
            pools.append(x.mean(dim=2, keepdim=True).transpose(2, 3))  # (B, C, W, 1)
        hidden = self.act(self.norm(self.reduce(torch.cat(pools, dim=2))))
        parts = torch.split(hidden, [height] * self.pool_rows + [width] * self.pool_columns, dim=2)
        gate: torch.Tensor | None = None
        if self.rows:
            gate = torch.sigmoid(self.restore_rows(parts[0]))
        if self.columns:
            column_gate = torch.sigmoid(self.restore_columns(parts[-1])).transpose(2, 3)  # (B, C, 1, W)
            gate = column_gate if gate is None else gate * column_gate
        return gate


class CVABlock(nn.Module):
    """One CVA block: residual conv3x3 -> conv1x1 features re-weighted by an axis attention gate.

    ``forward(x, prior)`` -> ``(features * gate, gate)``. With ``continuous=True`` the gate is this block's axis
    attention times the previous block's gate, max-pooled (3, stride, 1) to this block's size and, where the
    channels change, projected by a 1x1 conv without bias (the code's ``conv2``/``conv3``); ``prior=None`` (the
    first block) or ``continuous=False`` (paper Table 4's "independent") skips the product.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, direction: str = "vertical",
                 pooling: str = "paper", reduced: int = 8, continuous: bool = True,
                 always_project_shortcut: bool = False) -> None:
        super().__init__()
        self.body = ResidualBlock(in_channels, out_channels, stride, 1, always_project_shortcut)
        self.attention = AxisAttention(out_channels, reduced, direction, pooling)
        self.continuous = continuous
        self.prior_pool = nn.MaxPool2d(3, stride=stride, padding=1) if stride > 1 else nn.Identity()
        self.prior_projection = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False) if continuous and in_channels != out_channels else None
        )

    def combine(self, gate: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """The continuity product of Eq. 1: this gate times g(previous gate)."""
        if not self.continuous or prior is None:
            return gate
        pooled = self.prior_pool(prior)
        if self.prior_projection is not None:
            pooled = self.prior_projection(pooled)
        return gate * pooled

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        gate = self.combine(self.attention(features), prior)
        return features * gate, gate


class FacialPositionFocaliser(nn.Module):
    """FPF: one encoder (shared weights) on the chosen frames, their (B, 512, g, g) maps summed.

    ``kind="swin"``: timm's SwinTransformer (patch 4, embed 128, depths 2/2/6, heads 4/8/16, mlp 4, qkv bias,
    drop path ``drop_path``, no classifier, random init), NHWC features -> NCHW. ``kind="vit"``: MMNet's position
    calibration ViT (paper Table 5's "FPF based on ViT"). ``frames``: both (paper), onset or apex (Table 6).
    """

    def __init__(self, kind: str, frames: str, image_size: int, window: int = 7, drop_path: float = 0.1,
                 vit_depth: int = 2, vit_heads: int = 4) -> None:
        super().__init__()
        self.frames = _choice("fpf_input", frames, FPF_INPUTS)
        if _choice("fpf", kind, FPF_KINDS) == "swin":
            self.encoder: nn.Module = SwinTransformer(
                img_size=image_size, patch_size=4, embed_dim=128, depths=(2, 2, 6), num_heads=(4, 8, 16),
                window_size=window, mlp_ratio=4.0, qkv_bias=True, drop_path_rate=drop_path, num_classes=0,
            )
            self.channels_last_output = True
        elif kind == "vit":
            self.encoder = PositionCalibration(image_size // TOTAL_STRIDE, STAGE_CHANNELS[-1], vit_depth, vit_heads)
            self.channels_last_output = False
        else:
            raise ValueError("FacialPositionFocaliser needs kind swin or vit")

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        if self.channels_last_output:
            return self.encoder.forward_features(frames).permute(0, 3, 1, 2)
        return self.encoder(frames)

    def forward(self, onset: torch.Tensor, apex: torch.Tensor) -> torch.Tensor:
        if self.frames == "onset":
            return self.encode(onset)
        if self.frames == "apex":
            return self.encode(apex)
        both = self.encode(torch.cat([onset, apex], dim=0))
        return both[: onset.shape[0]] + both[onset.shape[0]:]


class ClassifierHead(nn.Module):
    """The MLP after the fused map: ``paper`` concatenates the AU vector to the flattened map before fc1;
    ``code`` applies fc1 first and concatenates the AU vector to its 512 outputs. Both: fc1 -> [AU] -> BN1d ->
    ReLU -> fc2 -> BN1d -> fc3 (the code's layer order; BN behaves the same for any batch size)."""

    def __init__(self, kind: str, in_features: int, n_aus: int, num_classes: int) -> None:
        super().__init__()
        self.kind = _choice("head", kind, HEADS)
        first, second = HEAD_WIDTHS
        if kind == "paper":
            self.fc1 = nn.Linear(in_features + n_aus, first)
            self.bn1 = nn.BatchNorm1d(first)
            self.fc2 = nn.Linear(first, second)
        else:
            self.fc1 = nn.Linear(in_features, first)
            self.bn1 = nn.BatchNorm1d(first + n_aus)
            self.fc2 = nn.Linear(first + n_aus, second)
        self.bn2 = nn.BatchNorm1d(second)
        self.fc3 = nn.Linear(second, num_classes)

    def forward(self, flat: torch.Tensor, au: torch.Tensor | None) -> torch.Tensor:
        def joined(x: torch.Tensor) -> torch.Tensor:
            return x if au is None else torch.cat([x, au.to(x.dtype)], dim=1)

        hidden = self.fc1(joined(flat)) if self.kind == "paper" else joined(self.fc1(flat))
        hidden = self.fc2(torch.relu(self.bn1(hidden)))
        return self.fc3(self.bn2(hidden))


# ------------------------------------------------------------------------------------------------ training task
@dataclass(frozen=True)
class CVAFPFTaskSettings:
    """``cva_fpf.task``: ``augment`` and ``frames`` (as MMNet's task), ``au_source`` (predicted | annotation |
    none) and ``au_loss_weight`` (weight of the AU head's BCE under ``predicted``)."""

    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0))
    frames: dict[str, Any] = field(default_factory=lambda: validate_frames_config({"mode": "rise_fraction"}))
    au_source: str = "predicted"
    au_loss_weight: float = 1.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CVAFPFTaskSettings:
        known = ("augment", "frames", "au_source", "au_loss_weight")
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"cva_fpf.task got unknown key(s) {', '.join(map(repr, unknown))}; accepted: "
                             f"{', '.join(known)}")
        default = cls()
        augment = AugmentConfig.from_params({**default.augment.as_dict(), **dict(params.get("augment") or {})})
        frames = validate_frames_config(params["frames"]) if "frames" in params else default.frames
        source = str(params.get("au_source", default.au_source))
        if source not in AU_SOURCES:
            raise ValueError(f"cva_fpf.task.au_source={source!r} is not one of {', '.join(AU_SOURCES)}")
        weight = float(params.get("au_loss_weight", default.au_loss_weight))
        if weight < 0:
            raise ValueError(f"cva_fpf.task.au_loss_weight must be >= 0, got {weight!r}")
        return cls(augment, frames, source, weight)


class CVAFPFTask(MMNetTask):
    """MMNet's key-frame task (frame jitter, shared augmentation, exact frames at test) plus the AU vector.

    Arrays: ``au_target`` (a target: never readable at prediction): the sample's annotated AUs from its own
    sample-index row (so joined on the sample's key, never by position), the AU head's BCE target under
    ``predicted``, and what its test decisions are scored against (``auxiliary_metrics``). ``au_input`` (the
    model input ``au``): the annotated AUs under ``annotation`` (the paper's leak) and zeros under ``predicted``
    / ``none``, so the annotations are not in any array prediction can read unless the run is labelled
    ``au_leak``. ``forward`` passes ``au`` to the model only under ``annotation``.
    """

    model_inputs = {
        **MMNetTask.model_inputs,
        "au": InputSpec(arrays=("au_input",), kind="vector", channels=None, mean=None, std=None, geometric=False,
                        colour=False),
    }
    targets = ("au_target",)  # the AU head's BCE target; also scores its test decisions (auxiliary_metrics)
    settings_class = CVAFPFTaskSettings
    report_figures = {"vertical_attention": "First CVA block: row weights beside test faces",
                      "au_predictions": "Predicted AU probabilities of test faces",
                      "au_head_accuracy": "AU head accuracy per AU vs the annotated AUs (p ≥ 0.5)"}

    # ------------------------------------------------------------------------------------ labels
    def run_tags(self) -> dict[str, str]:
        return {"au_source": self.settings.au_source}

    def leak(self) -> str | None:
        return "au_leak" if self.settings.au_source == "annotation" else None

    # ------------------------------------------------------------------------------------ bundle
    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        arrays = super().sample_arrays(row, features)
        annotated = au21_vector(row["au_codes"])
        arrays["au_target"] = annotated
        arrays["au_input"] = annotated.copy() if self.settings.au_source == "annotation" else np.zeros_like(annotated)
        return arrays

    def input_sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]
                            ) -> dict[str, np.ndarray]:
        """A new clip's model inputs (``microexpr predict``). Under ``au_source: annotation`` the model was trained
        on annotated AUs, which a new clip does not have: feeding zeros would mis-predict silently, so refuse."""
        if self.settings.au_source == "annotation":
            raise ValueError(
                f"cva_fpf: this model was trained with task.au_source=annotation (au_leak): it reads the clip's "
                f"annotated AUs, which a new clip ({row.get('sample_id', '?')}) does not have. Predict with a model "
                "trained under au_source: predicted (the default) or none."
            )
        return super().input_sample_arrays(row, features)

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
        arrays = super().example_arrays(n, n_classes, rng, size)
        arrays["au_target"] = (rng.random((n, N_AUS)) < 0.2).astype(np.float32)
        arrays["au_input"] = np.zeros((n, N_AUS), dtype=np.float32)  # the default au_source: predicted
        return arrays

    def bundle_settings(self) -> dict[str, Any]:
        return {"au_input": "annotation" if self.settings.au_source == "annotation" else "zeros"}

    # ------------------------------------------------------------------------------------ batches
    def train_batch(self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams,
                    runtime: Runtime) -> dict[str, torch.Tensor]:
        batch = super().train_batch(fold, batch_pos, streams, runtime)
        rows = fold.train[batch_pos]
        batch["au"] = torch.from_numpy(fold.data.arrays["au_input"][rows]).to(runtime.device)
        batch["au_target"] = torch.from_numpy(fold.data.arrays["au_target"][rows]).to(runtime.device)
        return batch

    def predict_inputs(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        batch = super().predict_inputs(inputs, rows, runtime)
        batch["au"] = torch.from_numpy(inputs["au_input"][rows]).to(runtime.device)
        return batch

    def _check_model(self, model: nn.Module) -> None:
        has_au = bool(getattr(model, "au_embedding", True))
        if has_au != (self.settings.au_source != "none"):
            raise ValueError(
                f"cva_fpf: task.au_source={self.settings.au_source!r} needs model.au_embedding="
                f"{self.settings.au_source != 'none'} (got {has_au}); set both (docs/models.md, CVA-FPF)"
            )

    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor], training: bool) -> Any:
        """The model on onset and apex; the AU input only under ``annotation`` (else the model predicts it)."""
        self._check_model(model)
        au = batch["au"] if self.settings.au_source == "annotation" else None
        return model(onset=batch["onset"], apex=batch["apex"], au=au)

    def loss(self, outputs: Any, batch: Mapping[str, torch.Tensor], fold: FoldContext) -> LossTerms:
        """Cross-entropy, plus ``au_loss_weight`` x the AU head's BCE on the training annotations (predicted)."""
        ce = F.cross_entropy(outputs["logits"].float(), batch["y"])
        if self.settings.au_source != "predicted":
            return LossTerms(ce, {"ce": ce})
        bce = F.binary_cross_entropy_with_logits(outputs["au_logits"].float(), batch["au_target"].float())
        return LossTerms(ce + self.settings.au_loss_weight * bce, {"ce": ce, "au_bce": bce})

    def logits(self, outputs: Any) -> torch.Tensor:
        return outputs["logits"]

    def auxiliary_metrics(self, model: nn.Module, inputs: PredictInputs, targets: Mapping[str, np.ndarray],
                          rows: np.ndarray, runtime: Runtime, batch_size: int) -> dict[str, Detections]:
        """Under ``predicted``: the AU head's decision (p >= 0.5) on each test sample in ``rows`` for each of the 21
        AUs (``AU1`` ... ``AU45``, AU21_ORDER), computed from the test inputs alone, with the annotated AUs
        (``au_target``) to score it. Nothing under ``annotation`` / ``none`` (no AU head is trained)."""
        if self.settings.au_source != "predicted":
            return {}
        probs = np.zeros((rows.size, N_AUS), dtype=np.float64)
        counts = np.zeros(rows.size, dtype=np.int64)
        for owners, batch in self.predict_batches(inputs, rows, runtime, batch_size):
            with runtime.autocast():
                outputs = model(onset=batch["onset"], apex=batch["apex"], au=None)
            np.add.at(probs, owners, torch.sigmoid(outputs["au_logits"].float()).cpu().numpy())
            np.add.at(counts, owners, 1)
        predicted = probs / np.maximum(counts, 1)[:, None] >= 0.5
        annotated = np.asarray(targets["au_target"])[rows] > 0.5
        return {f"AU{au}": Detections(predicted[:, i], annotated[:, i]) for i, au in enumerate(AU21_ORDER)}

    # ------------------------------------------------------------------------------------ report
    def report_extras(self, model: nn.Module, inputs: PredictInputs, rows: np.ndarray,
                      runtime: Runtime) -> dict[str, np.ndarray]:
        """Onset thumbnails, the first block's row profile (gate averaged over channels and columns) and, under
        ``predicted``, the AU head's probabilities of each test sample in ``rows`` (test inputs only)."""
        choice = self._exact(inputs, inputs.sample_id[rows], rows)["onset"]
        faces = np.stack([
            cv2.resize(inputs["onset_frames"][row, slot], (ATTENTION_SIZE, ATTENTION_SIZE), interpolation=cv2.INTER_AREA)
            for row, slot in zip(rows, choice, strict=True)
        ])
        batch = self.predict_inputs(inputs, rows, runtime)
        au = batch["au"] if self.settings.au_source == "annotation" else None
        with torch.inference_mode(), runtime.autocast():
            outputs = model(onset=batch["onset"], apex=batch["apex"], au=au, return_attention=True)
        maps = outputs["attention"]
        profile = np.zeros((rows.size, 0), dtype=np.float16)
        if maps and maps[0].shape[-2] > 1:
            profile = maps[0].float().mean(dim=(1, 3)).cpu().numpy().astype(np.float16)
        au_probs = np.zeros((rows.size, 0), dtype=np.float16)
        if self.settings.au_source == "predicted":
            au_probs = torch.sigmoid(outputs["au_logits"].float()).cpu().numpy().astype(np.float16)
        return {"faces": faces, "row_profile": profile, "au_probs": au_probs}

    @classmethod
    def make_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str]) -> dict[str, Any]:
        """Row profiles beside up to 8 test faces (attention with rows), the AU probabilities (``predicted``)."""
        from matplotlib.figure import Figure

        figures: dict[str, Any] = {}
        profiles = np.asarray(extras.get("row_profile", np.zeros((0, 0))), dtype=np.float32)
        captions = [f"{s} ({f})" for s, f in zip(extras.get("sample_ids", []), extras.get("fold", []), strict=False)]
        if profiles.ndim == 2 and profiles.shape[0] and profiles.shape[1]:
            shown = min(8, profiles.shape[0])
            figure = Figure(figsize=(2.6 * shown, 3.2), layout="constrained")
            axes = figure.subplots(1, 2 * shown, width_ratios=[3, 1] * shown, squeeze=False)[0]
            for i in range(shown):
                face_ax, profile_ax = axes[2 * i], axes[2 * i + 1]
                face_ax.imshow(extras["faces"][i])
                face_ax.set_axis_off()
                face_ax.set_title(captions[i] if i < len(captions) else "", fontsize=7)
                rows = np.linspace(0, 1, profiles.shape[1])
                profile_ax.plot(profiles[i], rows)
                profile_ax.set_ylim(1, 0)
                profile_ax.set_yticks([])
                profile_ax.tick_params(labelsize=6)
            figure.suptitle(title(f"{cls.report_figures['vertical_attention']} ({shown})"), fontsize=9)
            figures["vertical_attention"] = figure
        probs = np.asarray(extras.get("au_probs", np.zeros((0, 0))), dtype=np.float32)
        if probs.ndim == 2 and probs.shape[0] and probs.shape[1] == N_AUS:
            figure = Figure(figsize=(8, 0.4 * probs.shape[0] + 1.5), layout="constrained")
            ax = figure.subplots()
            image = ax.imshow(probs, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks(range(N_AUS), [f"AU{a}" for a in AU21_ORDER], rotation=90, fontsize=7)
            ax.set_yticks(range(probs.shape[0]), captions[: probs.shape[0]], fontsize=7)
            figure.colorbar(image, ax=ax)
            ax.set_title(title(cls.report_figures["au_predictions"]), fontsize=9)
            figures["au_predictions"] = figure
        return figures

    @classmethod
    def make_annotated_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str],
                                      annotations: pd.DataFrame) -> dict[str, Any]:
        """``make_report_figures`` plus, under ``predicted``, the AU head's accuracy per AU against the shown test
        samples' annotated AUs (joined after prediction: evaluation only, never an input)."""
        figures = cls.make_report_figures(extras, title)
        probs = np.asarray(extras.get("au_probs", np.zeros((0, 0))), dtype=np.float32)
        if probs.ndim == 2 and probs.shape[0] and probs.shape[1] == N_AUS and len(annotations) == probs.shape[0]:
            targets = np.stack([au21_vector(codes) for codes in annotations["au_codes"]])
            table = au_head_accuracy(probs, targets)
            figures["au_head_accuracy"] = _au_accuracy_figure(
                table, title(f"{cls.report_figures['au_head_accuracy']}, {probs.shape[0]} test faces"))
        return figures


def au_head_accuracy(probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> pd.DataFrame:
    """Per AU (AU21_ORDER): how many samples carry it (``n_present``), the accuracy of ``probs >= threshold``
    against ``targets`` (both (N, 21)) and the accuracy of always answering "absent" (``absent_baseline``)."""
    predicted = np.asarray(probs) >= threshold
    present = np.asarray(targets) > 0.5
    return pd.DataFrame({
        "au": [f"AU{a}" for a in AU21_ORDER],
        "n_present": present.sum(axis=0).astype(np.int64),
        "accuracy": (predicted == present).mean(axis=0),
        "absent_baseline": 1.0 - present.mean(axis=0),
    })


def _au_accuracy_figure(table: pd.DataFrame, title: str):
    """Bars: the AU head's accuracy per AU; ticks: the always-absent baseline; labels: samples carrying the AU."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2), layout="constrained")
    ax = figure.subplots()
    x = np.arange(len(table))
    ax.bar(x, table["accuracy"], color="tab:blue", label="AU head (p ≥ 0.5)")
    ax.scatter(x, table["absent_baseline"], marker="_", s=120, color="black", label="always absent")
    ax.set_xticks(x, [f"{a}\n({n})" for a, n in zip(table["au"], table["n_present"], strict=True)], fontsize=6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{title}; mean {table['accuracy'].mean():.3f} (always absent {table['absent_baseline'].mean():.3f})",
                 fontsize=8)
    return figure


@register_model("cva_fpf", task=CVAFPFTask)
class CVAFPF(nn.Module):
    """CVA-FPF and its ablations; ``forward(onset, apex, au=None)`` -> {"logits", "au_logits"}.

    Args:
        num_classes: classifier outputs.
        attention: vertical (paper) | horizontal | both (Table 3) | none (Table 2's ResNet-18 baseline blocks).
        continuity: continuous (paper) | independent (Table 4).
        attention_pooling: paper (pool the attended axis only, Eq. 1) | joint (code ``CCA_Y``: H- and W-pools
            through one shared reduce + BN, only the row gate applied).
        attention_channels: paper (bottleneck max{8, C/32}) | code (8 in every block).
        baseline_block: block when ``attention="none"``: resnet18 (conv3x3 + conv3x3) | cva_convs (conv3x3 + 1x1).
        always_project_shortcut: 1x1 conv + BN shortcut also in the shape-keeping first block (paper Eq. 2 read
            literally); False = identity there (code).
        fpf: swin (paper) | vit (MMNet's position-calibration ViT, Table 5) | none (Table 2).
        fpf_input: both (paper) | onset | apex (Table 6).
        swin_window, swin_drop_path: Swin window (7) and stochastic depth (0.1).
        vit_depth, vit_heads: the ViT FPF (MMNet's 2 and 4).
        au_embedding: concatenate a 21-d AU vector in the head (Tables 2 and 7). With it the model also has an
            AU head (Linear 512 -> 21 on the spatially averaged fused map): ``forward(au=None)`` feeds its sigmoid
            (``au_source: predicted``); a given ``au`` is used instead (``annotation``).
        head: paper (concat AU, then the MLP) | code (fc1 first, then concat AU).
        image_size: input side, a multiple of 16 (fc1's input is 512 x (image_size/16)²).
    """

    consumes = ("onset", "apex")

    @classmethod
    def example_config(cls, size: int) -> dict[str, int]:
        """Constructor options for ``size``² inputs (the task's example arrays, quick tests)."""
        return {"image_size": size}

    def __init__(
        self,
        num_classes: int,
        *,
        attention: str = "vertical",
        continuity: str = "continuous",
        attention_pooling: str = "paper",
        attention_channels: str = "paper",
        baseline_block: str = "resnet18",
        always_project_shortcut: bool = False,
        fpf: str = "swin",
        fpf_input: str = "both",
        swin_window: int = 7,
        swin_drop_path: float = 0.1,
        vit_depth: int = 2,
        vit_heads: int = 4,
        au_embedding: bool = True,
        head: str = "paper",
        image_size: int = 224,
    ) -> None:
        super().__init__()
        self.attention = _choice("attention", attention, DIRECTIONS)
        _choice("continuity", continuity, CONTINUITY)
        _choice("attention_pooling", attention_pooling, POOLINGS)
        _choice("attention_channels", attention_channels, ATTENTION_CHANNELS)
        _choice("baseline_block", baseline_block, BASELINE_BLOCKS)
        _choice("fpf", fpf, FPF_KINDS)
        _choice("head", head, HEADS)
        if image_size < TOTAL_STRIDE or image_size % TOTAL_STRIDE:
            raise ValueError(f"CVAFPF: image_size must be a positive multiple of {TOTAL_STRIDE}, got {image_size!r}")
        self.image_size = image_size
        self.au_embedding = bool(au_embedding)
        grid = image_size // TOTAL_STRIDE

        self.stem = motion_stem(STEM_CHANNELS)
        in_channels = (STEM_CHANNELS[1], *STAGE_CHANNELS[:-1])
        blocks: list[nn.Module] = []
        for c_in, c_out, stride in zip(in_channels, STAGE_CHANNELS, STAGE_STRIDES, strict=True):
            if attention == "none":
                blocks.append(ResidualBlock(c_in, c_out, stride, BASELINE_BLOCKS[baseline_block],
                                            always_project_shortcut))
            else:
                blocks.append(CVABlock(c_in, c_out, stride, attention, attention_pooling,
                                       reduced_channels(c_out, attention_channels), continuity == "continuous",
                                       always_project_shortcut))
        self.blocks = nn.ModuleList(blocks)
        init_resnet_([*self.stem[3:].modules(), *self.blocks.modules()])

        self.focaliser = (
            FacialPositionFocaliser(fpf, fpf_input, image_size, swin_window, swin_drop_path, vit_depth, vit_heads)
            if fpf != "none" else None
        )
        n_aus = N_AUS if self.au_embedding else 0
        self.au_head = nn.Linear(STAGE_CHANNELS[-1], N_AUS) if self.au_embedding else None
        self.head = ClassifierHead(head, STAGE_CHANNELS[-1] * grid * grid, n_aus, num_classes)

    def _check_inputs(self, onset: torch.Tensor, apex: torch.Tensor, au: torch.Tensor | None) -> None:
        expected = (3, self.image_size, self.image_size)
        for name, frame in (("onset", onset), ("apex", apex)):
            if frame.ndim != 4 or tuple(frame.shape[1:]) != expected:
                raise ValueError(f"CVAFPF: {name} must have shape (B, {', '.join(map(str, expected))}), "
                                 f"got {tuple(frame.shape)}")
        if au is not None:
            if not self.au_embedding:
                raise ValueError("CVAFPF: an AU vector was given to a model built with au_embedding=False")
            if tuple(au.shape) != (onset.shape[0], N_AUS):
                raise ValueError(f"CVAFPF: au must have shape (B, {N_AUS}), got {tuple(au.shape)}")

    def forward(self, onset: torch.Tensor, apex: torch.Tensor, au: torch.Tensor | None = None,
                return_attention: bool = False) -> dict[str, Any]:
        """{"logits": (B, C), "au_logits": (B, 21) when au_embedding, "attention": the per-block gates when
        ``return_attention`` (e.g. (B, 128, 112, 1) ... (B, 512, 14, 1) for vertical attention at 224²)}."""
        self._check_inputs(onset, apex, au)
        features = self.stem(apex - onset)
        gates: list[torch.Tensor] = []
        prior: torch.Tensor | None = None
        for block in self.blocks:
            if isinstance(block, CVABlock):
                features, prior = block(features, prior)
                gates.append(prior)
            else:
                features = block(features)
        if self.focaliser is not None:
            features = features + self.focaliser(onset, apex)
        outputs: dict[str, Any] = {}
        if self.au_head is not None:
            outputs["au_logits"] = self.au_head(features.mean(dim=(2, 3)))
            if au is None:
                au = torch.sigmoid(outputs["au_logits"])
        outputs["logits"] = self.head(torch.flatten(features, 1), au)
        if return_attention:
            outputs["attention"] = tuple(gates)
        return outputs
