"""Attribute embedding + cross-modal contrastive learning (Song et al., Ping An; paper 004; no public code).

Reconstruction from the paper (../shared/reference/reference_models.md §5; docs/models.md, "Attribute contrast",
lists every gap and the reading chosen):

- **video network**: two unshared 3D-ResNets (torchvision's ``VideoResNet`` with BasicBlocks, Table I's layer
  lists: depth 10 = [1,1,1,1], 18 = [2,2,2,2], 34 = [3,4,6,3]) on the RGB clip (3×16×112²) and the Farneback flow
  clip (2×16×112²); stem conv 3×7×7, 64, no max-pool; global average pool → 128-d FC each; z_m = concat (256).
  Table I lists conv1 stride 1×2×2 but output sizes 8×56² → … → 1×7² from 16 frames, which need temporal stride 2:
  ``conv1_temporal_stride=2`` reproduces the listed sizes (default), 1 the listed stride;
- **attribute network (training only)**: the sample's AUs as FACS text (Table II, ``describe_aus``) → BERT →
  pooled → 256-d projection z_a;
- a softmax classifier on z_m (video) and one on z_a (text). **Inference** = the two streams + the video classifier
  (28,846,789 parameters at depth 10 and 5 classes); the text branch runs only when token ids are given.

Loss (the task): L = (1 − α)(CE_video + CE_text) + α·L_con with L_con = −mean_i log[d_ii / (d_ii + Σ_{k≠i} d_ik)],
d_ik = exp(cos(z_m^i, z_a^k)), negatives = the other samples of the batch (Eq. 3–5, 8).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv3DSimple, VideoResNet

from microexpr.data.au import describe_aus, facs_table, parse_au_string
from microexpr.models import register_model
from microexpr.training.augment import AugmentConfig, augment_batch, to_input_tensor
from microexpr.training.runtime import Runtime
from microexpr.training.task import FoldContext, InputSpec, LossTerms, PredictInputs, Streams, Task

logger = logging.getLogger(__name__)

__all__ = [
    "DEPTHS",
    "AttrContrastNet",
    "AttrContrastSettings",
    "AttrContrastTask",
    "Stem3d",
    "au_vocabulary",
    "cross_modal_contrastive_loss",
    "nearest_au_hits",
    "video_resnet",
]

DEPTHS: dict[int, list[int]] = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}  # Table I
POOLINGS = ("mean", "cls", "pooler")
TEXT_MODES = ("sample", "class_prototype")
# A tiny randomly initialised BERT used only when no text encoder is handed in (unit and contract tests); the
# pipeline always hands in the catalog's pretrained one.
TINY_BERT = {"vocab_size": 128, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64}
NO_AUGMENT = {"hflip": 0.0, "rotation": 0.0, "padding": 0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}


# --------------------------------------------------------------------------------------------------- model
class Stem3d(nn.Sequential):
    """conv 3×7×7, 64 channels, stride (t, 2, 2) + BN + ReLU; no max-pool (Table I's output sizes)."""

    def __init__(self, in_channels: int, temporal_stride: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, 64, kernel_size=(3, 7, 7), stride=(temporal_stride, 2, 2), padding=(1, 3, 3),
                      bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


def video_resnet(depth: int, in_channels: int, out_features: int = 128, conv1_temporal_stride: int = 2) -> VideoResNet:
    """A 3D-ResNet of Table I from torchvision's VideoResNet: BasicBlocks with 3×3×3 convs, layers by ``depth``,
    global average pool and an ``out_features`` FC."""
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)} (paper Table I), got {depth!r}")
    if conv1_temporal_stride not in (1, 2):
        raise ValueError(f"conv1_temporal_stride must be 1 (Table I's listed stride) or 2 (its output sizes), "
                         f"got {conv1_temporal_stride!r}")
    return VideoResNet(BasicBlock, [Conv3DSimple] * 4, DEPTHS[depth],
                       partial(Stem3d, in_channels, conv1_temporal_stride), num_classes=out_features)


