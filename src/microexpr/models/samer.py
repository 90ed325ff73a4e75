"""SAMER: "Mimicking the annotation process" (Yang et al., MM'22; paper 002, reference code
Justin900429/mimicking-annotation-micro-expression-recognition, which names the model SAMER).

Input: the composite of preprocess feature ``samer_inputs`` (3×S×S: grey magnified apex, On-A, Off-A flow
magnitudes), cut in two: eyes = the top half, mouth = the bottom half (3×S/2×S each, 3×112×224 at S = 224).

Model (reference_models.md §3.2; docs/models.md "SAMER"):

- ResNet18 (timm's ResNet / BasicBlock) with a **per-group shuffle attention** (``GroupShuffleAttention``) after
  ``bn2`` of every block, before the residual add: groups G = 4, each with its own channel and spatial weights, a
  gate across the groups (softmax in the code; ``sa_gate: sigmoid`` is SA-Net's gate), channel shuffle 2;
- shared **base** (conv1 … layer2, dropout 0.2 after layer1 and layer2) → 128×14×28 per half;
- separate **eyes** and **mouth branches** (layer3, dropout 0.2, layer4, global average pool, L2-normalise) → 512;
- **AWM**: w = sigmoid(LN(Linear(ReLU(Drop(LN(Linear(cat)))))) on the (detached) concatenation, X_F = cat ⊙ w;
  the contrastive feature is L2norm(X_F) (dropout 0.1 in training); ``awm: false`` concatenates only;
- two heads Linear(512,512)–LN–ReLU–Drop 0.3–Linear(512,C); the prediction fuses them (``fusion``).

``branches: sb`` is the paper's single-branch ablation: one ResNet18 on the whole image (the halves stacked
again), its pooled L2-normalised output is the AU feature, one head.

Its training task (``SamerTask``): L = (1−λ)·L_cls + λ·L_wscl (λ = 0.3) with L_cls = class-weighted,
label-smoothed cross-entropy of each head; WSCL on the contrastive feature with Jaccard similarities of the AU
sets (a training-only array, never seen at prediction); Region Replacing (the mouth half from a random same-class
training-fold sample, AU target = the union), flip and random erasing; ImageNet normalisation. Initial weights:
``pretrained: none | imagenet | <file>`` (never downloaded; ``imagenet`` reads timm's or torchvision's local cache).
"""

from __future__ import annotations

import math
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from microexpr.models import register_model
from microexpr.training.augment import IMAGENET_MEAN, IMAGENET_STD, to_input_tensor
from microexpr.training.runtime import Runtime
from microexpr.training.task import FoldContext, InputSpec, LossTerms, PredictInputs, Streams, Task, TrainData

__all__ = [
    "AU_SLOTS",
    "SAMER",
    "GroupShuffleAttention",
    "SamerTask",
    "SamerTaskSettings",
    "au_slots",
    "class_weights",
    "jaccard_similarity",
    "load_resnet18_weights",
    "random_erasing",
    "region_partners",
    "wscl_loss",
]

AU_SLOTS = 100  # the reference's AU one-hot: slot = AU number (1..99), laterality and intensity dropped
FEATURE_DIM = 512
SA_GATES = ("softmax", "sigmoid")
FUSIONS = ("softmax", "logits")
BRANCHES = ("db", "sb")
SELF_PAIRS = ("exclude", "include")
TIMM_CACHE_REPO = "timm/resnet18.tv_in1k"  # torchvision's ImageNet ResNet18 (resnet18-f37072fd), as the reference
TORCHVISION_FILE = "resnet18-f37072fd.pth"