def _tiny_text_encoder() -> nn.Module:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(**TINY_BERT))


def pool_text(hidden: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor | None, how: str) -> torch.Tensor:
    """(B, L, H) token states → (B, H): masked mean, the [CLS] state, or the encoder's pooler output."""
    if how == "cls":
        return hidden[:, 0]
    if how == "pooler":
        if pooled is None:
            raise ValueError("text_pooling='pooler' needs an encoder with a pooler (BertModel add_pooling_layer)")
        return pooled
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def cross_modal_contrastive_loss(z_m: torch.Tensor, z_a: torch.Tensor, same_text: torch.Tensor | None = None
                                 ) -> torch.Tensor:
    """Eq. 3–5: −mean_i log[d(v_i,t_i) / (d(v_i,t_i) + Σ_{k≠i} d(v_i,t_k))], d = exp(cos), temperature 1, video
    anchors, the batch's other texts as negatives. ``same_text`` (B, B) bool drops negatives whose text equals the
    anchor's own (the optional false-negative mask; the diagonal is always kept)."""
    cosine = F.normalize(z_m, dim=1) @ F.normalize(z_a, dim=1).T
    if same_text is not None:
        drop = same_text & ~torch.eye(cosine.shape[0], dtype=torch.bool, device=cosine.device)
        cosine = cosine.masked_fill(drop, float("-inf"))
    return F.cross_entropy(cosine, torch.arange(cosine.shape[0], device=cosine.device))


@dataclass(frozen=True)
class AttrContrastSettings:
    """``attr_contrast.task``: the loss weight α, text per sample or per class, the false-negative mask, BERT's
    learning-rate factor, token length, which AUs make the text, and augmentation (off: the paper names none)."""

    alpha: float = 0.5
    text: str = "sample"
    mask_false_negatives: bool = False
    text_lr_scale: float = 1.0
    max_tokens: int = 32
    definite_aus_only: bool = False
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(**NO_AUGMENT))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> AttrContrastSettings:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"attr_contrast.task got unknown key(s) {unknown}; accepted: {sorted(known)}")
        values = dict(params)
        values["augment"] = AugmentConfig.from_params({**NO_AUGMENT, **dict(values.get("augment") or {})})
        settings = cls(**values)
        if not 0.0 <= settings.alpha <= 1.0:
            raise ValueError(f"attr_contrast.task.alpha must be in [0, 1] (paper Eq. 8), got {settings.alpha!r}")
        if settings.alpha == 1.0:
            logger.warning("attr_contrast.task.alpha = 1: Eq. 8 keeps no cross-entropy term, so the video classifier "
                           "gets no gradient and predicts from its random initialisation (docs/models.md)")
        if settings.text not in TEXT_MODES:
            raise ValueError(f"attr_contrast.task.text must be one of {TEXT_MODES}, got {settings.text!r}")
        if settings.text_lr_scale <= 0 or settings.max_tokens < 2:
            raise ValueError("attr_contrast.task: text_lr_scale must be > 0 and max_tokens >= 2")
        return settings


class AttrContrastTask(Task):
    """Paper 004's training: clips in, per-sample AU text as a training-only input, the three-term loss."""

    features = ("attr_clips",)
    model_inputs = {
        "rgb": InputSpec(arrays=("rgb",), kind="clip", channels=3),
        "flow": InputSpec(arrays=("flow",), kind="clip", channels=2, mean=None, std=None, colour=False),
    }
    training_only = ("tokens",)
    settings_class = AttrContrastSettings
    catalog_inputs = ("text_encoder",)
    inference_modules = ("rgb_stream", "flow_stream", "classifier")  # the text branch is training-only
    report_figures = {"embedding_tsne": "t-SNE of the video embedding z_m of test clips",
                      "nearest_au": "Nearest single-AU FACS description to z_m (cosine, the fold's text branch)"}
    nearest_k: ClassVar[int] = 3  # AU descriptions kept per shown clip

    def run_tags(self) -> dict[str, str]:
        """α and the text mode (and the false-negative mask when on): every output of the run states them."""
        tags = {"alpha": f"{self.settings.alpha:g}", "text": self.settings.text}
        if self.settings.mask_false_negatives:
            tags["false_negatives"] = "masked"
        return tags

    def bundle_settings(self) -> dict[str, Any]:
        encoder = self.resources.get("text_encoder")
        return {"max_tokens": self.settings.max_tokens, "definite_aus_only": self.settings.definite_aus_only,
                "text_encoder": getattr(encoder, "fingerprint", None)}

    def attribute_text(self, row: pd.Series) -> str:
        """The sample's FACS attribute text (Table II names of its AUs), e.g. "cheek raiser, lip corner puller"."""
        return describe_aus(parse_au_string(row.get("au_raw")), definite_only=self.settings.definite_aus_only)

    def input_sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]
                            ) -> dict[str, np.ndarray]:
        """The RGB and flow clips (prediction needs no text encoder: the text is training-only)."""
        clip = features["attr_clips"]
        rgb, flow = np.asarray(clip["rgb"]), np.asarray(clip["flow"])
        if flow.shape[0] != rgb.shape[0]:
            raise ValueError(f"{row['sample_id']}: attr_clips has {rgb.shape[0]} RGB frames but {flow.shape[0]} flow "
                             "fields; recompute the feature (one flow field per frame)")
        return {"rgb": rgb, "flow": flow.astype(np.float16)}

    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        encoder = self.resources.get("text_encoder")
        if encoder is None:
            raise ValueError(f"{self.name}: no text encoder was handed in (catalog entry 'text_encoder'); it "
                             "tokenizes the attribute text")
        tokens = encoder.tokenize([self.attribute_text(row)], self.settings.max_tokens)[0]
        return {**self.input_sample_arrays(row, features), "tokens": tokens}

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
        frames = 4
        tokens = rng.integers(1, TINY_BERT["vocab_size"], size=(n, 8)).astype(np.int32)
        tokens[:, 6:] = 0  # padding
        return {
            "rgb": rng.integers(0, 256, size=(n, frames, size, size, 3), dtype=np.uint8),
            "flow": rng.normal(0, 1, size=(n, frames, size, size, 2)).astype(np.float16),
            "tokens": tokens,
        }

    def prepare_fold(self, data, train: np.ndarray) -> dict[int, np.ndarray] | None:
        """Per-class prototype text (``text: class_prototype``): each class's most frequent token row among the
        fold's training samples; None for per-sample text (the paper's Eq. 2)."""
        if self.settings.text != "class_prototype":
            return None
        prototypes = {}
        for label in np.unique(data.y[train]):
            rows = data.arrays["tokens"][train[data.y[train] == label]]
            values, counts = np.unique(rows, axis=0, return_counts=True)
            prototypes[int(label)] = values[int(np.argmax(counts))]
        return prototypes

    def _clips(self, arrays: Mapping[str, np.ndarray], rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        return {name: to_input_tensor(arrays[name][rows], spec.mean, spec.std, runtime.device, runtime.channels_last)
                for name, spec in self.model_inputs.items()}

    def train_batch(self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams,
                    runtime: Runtime) -> dict[str, torch.Tensor]:
        """RGB and flow clips (one shared flip/rotation/shift per sample when augmentation is on) and token ids."""
        rows = fold.train[batch_pos]
        clips = self._clips(fold.data.arrays, rows, runtime)
        augment = self.settings.augment
        if augment.geometric or augment.color:
            moved = augment_batch([clips["rgb"]], augment, streams.augment, flows=[clips["flow"]])
            clips = {"rgb": moved.images[0], "flow": moved.flows[0]}
        if fold.state is None:
            tokens = fold.data.arrays["tokens"][rows]
        else:
            tokens = np.stack([fold.state[int(label)] for label in fold.data.y[rows]])
        return {**clips, "tokens": torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(runtime.device)}

    def predict_inputs(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        return self._clips(inputs, rows, runtime)

    def forward(self, model: nn.Module, batch: Mapping[str, torch.Tensor], training: bool) -> dict[str, torch.Tensor]:
        """The token ids reach the model in training only: prediction runs the video network alone."""
        return model(rgb=batch["rgb"], flow=batch["flow"], tokens=batch["tokens"] if training else None)

    def logits(self, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return outputs["logits"]

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor],
             fold: FoldContext) -> LossTerms:
        """(1 − α)(CE_video + CE_text) + α·L_con (Eq. 8); every term logged."""
        alpha = self.settings.alpha
        ce_video = F.cross_entropy(outputs["logits"].float(), batch["y"])
        ce_text = F.cross_entropy(outputs["text_logits"].float(), batch["y"])
        same_text = None
        if self.settings.mask_false_negatives:
            tokens = batch["tokens"]
            same_text = (tokens[:, None, :] == tokens[None, :, :]).all(-1)
        contrast = cross_modal_contrastive_loss(outputs["z_m"].float(), outputs["z_a"].float(), same_text)
        total = (1.0 - alpha) * (ce_video + ce_text) + alpha * contrast
        return LossTerms(total, {"ce_video": ce_video, "ce_text": ce_text, "contrast": contrast})

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """The video network (and the projection and text classifier) at lr; BERT at ``text_lr_scale`` × lr."""
        text = [p for p in model.text_encoder.parameters() if p.requires_grad]
        ids = {id(p) for p in text}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return [{"name": "video", "params": rest},
                {"name": "text_encoder", "params": text, "lr_scale": self.settings.text_lr_scale}]

    def model_options(self) -> dict[str, Any]:
        """The catalog's pretrained text encoder (when handed in) goes to the model's constructor."""
        encoder = self.resources.get("text_encoder")
        return {} if encoder is None else {"text_encoder": encoder}

    def report_extras(self, model: nn.Module, inputs: PredictInputs, rows: np.ndarray,
                      runtime: Runtime) -> dict[str, np.ndarray]:
        """z_m and the predicted class of each shown test clip and, when the tokenizer was handed in, the
        ``nearest_k`` single-AU FACS descriptions nearest to z_m by cosine (``nearest_au``, ``nearest_cosine``).

        The candidates are the whole FACS name table (each AU's text as ``attribute_text`` writes a one-AU set),
        embedded by this fold's trained text branch: no test sample's annotation is read. ``microexpr predict``
        hands the task no text encoder (the saved model keeps no text branch), so it computes none of these."""
        with runtime.autocast():
            outputs = self.forward(model, self.predict_inputs(inputs, rows, runtime), training=False)
        z_m = outputs["z_m"].detach().float()
        extras = {"z_m": z_m.cpu().numpy().astype(np.float16),
                  "predicted": outputs["logits"].detach().float().argmax(1).cpu().numpy().astype(np.int64)}
        encoder = self.resources.get("text_encoder")
        if encoder is not None:
            aus, texts = au_vocabulary()
            tokens = torch.from_numpy(encoder.tokenize(texts, self.settings.max_tokens).astype(np.int64))
            with runtime.autocast():
                z_a = model.encode_text(tokens.to(runtime.device)).float()
            cosine = F.normalize(z_m, dim=1) @ F.normalize(z_a, dim=1).T
            best = cosine.topk(min(self.nearest_k, len(aus)), dim=1)
            extras["nearest_au"] = np.asarray(aus, dtype=np.int64)[best.indices.cpu().numpy()]
            extras["nearest_cosine"] = best.values.cpu().numpy().astype(np.float32)
        return extras

    @classmethod
    def make_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str]) -> dict[str, Any]:
        """t-SNE (scikit-learn) of the pooled z_m of the shown test clips, coloured by predicted class."""
        predicted = np.array([f"predicted class {c}" for c in np.asarray(extras.get("predicted", []))])
        return _tsne_figures(extras, predicted, title, "predicted class")

    @classmethod
    def make_annotated_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str],
                                      annotations: pd.DataFrame) -> dict[str, Any]:
        """The t-SNE coloured by the TRUE class and, for up to 8 shown clips, the nearest AU descriptions beside the
        clip's annotated AUs (annotations joined after prediction: evaluation only)."""
        figures = _tsne_figures(extras, annotations["label_true"].astype(str).to_numpy(), title, "true class")
        nearest = np.asarray(extras.get("nearest_au", np.zeros((0, 0))))
        if nearest.ndim == 2 and nearest.shape[0] and len(annotations) == nearest.shape[0]:
            figures["nearest_au"] = _nearest_au_figure(extras, annotations, title(cls.report_figures["nearest_au"]))
        return figures