# --------------------------------------------------------------------------------------------------- layers
class GroupShuffleAttention(nn.Module):
    """Shuffle attention with per-group parameters (the Mimicking paper §3.3; reference ``group_sa_layer``).

    The C channels are cut into ``groups`` groups, each into a channel half (global-average-pooled, scaled and
    shifted) and a spatial half (GroupNorm, scaled and shifted); every group has its own scale/shift of shape
    (C/2G,). The gate normalises across the groups (``softmax``, the code) or per value (``sigmoid``, SA-Net's);
    the halves are re-joined and the channels shuffled with 2 groups. Parameters: 2.25·C.
    """

    def __init__(self, channels: int, groups: int = 4, gate: str = "softmax", device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        if channels % (2 * groups):
            raise ValueError(f"GroupShuffleAttention: channels {channels} must be divisible by 2 x groups {groups}")
        if gate not in SA_GATES:
            raise ValueError(f"SAMER: sa_gate={gate!r} is not one of {SA_GATES}")
        half = channels // (2 * groups)
        self.groups, self.gate = groups, gate
        shape, like = (1, groups, half, 1, 1), {"device": device, "dtype": dtype}  # timm passes device / dtype
        self.cweight = nn.Parameter(torch.zeros(shape, **like))
        self.cbias = nn.Parameter(torch.ones(shape, **like))
        self.sweight = nn.Parameter(torch.zeros(shape, **like))
        self.sbias = nn.Parameter(torch.ones(shape, **like))
        self.gn = nn.GroupNorm(half, half, **like)

    def _gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1) if self.gate == "softmax" else torch.sigmoid(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        grouped = x.reshape(b, self.groups, c // self.groups, h, w)
        channel, spatial = grouped.chunk(2, dim=2)
        pooled = channel.mean(dim=(3, 4), keepdim=True) * self.cweight + self.cbias
        normed = self.gn(spatial.reshape(b * self.groups, -1, h, w)).reshape(spatial.shape)
        normed = normed * self.sweight + self.sbias
        out = torch.cat([channel * self._gate(pooled), spatial * self._gate(normed)], dim=2).reshape(b, c, h, w)
        return out.reshape(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)  # channel shuffle, 2 groups


def _resnet18(sa_groups: int, sa_gate: str) -> ResNet:
    """timm's ResNet18 with the group shuffle attention in every BasicBlock, torchvision's init (no zero-init)."""
    attention = partial(GroupShuffleAttention, groups=sa_groups, gate=sa_gate)
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=0, zero_init_last=False, block_args={"attn_layer": attention})


def _head(num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(FEATURE_DIM, FEATURE_DIM), nn.LayerNorm(FEATURE_DIM), nn.ReLU(inplace=True),
                         nn.Dropout(dropout), nn.Linear(FEATURE_DIM, num_classes))


# ------------------------------------------------------------------------------------------ initial weights
def _cached_imagenet_file() -> Path | None:
    """ImageNet ResNet18 weights already on this machine: timm's Hugging Face cache, then torchvision's hub
    cache. Never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        try_to_load_from_cache = None
    if try_to_load_from_cache is not None:
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(TIMM_CACHE_REPO, filename)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints" / TORCHVISION_FILE
    return hub if hub.is_file() else None


def load_resnet18_weights(source: str) -> dict[str, torch.Tensor] | None:
    """The ResNet18 state dict ``pretrained`` names: ``none`` → None; ``imagenet`` → the local cache (an error
    saying how to get the file when it is absent); any other value → that file (.safetensors, .pth, .pt)."""
    if source in (None, "none"):
        return None
    if source == "imagenet":
        path = _cached_imagenet_file()
        if path is None:
            raise FileNotFoundError(
                "SAMER: pretrained=imagenet, but no ImageNet ResNet18 weights are cached on this machine and nothing "
                f"is downloaded at run time. Fetch them once with network access, e.g. `python -c \"import timm; "
                f"timm.create_model('{TIMM_CACHE_REPO.split('/')[1]}', pretrained=True)\"` (or put torchvision's "
                f"{TORCHVISION_FILE} in $TORCH_HOME/hub/checkpoints), set pretrained to a weights file path, or set "
                "samer.task.pretrained: none"
            )
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"SAMER: pretrained weights file {path} does not exist (or set pretrained: none)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    return {k.removeprefix("module."): v for k, v in state.items()}


# ---------------------------------------------------------------------------------------------------- model
def au_slots(aus: Any) -> np.ndarray:
    """(AU_SLOTS,) uint8 multi-hot of the AU numbers in an index row's canonical AU items ("L12", "R6|or1",
    "ref(7B)", "4?" → 12, 6, 7, 4): laterality, intensity and markers dropped, as the reference's regex does."""
    slots = np.zeros(AU_SLOTS, dtype=np.uint8)
    for item in list(aus) if aus is not None else []:
        match = re.search(r"\d+", str(item).split("|")[0])
        if match and 0 < int(match.group()) < AU_SLOTS:
            slots[int(match.group())] = 1
    return slots


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """w_c = max_k n_k / n_c over the training fold (paper Eq. 6); 0 for a class absent from it."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, counts.max() / np.where(counts > 0, counts, 1.0), 0.0).astype(np.float32)


def jaccard_similarity(au: torch.Tensor) -> torch.Tensor:
    """(B, B) w_ij = |AU_i ∩ AU_j| / |AU_i ∪ AU_j| of multi-hot AU sets (paper Eq. 4); 0 where both are empty."""
    sets = (au > 0).float()
    inter = sets @ sets.T
    union = sets.sum(1, keepdim=True) + sets.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1.0), torch.zeros_like(inter))


def wscl_loss(features: torch.Tensor, similarity: torch.Tensor, temperature: float, self_pair: str) -> torch.Tensor:
    """Weighted supervised contrastive loss (paper Eq. 5), averaged over the anchors that have a positive weight.

    log p_ij = z_i·z_j/τ − log Σ_{k≠i} exp(z_i·z_k/τ) (the anchor is left out of the denominator, as SupCon and
    the code do). ``self_pair``: ``exclude`` = the paper's 1{i≠j} (the numerator and its normaliser Σ_j w_ij run
    over j ≠ i); ``include`` = the code (j = i counted with w_ii, 1 for a sample with AUs).
    """
    if self_pair not in SELF_PAIRS:
        raise ValueError(f"SAMER: self_pair={self_pair!r} is not one of {SELF_PAIRS}")
    n = features.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=features.device)
    logits = (features.float() @ features.float().T) / temperature
    log_denominator = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    log_prob = logits - log_denominator
    weights = similarity.float()
    if self_pair == "exclude":
        weights = weights.masked_fill(eye, 0.0)
    norm = weights.sum(1)
    anchors = norm > 0
    if n < 2 or not anchors.any():
        return features.sum() * 0.0
    per_anchor = -(weights * log_prob).sum(1)[anchors] / norm[anchors]
    return per_anchor.mean()


@dataclass(frozen=True)
class SamerTaskSettings:
    """``samer.task`` (docs/models.md, "SAMER"). ``wscl_weight`` = λ; ``au_alignment: false`` trains with L_cls
    alone (Table 4's rows without "AU"); ``region_replacing`` = the probability of RR (0 = off); ``hflip``,
    ``erasing`` (probability), ``erasing_scale``, ``erasing_ratio``: torchvision's RandomErasing with random
    values; ``pretrained``: none | imagenet | a weights file."""

    wscl_weight: float = 0.3
    temperature: float = 0.1
    au_alignment: bool = True
    self_pair: str = "exclude"
    label_smoothing: float = 0.1
    class_weighting: bool = True
    region_replacing: float = 0.5
    hflip: float = 0.5
    erasing: float = 0.5
    erasing_scale: tuple[float, float] = (0.02, 0.3)
    erasing_ratio: tuple[float, float] = (0.3, 3.3)
    pretrained: str = "none"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SamerTaskSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"samer.task got unknown key(s) {', '.join(map(repr, unknown))}; accepted: "
                             f"{', '.join(sorted(known))}")
        values = dict(params)
        for name in ("erasing_scale", "erasing_ratio"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])
        if "pretrained" in values:
            values["pretrained"] = "none" if values["pretrained"] is None else str(values["pretrained"])
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        for name in ("wscl_weight", "region_replacing", "hflip", "erasing"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"samer.task.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.temperature <= 0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError("samer.task: temperature must be > 0 and label_smoothing in [0, 1)")
        if self.self_pair not in SELF_PAIRS:
            raise ValueError(f"samer.task.self_pair must be one of {SELF_PAIRS}, got {self.self_pair!r}")
        low, high = self.erasing_scale
        if not 0 < low <= high < 1:
            raise ValueError(f"samer.task.erasing_scale must be 0 < low <= high < 1, got {self.erasing_scale!r}")


def random_erasing(images: torch.Tensor, p: float, scale: tuple[float, float], ratio: tuple[float, float],
                   generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomErasing(p, scale, ratio, value="random") per sample on (B, C, H, W) in [0, 1] units,
    drawn from ``generator``: a rectangle of area scale·H·W and aspect ratio (log-uniform) filled with N(0, 1)
    noise; up to 10 tries for a rectangle that fits, else the image is left as it is."""
    out = images.clone()
    b, c, h, w = images.shape
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for i in range(b):
        if float(torch.rand((), generator=generator)) >= p:
            continue
        for _ in range(10):
            area = h * w * float(torch.empty(()).uniform_(scale[0], scale[1], generator=generator))
            aspect = math.exp(float(torch.empty(()).uniform_(log_ratio[0], log_ratio[1], generator=generator)))
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if eh < h and ew < w:
                top = int(torch.randint(0, h - eh + 1, (), generator=generator))
                left = int(torch.randint(0, w - ew + 1, (), generator=generator))
                noise = torch.randn((c, eh, ew), generator=generator).to(out.device, out.dtype)
                out[i, :, top:top + eh, left:left + ew] = noise
                break
    return out


def region_partners(labels: np.ndarray, pools: Mapping[int, np.ndarray], p: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Region Replacing: for each sample (its label in ``labels``), with probability ``p`` a random member of its
    class's pool (positions into the fold's training samples; the sample itself may be drawn, as in the code),
    else -1."""
    partners = np.full(labels.shape[0], -1, dtype=np.int64)
    draw = rng.random(labels.shape[0]) < p
    for i in np.flatnonzero(draw):
        pool = pools.get(int(labels[i]))
        if pool is not None and pool.size:
            partners[i] = int(pool[rng.integers(pool.size)])
    return partners


@dataclass
class SamerFold:
    """A fold's state: class weights (C,) and, per class, the positions of its training samples (RR pools)."""

    weights: np.ndarray
    pools: dict[int, np.ndarray]


CAM_SIZE = 112  # side of the stored report thumbnails


class SamerTask(Task):
    """SAMER's training (module docstring; docs/models.md, "SAMER")."""

    features = ("samer_inputs",)
    model_inputs = {"eyes": InputSpec(arrays=("composite",)), "mouth": InputSpec(arrays=("composite",))}
    training_only = ("au",)
    settings_class = SamerTaskSettings
    report_figures = {
        "au_cam": "AU-CAM and Grad-CAM on test samples (eyes over mouth)",
        "awm_weights": "AWM weight on the eyes vs the mouth",
        "tsne": "t-SNE of the fused feature X_F (test samples)",
        "tsne_au": "t-SNE of the fused feature X_F (test samples), by annotated AU",
    }

    def run_tags(self) -> dict[str, str]:
        """Every output states the initial weights (``init``) and the WSCL self-pair reading."""
        return {"init": self.settings.pretrained, "wscl_self_pair": self.settings.self_pair}

    # ----------------------------------------------------------------------------------------- bundle
    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        composite = np.asarray(features["samer_inputs"]["composite"])
        if composite.ndim != 3 or composite.shape[2] != 3 or composite.shape[0] % 2:
            raise ValueError(f"SAMER: composite of {row['sample_id']} must be (S, S, 3) with an even S, "
                             f"got {composite.shape}")
        return {"composite": composite, "au": au_slots(row["aus"])}

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
        au = np.zeros((n, AU_SLOTS), dtype=np.uint8)
        for i in range(n):
            au[i, rng.choice([1, 2, 4, 6, 7, 12, 14, 15, 17], size=rng.integers(1, 4), replace=False)] = 1
        return {"composite": rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8), "au": au}

    # ------------------------------------------------------------------------------------------- fold
    def prepare_fold(self, data: TrainData, train: np.ndarray) -> SamerFold:
        """Class weights and the same-class pools of Region Replacing, from the training side only."""
        y = data.y[train]
        weights = class_weights(y, len(data.classes)) if self.settings.class_weighting else np.ones(
            len(data.classes), dtype=np.float32)
        pools = {int(c): np.flatnonzero(y == c) for c in np.unique(y)}
        return SamerFold(weights, pools)

    def _halves(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        half = images.shape[2] // 2
        return {"eyes": images[:, :, :half], "mouth": images[:, :, half:]}

    @staticmethod
    def _normalise(images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def _augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Horizontal flip and random erasing of whole composites in [0, 1] units (the reference's order)."""
        flip = torch.rand(images.shape[0], generator=generator) < self.settings.hflip
        if flip.any():
            images = images.clone()
            images[flip.to(images.device)] = images[flip.to(images.device)].flip(-1)
        if self.settings.erasing > 0:
            images = random_erasing(images, self.settings.erasing, self.settings.erasing_scale,
                                    self.settings.erasing_ratio, generator)
        return images

    def train_batch(self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams,
                    runtime: Runtime) -> dict[str, torch.Tensor]:
        """Augmented halves; with probability ``region_replacing`` the mouth half comes from a random same-class
        training-fold sample (itself augmented) and the AU target is the union of both AU sets."""
        data, state = fold.data, fold.state
        rows = fold.train[batch_pos]
        partners = region_partners(data.y[rows], state.pools, self.settings.region_replacing, streams.data)
        images = self._augment(to_input_tensor(data.arrays["composite"][rows], None, None, runtime.device,
                                               runtime.channels_last),
                               streams.augment)
        halves = self._halves(images)
        au = torch.from_numpy(data.arrays["au"][rows].astype(np.float32)).to(runtime.device)
        replaced = np.flatnonzero(partners >= 0)
        if replaced.size:
            partner_rows = fold.train[partners[replaced]]
            partner_images = self._augment(
                to_input_tensor(data.arrays["composite"][partner_rows], None, None, runtime.device,
                                runtime.channels_last), streams.augment)
            index = torch.from_numpy(replaced).to(runtime.device)
            mouth = halves["mouth"].clone()
            mouth[index] = self._halves(partner_images)["mouth"]
            halves["mouth"] = mouth
            partner_au = torch.from_numpy(data.arrays["au"][partner_rows].astype(np.float32)).to(runtime.device)
            au = au.clone()
            au[index] = torch.maximum(au[index], partner_au)
        return {"eyes": self._normalise(halves["eyes"]), "mouth": self._normalise(halves["mouth"]), "au": au}

    def predict_inputs(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        images = to_input_tensor(inputs["composite"][rows], IMAGENET_MEAN, IMAGENET_STD, runtime.device,
                                 runtime.channels_last)
        return self._halves(images)

    # ----------------------------------------------------------------------------------- model and loss
    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor], training: bool) -> dict[str, Any]:
        return model(eyes=batch["eyes"], mouth=batch["mouth"])

    def logits(self, outputs: Mapping[str, Any]) -> torch.Tensor:
        return outputs["logits"]

    def loss(self, outputs: Mapping[str, Any], batch: Mapping[str, torch.Tensor], fold: FoldContext) -> LossTerms:
        weight = torch.from_numpy(fold.state.weights).to(batch["y"].device)
        ce = {f"ce_{name}": F.cross_entropy(logits.float(), batch["y"], weight=weight,
                                            label_smoothing=self.settings.label_smoothing)
              for name, logits in outputs["heads"].items()}
        cls_loss = sum(ce.values())
        terms: dict[str, torch.Tensor] = {**ce}
        if not self.settings.au_alignment:
            return LossTerms(cls_loss, terms)
        similarity = jaccard_similarity(batch["au"])
        wscl = wscl_loss(outputs["features"], similarity, self.settings.temperature, self.settings.self_pair)
        terms["wscl"] = wscl
        lam = self.settings.wscl_weight
        return LossTerms((1.0 - lam) * cls_loss + lam * wscl, terms)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """One group. The seam calls this once on the freshly built model, before training: the configured
        initial weights (``pretrained``) are loaded into it here."""
        state = load_resnet18_weights(self.settings.pretrained)
        if state is not None:
            model.load_backbone(state)
        return super().param_groups(model)

    # --------------------------------------------------------------------------------------------- report
    def report_extras(self, model: nn.Module, inputs: PredictInputs, rows: np.ndarray,
                      runtime: Runtime) -> dict[str, np.ndarray]:
        """Per test sample: the fused feature X_F, the AWM weights' eyes share, the predicted class, AU-CAM and
        Grad-CAM maps (eyes over mouth, at the branches' output grid) and a grey thumbnail. From test inputs only."""
        with torch.inference_mode(False), torch.enable_grad():
            batch = {k: v.clone() for k, v in self.predict_inputs(inputs, rows, runtime).items()}
            maps = model.cams(batch["eyes"], batch["mouth"])
        composite = inputs["composite"][rows]
        thumbs = np.stack([cv2.resize(c[..., 0], (CAM_SIZE, CAM_SIZE), interpolation=cv2.INTER_AREA)
                           for c in composite])
        return {
            "features": maps["features"].astype(np.float16),
            "eyes_share": maps["eyes_share"].astype(np.float32),
            "predicted": maps["predicted"].astype(np.int64),
            "au_cam": maps["au_cam"].astype(np.float16),
            "grad_cam": maps["grad_cam"].astype(np.float16),
            "thumbnails": thumbs,
        }

    @classmethod
    def make_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str]) -> dict[str, Any]:
        """AU-CAM / Grad-CAM, and the AWM share and t-SNE by predicted class (no annotations at hand)."""
        return cls._figures(extras, title, None)

    @classmethod
    def make_annotated_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str],
                                      annotations: pd.DataFrame) -> dict[str, Any]:
        """As ``make_report_figures`` but the AWM share per TRUE class and the t-SNE coloured by the true label and
        (``tsne_au``) by annotated AU (paper §4.6.1): annotations joined after prediction, evaluation only."""
        return cls._figures(extras, title, annotations)

    @classmethod
    def _figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str],
                 annotations: pd.DataFrame | None) -> dict[str, Any]:
        from microexpr.evaluation.figures import attention_overlay_figure

        figures: dict[str, Any] = {}
        cams = np.asarray(extras.get("au_cam", np.zeros((0,))))
        if cams.ndim != 3 or cams.shape[0] == 0:
            return figures
        shown = min(4, cams.shape[0])
        faces, maps, captions = [], [], []
        for i in range(shown):
            thumb = np.asarray(extras["thumbnails"][i])
            for name in ("au_cam", "grad_cam"):
                cam = cv2.resize(np.asarray(extras[name][i], dtype=np.float32), (CAM_SIZE, CAM_SIZE),
                                 interpolation=cv2.INTER_LINEAR)
                faces.append(np.dstack([thumb] * 3))
                maps.append(cam)
                captions.append(f"{extras['sample_ids'][i]} {'AU-CAM' if name == 'au_cam' else 'Grad-CAM'}")
        figures["au_cam"] = attention_overlay_figure(faces, maps, captions,
                                                     title=title(f"{cls.report_figures['au_cam']} ({shown})"))
        if annotations is None:
            groups, kind = np.array([f"class {c}" for c in np.asarray(extras["predicted"], dtype=np.int64)]), "predicted"
        else:
            groups, kind = annotations["label_true"].astype(str).to_numpy(), "true"
        figures["awm_weights"] = _awm_figure(extras, groups, title(f"{cls.report_figures['awm_weights']}, {kind} class"))
        points = _tsne_points(extras)
        if points is not None:
            figures["tsne"] = _tsne_figure(points, groups, title(f"{cls.report_figures['tsne']}, {kind} class"))
            if annotations is not None:
                figures["tsne_au"] = _tsne_au_figure(points, [au_slots(a) for a in annotations["aus"]],
                                                     title(cls.report_figures["tsne_au"]))
        return figures