def au_vocabulary() -> tuple[list[int], list[str]]:
    """Every AU of the FACS name table and its one-AU attribute text (as ``describe_aus`` writes it)."""
    aus = sorted(facs_table())
    return aus, [describe_aus(parse_au_string(str(au))) for au in aus]


def nearest_au_hits(nearest: np.ndarray, au_codes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: is the nearest AU among its annotated AUs (top-1), is any of the kept ones (top-k)."""
    sets = [{int(a) for a in (codes if codes is not None else [])} for codes in au_codes]
    top1 = np.array([int(row[0]) in held for row, held in zip(nearest, sets, strict=True)])
    topk = np.array([bool({int(a) for a in row} & held) for row, held in zip(nearest, sets, strict=True)])
    return top1, topk


def _tsne_figures(extras: Mapping[str, np.ndarray], groups: np.ndarray, title: Callable[[str], str],
                  kind: str) -> dict[str, Any]:
    embedding = np.asarray(extras.get("z_m", np.zeros((0, 0))), dtype=np.float32)
    if embedding.ndim != 2:
        return {}
    finite = np.isfinite(embedding).all(axis=1)  # a diverged fold (NaN) is left out, not plotted
    embedding, groups = embedding[finite], np.asarray(groups)[finite]
    if embedding.shape[0] < 5:
        return {}
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    n = embedding.shape[0]
    points = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3.0), init="pca", random_state=0).fit_transform(
        embedding)
    figure, axis = plt.subplots(figsize=(5, 4.5))
    for label in np.unique(groups):
        chosen = groups == label
        axis.scatter(points[chosen, 0], points[chosen, 1], s=18, label=str(label))
    axis.legend(fontsize=7)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(title(f"t-SNE of z_m, {n} test clips, by {kind}"), fontsize=8)
    figure.tight_layout()
    return {"embedding_tsne": figure}


def _nearest_au_figure(extras: Mapping[str, np.ndarray], annotations: pd.DataFrame, title: str, shown: int = 8):
    """A table: clip, true class, annotated AUs, nearest AU descriptions with their cosine; hit rates in the title
    (over every shown clip)."""
    import matplotlib.pyplot as plt

    names = facs_table()
    nearest = np.asarray(extras["nearest_au"])
    cosine = np.asarray(extras["nearest_cosine"], dtype=np.float32)
    top1, topk = nearest_au_hits(nearest, list(annotations["au_codes"]))
    rows = []
    for i in range(min(shown, nearest.shape[0])):
        codes = annotations["au_codes"].iloc[i]
        held = ", ".join(f"AU{int(a)}" for a in (codes if codes is not None else [])) or "none"
        near = "; ".join(f"AU{int(a)} {names.get(int(a), '').lower()} ({c:.2f})"
                         for a, c in zip(nearest[i], cosine[i], strict=True))
        rows.append([str(annotations["sample_id"].iloc[i]), str(annotations["label_true"].iloc[i]), held, near])
    figure, axis = plt.subplots(figsize=(11, 0.35 * len(rows) + 1.2))
    axis.set_axis_off()
    table = axis.table(cellText=rows, colLabels=["test clip", "true class", "annotated AUs", "nearest (cosine)"],
                       loc="center", cellLoc="left", colWidths=[0.18, 0.1, 0.17, 0.55])
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    axis.set_title(f"{title}\nnearest AU annotated: {top1.mean():.2f} top-1, {topk.mean():.2f} top-{nearest.shape[1]} "
                   f"({nearest.shape[0]} test clips)", fontsize=8)
    figure.tight_layout()
    return figure


@register_model("attr_contrast", task=AttrContrastTask)
class AttrContrastNet(nn.Module):
    """``forward(rgb, flow, tokens=None)`` → dict: logits (B, C), z_m (B, 256) and, with token ids (training only),
    text_logits (B, C) and z_a (B, 256).

    Args:
        num_classes: classifier outputs. depth: 3D-ResNet depth 10 | 18 | 34 (Table I, Figs. 2–3).
        conv1_temporal_stride: 2 = Table I's output sizes (default), 1 = its listed stride 1×2×2.
        stream_dim: FC width of each stream (128; z_m = 2 × stream_dim). text_dim: z_a width (256).
        flow_channels: flow input channels (2: u, v). text_encoder: a loaded ``TextEncoder`` (catalog entry
            ``text_encoder``; copied, so each fold fine-tunes its own); None = a tiny random BERT (tests only).
        text_pooling: mean (masked mean of the token states; how the shipped MiniLM was trained) | cls | pooler.
    """

    def __init__(self, num_classes: int, *, depth: int = 10, conv1_temporal_stride: int = 2, stream_dim: int = 128,
                 text_dim: int = 256, flow_channels: int = 2, text_encoder: Any = None, text_pooling: str = "mean"
                 ) -> None:
        super().__init__()
        if text_pooling not in POOLINGS:
            raise ValueError(f"text_pooling must be one of {POOLINGS}, got {text_pooling!r}")
        if isinstance(text_encoder, str):
            raise TypeError("text_encoder is a catalog entry (conf/base/catalog_attr_contrast.yml), not a model "
                            "parameter: set its path there or with --params text_encoder=<folder>")
        self.rgb_stream = video_resnet(depth, 3, stream_dim, conv1_temporal_stride)
        self.flow_stream = video_resnet(depth, flow_channels, stream_dim, conv1_temporal_stride)
        self.classifier = nn.Linear(2 * stream_dim, num_classes)
        encoder = _tiny_text_encoder() if text_encoder is None else copy.deepcopy(text_encoder.model)
        self.text_encoder = encoder
        self.pad_id = 0 if text_encoder is None else text_encoder.pad_id
        self.text_pooling = text_pooling
        self.text_projection = nn.Linear(int(encoder.config.hidden_size), text_dim)
        self.text_classifier = nn.Linear(text_dim, num_classes)
        if text_dim != 2 * stream_dim:
            raise ValueError(f"z_a ({text_dim}) and z_m ({2 * stream_dim}) must have one size for the cosine")

    def inference_modules(self) -> list[nn.Module]:
        """What prediction uses: the two streams and the video classifier (BERT is dropped at inference)."""
        return [getattr(self, name) for name in AttrContrastTask.inference_modules]

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != self.pad_id).long()
        out = self.text_encoder(input_ids=tokens, attention_mask=mask)
        pooled = getattr(out, "pooler_output", None)
        return self.text_projection(pool_text(out.last_hidden_state, mask, pooled, self.text_pooling))

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor, tokens: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        z_m = torch.cat([self.rgb_stream(rgb), self.flow_stream(flow)], dim=1)
        outputs = {"logits": self.classifier(z_m), "z_m": z_m}
        if tokens is not None:
            z_a = self.encode_text(tokens)
            outputs.update(z_a=z_a, text_logits=self.text_classifier(z_a))
        return outputs