def _awm_figure(extras: Mapping[str, np.ndarray], groups: np.ndarray, title: str):
    """Box plot of the eyes share of the AWM weights per group (predicted or true class)."""
    import matplotlib.pyplot as plt

    share = np.asarray(extras["eyes_share"], dtype=np.float32)
    figure, axis = plt.subplots(figsize=(5, 3.2))
    names = sorted(np.unique(groups).tolist())
    axis.boxplot([share[groups == c] for c in names], tick_labels=names)
    axis.axhline(0.5, color="grey", linestyle=":")
    axis.set_ylabel("eyes share of Σ AWM weight")
    axis.set_title(title, fontsize=8)
    figure.tight_layout()
    return figure


def _tsne_points(extras: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """2-D t-SNE of the test samples' fused features (None below 5 samples)."""
    from sklearn.manifold import TSNE

    features = np.asarray(extras["features"], dtype=np.float32)
    if features.shape[0] < 5:
        return None
    return TSNE(n_components=2, perplexity=min(30.0, features.shape[0] - 1.0), init="pca",
                random_state=0).fit_transform(features)


def _tsne_figure(points: np.ndarray, groups: np.ndarray, title: str):
    """The t-SNE points coloured by group (predicted or true class)."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4))
    for c in sorted(np.unique(groups).tolist()):
        mask = groups == c
        axis.scatter(points[mask, 0], points[mask, 1], s=12, label=str(c))
    axis.legend(fontsize=6)
    axis.set_title(title, fontsize=8)
    figure.tight_layout()
    return figure


def _tsne_au_figure(points: np.ndarray, slots: list[np.ndarray], title: str, most: int = 6):
    """One panel per most frequent annotated AU of the shown samples: samples with that AU coloured, others grey
    (AU sets are multi-label, so one colour per point would hide co-occurring AUs)."""
    import matplotlib.pyplot as plt

    held = np.stack(slots) if slots else np.zeros((0, AU_SLOTS), dtype=np.uint8)
    counts = held.sum(axis=0).astype(np.int64)
    top = [int(a) for a in np.argsort(-counts, kind="stable")[:most] if counts[a] > 0]
    figure, axes = plt.subplots(1, max(1, len(top)), figsize=(2.6 * max(1, len(top)), 2.8), squeeze=False)
    for axis, au in zip(axes[0], top, strict=False):
        has = held[:, au] > 0
        axis.scatter(points[~has, 0], points[~has, 1], s=8, color="lightgrey")
        axis.scatter(points[has, 0], points[has, 1], s=10, color="tab:red")
        axis.set_title(f"AU{au} ({int(has.sum())})", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=8)
    figure.tight_layout()
    return figure


@register_model("samer", task=SamerTask)
class SAMER(nn.Module):
    """SAMER and its ablations; ``forward(eyes=..., mouth=...)`` → dict: ``logits`` (B, C) fused prediction,
    ``heads`` {eyes, mouth} (or {whole} for ``sb``) logits, ``features`` (B, 1024 | 512) the contrastive AU
    feature, ``weighted`` X_F before that normalisation, ``weights`` the AWM weights (ones without AWM).

    Args:
        num_classes: head outputs.
        branches: ``db`` (eyes and mouth branches, the paper) | ``sb`` (one ResNet18 on the whole image; Table 4).
        awm: Area Weighted Module (False: plain concatenation; Table 4). awm_hidden: h (1024).
        awm_layernorm: the code's LayerNorm after each AWM linear (not in the paper's Eq. 1).
        awm_detach: the code detaches AWM's input (no gradient into the branches through the weights).
        fusion: ``softmax`` = argmax of softmax(eyes) + softmax(mouth) (paper §3.6) | ``logits`` = of their
            logits' sum (code).
        sa_gate: ``softmax`` across groups (code) | ``sigmoid`` (SA-Net). sa_groups: G (4).
        base_dropout, head_dropout, feature_dropout: the code's 0.2 (base and branch), 0.3 (AWM, heads), 0.1
            (contrastive feature in training).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        branches: str = "db",
        awm: bool = True,
        awm_hidden: int = 1024,
        awm_layernorm: bool = True,
        awm_detach: bool = True,
        fusion: str = "softmax",
        sa_gate: str = "softmax",
        sa_groups: int = 4,
        base_dropout: float = 0.2,
        head_dropout: float = 0.3,
        feature_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for name, value, allowed in (("branches", branches, BRANCHES), ("fusion", fusion, FUSIONS),
                                     ("sa_gate", sa_gate, SA_GATES)):
            if value not in allowed:
                raise ValueError(f"SAMER: {name}={value!r} is not one of {allowed}")
        if branches == "sb" and awm:
            raise ValueError("SAMER: branches=sb has one feature, so no area weights: set awm: false")
        self.mode, self.fusion, self.awm_detach = branches, fusion, awm_detach
        self.feature_dropout = feature_dropout
        nets = [_resnet18(sa_groups, sa_gate) for _ in range(2 if branches == "db" else 1)]
        self.base = nn.Sequential(OrderedDict(
            conv1=nets[0].conv1, bn1=nets[0].bn1, act1=nets[0].act1, maxpool=nets[0].maxpool,
            layer1=nets[0].layer1, drop1=nn.Dropout(base_dropout), layer2=nets[0].layer2,
            drop2=nn.Dropout(base_dropout)))
        names = ("eyes", "mouth") if branches == "db" else ("whole",)
        source = [nets[0], nets[1]] if branches == "db" else [nets[0]]
        self.branch_names = names
        self.branch = nn.ModuleDict({
            name: nn.Sequential(OrderedDict(layer3=net.layer3, drop3=nn.Dropout(base_dropout), layer4=net.layer4))
            for name, net in zip(names, source, strict=True)})
        width = FEATURE_DIM * len(names)
        if awm:
            norm = (lambda: nn.LayerNorm(awm_hidden)) if awm_layernorm else nn.Identity
            last_norm = nn.LayerNorm(width) if awm_layernorm else nn.Identity()
            self.area_weight: nn.Module | None = nn.Sequential(
                nn.Linear(width, awm_hidden), norm(), nn.ReLU(inplace=True), nn.Dropout(head_dropout),
                nn.Linear(awm_hidden, width), last_norm, nn.Sigmoid())
        else:
            self.area_weight = None
        self.heads = nn.ModuleDict({name: _head(num_classes, head_dropout) for name in names})

    # ------------------------------------------------------------------------------------------ weights
    def load_backbone(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load a ResNet18 state dict (torchvision / timm key names) into the base and every branch; the shuffle
        attention, AWM and heads keep their own initialisation. Raises if a backbone weight is missing."""
        targets = {"base": ("conv1", "bn1", "layer1", "layer2"), **{
            f"branch.{n}": ("layer3", "layer4") for n in self.branch_names}}
        own = self.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        for prefix, layers in targets.items():
            for key, value in state.items():
                if key.split(".")[0] in layers:
                    mapped[f"{prefix}.{key}"] = value
        expected = [k for k in own if any(k.startswith(f"{p}.{layer}") for p, ls in targets.items() for layer in ls)
                    and ".se." not in k]
        missing = sorted(set(expected) - set(mapped))
        if missing:
            raise ValueError(f"SAMER: the pretrained weights lack {len(missing)} backbone tensors, e.g. {missing[:3]}")
        self.load_state_dict(mapped, strict=False)

    # ------------------------------------------------------------------------------------------ forward
    def branch_maps(self, eyes: torch.Tensor, mouth: torch.Tensor) -> dict[str, torch.Tensor]:
        """The last feature maps (B, 512, h, w) of each branch (layer4 outputs)."""
        if self.mode == "sb":
            return {"whole": self.branch["whole"](self.base(torch.cat([eyes, mouth], dim=2)))}
        batch = eyes.shape[0]
        if eyes.shape == mouth.shape:
            shared = self.base(torch.cat([eyes, mouth], dim=0))  # one base pass for both halves
            base = {"eyes": shared[:batch], "mouth": shared[batch:]}
        else:
            base = {"eyes": self.base(eyes), "mouth": self.base(mouth)}
        return {name: self.branch[name](base[name]) for name in self.branch_names}

    def fuse(self, maps: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        pooled = [F.normalize(maps[name].mean(dim=(2, 3)), dim=1) for name in self.branch_names]
        joined = torch.cat(pooled, dim=1)
        if self.area_weight is not None:
            weights = self.area_weight(joined.detach() if self.awm_detach else joined)
            joined = joined * weights
        else:
            weights = torch.ones_like(joined)
        parts = joined.split(FEATURE_DIM, dim=1)
        heads = {name: self.heads[name](part) for name, part in zip(self.branch_names, parts, strict=True)}
        features = F.normalize(joined, dim=1)
        if self.training and self.feature_dropout > 0:
            features = F.dropout(features, self.feature_dropout)
        if len(heads) == 1:
            logits = next(iter(heads.values()))
        elif self.fusion == "logits":
            logits = sum(heads.values())
        else:  # log of the mean softmax: its argmax is that of the summed softmax outputs, its softmax their mean
            probs = torch.stack([torch.softmax(h.float(), dim=1) for h in heads.values()]).mean(0)
            logits = torch.log(probs.clamp(min=1e-12))
        return {"logits": logits, "heads": heads, "features": features, "weights": weights, "weighted": joined}

    def forward(self, eyes: torch.Tensor, mouth: torch.Tensor) -> dict[str, Any]:
        return self.fuse(self.branch_maps(eyes, mouth))

    def cams(self, eyes: torch.Tensor, mouth: torch.Tensor) -> dict[str, np.ndarray]:
        """AU-CAM (paper §4.6.2: gradients of max(X_b_w) per branch) and Grad-CAM (of the predicted class's fused
        logit) over each branch's last maps, eyes stacked over mouth, each map scaled to [0, 1]; plus the fused
        feature, the eyes share of the AWM weights and the predicted class. Needs gradients enabled."""
        was_training = self.training
        self.eval()
        maps = self.branch_maps(eyes, mouth)
        for value in maps.values():
            value.retain_grad()
        out = self.fuse(maps)
        predicted = out["logits"].argmax(1)
        parts = out["weighted"].split(FEATURE_DIM, dim=1)  # X_eyes_w, X_mouth_w (Eq. 3)
        au_target = sum(part.max(dim=1).values.sum() for part in parts)
        au_grads = torch.autograd.grad(au_target, list(maps.values()), retain_graph=True)
        class_target = out["logits"].gather(1, predicted[:, None]).sum()
        cls_grads = torch.autograd.grad(class_target, list(maps.values()))
        self.train(was_training)

        def cam(grads: tuple[torch.Tensor, ...]) -> np.ndarray:
            per_branch = []
            for fmap, grad in zip(maps.values(), grads, strict=True):
                alpha = grad.mean(dim=(2, 3), keepdim=True)
                c = torch.relu((alpha * fmap).sum(1))
                c = c - c.amin(dim=(1, 2), keepdim=True)
                per_branch.append(c / c.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12))
            return torch.cat(per_branch, dim=1).detach().cpu().numpy()

        weights = out["weights"].detach()
        half = weights.shape[1] // 2 if self.mode == "db" else weights.shape[1]
        eyes_share = weights[:, :half].sum(1) / weights.sum(1).clamp(min=1e-12)
        return {"au_cam": cam(au_grads), "grad_cam": cam(cls_grads), "features": out["features"].detach().cpu().numpy(),
                "eyes_share": eyes_share.cpu().numpy(), "predicted": predicted.cpu().numpy()}
