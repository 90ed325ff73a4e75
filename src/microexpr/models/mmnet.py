"""MMNet: muscle motion-guided network (Li et al., IJCAI'22; paper 000, reference code muse1998/MMNet).

Two branches, summed before the classifier:

- main branch on the motion input ``apex - onset`` (both ImageNet-normalised, 3x224x224):
  stem conv3x3 3->180 stride 2 + BN + ReLU, conv3x3 180->128 + BN + ReLU (112x112), then four continuous-attention
  (CA) blocks 128/128/256/512 with strides 1/2/2/2 -> F_M, 512x14x14;
- position calibration (PC) on the onset: resized to 14x14, every pixel a token (1x1 patch, linear 3->512), learned
  position embedding, a shallow ViT (timm ``Block``, no class token), final LayerNorm -> E_pos, 512x14x14;
- logits = Linear(flatten(F_M + E_pos)).

Every ablation of the paper's Tables 3-5 is a constructor argument (``variant``, ``attention``, ``vit_depth``,
``vit_heads``); where the paper's text and the reference code differ, the other reading is an argument too
(docs/models.md, "MMNet", lists each case and the default chosen).

Its training task (``MMNetTask``): aligned RGB key frames around onset and apex (feature ``key_frames``); in
training one stored frame per key frame is drawn inside the configured window (frame jitter, needing the
training-only ``rise``/``fall`` lengths), then one flip/rotation/translation (+ colour jitter) is shared by onset
and apex; at test the exact onset and apex. Plain cross-entropy, softmax scores, one parameter group; report
extra: the first CA block's attention map over the onset face.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from microexpr.models import register_model
from microexpr.models.layers.attention import (
    ContinuousAttentionBlock,
    IndependentAttentionBlock,
    ResidualBlock,
)
from microexpr.models.layers.stem import STEM_CHANNELS, init_resnet_, motion_stem
from microexpr.training.augment import AugmentConfig, augment_frames, to_model_tensor
from microexpr.training.runtime import Runtime
from microexpr.training.sampling import (
    PAD_OFFSET,
    FrameWindows,
    allowed_windows,
    choose_frame_offsets,
    exact_frame_index,
    uncovered_windows,
    validate_frames_config,
)
from microexpr.training.task import FoldContext, InputSpec, PredictInputs, Streams, Task

__all__ = ["MMNet", "MMNetTask", "MMNetTaskSettings", "PositionCalibration", "VARIANTS", "downscale"]

# variant -> (attention blocks in the main branch, position-calibration branch); paper Table 3's four rows.
VARIANTS: dict[str, tuple[bool, bool]] = {
    "mmnet": (True, True),
    "resnet": (False, False),
    "ca_only": (True, False),
    "pc_only": (False, True),
}
ATTENTION_KINDS: dict[str, type[ContinuousAttentionBlock]] = {
    "continuous": ContinuousAttentionBlock,
    "independent": IndependentAttentionBlock,
}
DEFAULT_ATTENTION_KERNEL = {"continuous": 1, "independent": 7}
BASELINE_BLOCKS = {"resnet18": 3, "ca_convs": 1}  # name -> kernel of the block's second conv

STAGE_CHANNELS = (128, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
TOTAL_STRIDE = 16  # stem stride 2 x stage strides 1*2*2*2


def _choice(name: str, value: str, allowed: dict) -> str:
    """``value`` if it is one of ``allowed``'s keys, else a ValueError naming the argument and the choices."""
    if value not in allowed:
        raise ValueError(f"MMNet: {name}={value!r} is not one of {', '.join(map(repr, allowed))}")
    return value


def downscale(image: torch.Tensor, size: int, antialias: bool) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to (B, C, size, size), as torchvision's tensor ``Resize`` does.

    ``antialias=False`` is the reference code's behaviour (torchvision of 2021 did not low-pass filter tensors);
    ``True`` low-pass filters first, the default of current torchvision.
    """
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


class PositionCalibration(nn.Module):
    """PC module: onset -> ``grid_size``^2 RGB tokens -> ViT encoder -> position embeddings (B, dim, grid, grid).

    The onset is resized with ``downscale`` (``antialias=False`` reproduces the reference code).
    Stochastic depth grows linearly from 0 to ``drop_path`` over the blocks (timm/DeiT rule, as the reference).
    """

    def __init__(
        self,
        grid_size: int = 14,
        embed_dim: int = 512,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        antialias: bool = True,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"MMNet: vit_depth must be >= 1, got {depth!r}")
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"MMNet: vit_heads={num_heads!r} must be a positive divisor of {embed_dim}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"MMNet: vit_drop_path must be in [0, 1), got {drop_path!r}")
        self.grid_size = grid_size
        self.antialias = antialias
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size * grid_size, embed_dim))
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        drop_rates = torch.linspace(0.0, drop_path, depth).tolist()
        self.blocks = nn.Sequential(
            *(
                Block(
                    embed_dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=True,
                    drop_path=rate,
                    norm_layer=norm_layer,
                )
                for rate in drop_rates
            )
        )
        self.norm = norm_layer(embed_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        """ViT init as in the reference (timm/DeiT): truncated normal 0.02 for linears and position embedding."""
        trunc_normal_(self.pos_embed, std=0.02)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, onset: torch.Tensor) -> torch.Tensor:
        small = downscale(onset, self.grid_size, self.antialias)
        tokens = self.patch_embed(small).flatten(2).transpose(1, 2) + self.pos_embed  # (B, grid^2, dim)
        tokens = self.norm(self.blocks(tokens))
        return tokens.transpose(1, 2).reshape(onset.shape[0], -1, self.grid_size, self.grid_size)


# ------------------------------------------------------------------------------------------------ training task
ATTENTION_SIZE = 112  # side of the stored attention maps and face thumbnails (the first CA map at 224² input)
KEY_FRAMES = ("onset", "apex")


@dataclass(frozen=True)
class MMNetTaskSettings:
    """``mmnet.task``: ``augment`` (microexpr.training.augment.AugmentConfig) and ``frames`` (training frame
    jitter, microexpr.training.sampling: mode frames | rise_fraction | exact)."""

    augment: AugmentConfig = field(default_factory=AugmentConfig)
    frames: dict[str, Any] = field(default_factory=lambda: validate_frames_config({}))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MMNetTaskSettings:
        unknown = sorted(set(params) - {"augment", "frames"})
        if unknown:
            raise ValueError(f"mmnet.task got unknown key(s) {', '.join(map(repr, unknown))}; accepted: augment, frames")
        return cls(AugmentConfig.from_params(params.get("augment")), validate_frames_config(params.get("frames") or {}))


class MMNetTask(Task):
    """Key-frame classification as MMNet's paper and code train it (module docstring; docs/models.md, "MMNet")."""

    features = ("key_frames",)
    model_inputs = {name: InputSpec(arrays=(f"{name}_frames", f"{name}_offsets")) for name in KEY_FRAMES}
    training_only = ("rise", "fall")
    padding = {"onset_frames": 0, "onset_offsets": PAD_OFFSET, "apex_frames": 0, "apex_offsets": PAD_OFFSET}
    settings_class = MMNetTaskSettings
    report_figures = {"attention_overlay": "First CA block attention on test faces"}

    def sample_arrays(self, row: pd.Series, features: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        frames = features["key_frames"]
        return {
            "onset_frames": frames["onset_frames"], "onset_offsets": frames["onset_offsets"],
            "apex_frames": frames["apex_frames"], "apex_offsets": frames["apex_offsets"],
            "rise": np.int32(int(row["apex"]) - int(row["onset"])),
            "fall": np.int32(int(row["offset"]) - int(row["apex"])),
        }

    @classmethod
    def example_arrays(cls, n: int, n_classes: int, rng: np.random.Generator, size: int = 32) -> dict[str, np.ndarray]:
        onset_offsets = np.tile(np.array([0, 1, 2, 3], dtype=np.int16), (n, 1))
        onset_offsets[::3, 3] = PAD_OFFSET
        return {
            "onset_frames": rng.integers(0, 256, size=(n, 4, size, size, 3), dtype=np.uint8),
            "onset_offsets": onset_offsets,
            "apex_frames": rng.integers(0, 256, size=(n, 4, size, size, 3), dtype=np.uint8),
            "apex_offsets": np.tile(np.array([-3, -2, -1, 0], dtype=np.int16), (n, 1)),
            "rise": rng.integers(6, 30, size=n).astype(np.int32),
            "fall": rng.integers(6, 30, size=n).astype(np.int32),
        }

    def bundle_warnings(self, bundle: Mapping[str, np.ndarray]) -> list[str]:
        """Training windows that reach past the stored key frames (training then draws among the stored ones)."""
        windows = allowed_windows(self.settings.frames, bundle["rise"], bundle["fall"], bundle["sample_id"])
        short = uncovered_windows(windows, bundle["onset_offsets"], bundle["apex_offsets"], bundle["rise"],
                                  bundle["fall"])
        counts = {side: int(mask.sum()) for side, mask in short.items()}
        if not any(counts.values()):
            return []
        hit = np.flatnonzero(np.logical_or.reduce(list(short.values())))
        return [
            f"the training frame window exceeds the stored key frames for {hit.size} of {len(bundle['sample_id'])} "
            f"samples ({', '.join(f'{k} {v}' for k, v in counts.items())}; e.g. {bundle['sample_id'][hit[:3]].tolist()}"
            "); training draws only among the stored frames. Store more with preprocess.key_frames.onset_after / "
            "apex_before / apex_after or their *_fraction settings (docs/models.md, MMNet), or those frames are "
            "missing from the clip"
        ]

    def prepare_fold(self, data, train: np.ndarray) -> FrameWindows:
        """Training frame windows of the fold's training samples (from their rise and fall lengths)."""
        return allowed_windows(self.settings.frames, data.arrays["rise"][train], data.arrays["fall"][train],
                               data.sample_id[train])

    def _tensors(self, arrays: Mapping[str, np.ndarray], idx: np.ndarray, choice: Mapping[str, np.ndarray],
                 runtime: Runtime) -> dict[str, torch.Tensor]:
        return {
            name: to_model_tensor(arrays[f"{name}_frames"][idx, choice[name]], runtime.device, runtime.channels_last)
            for name in KEY_FRAMES
        }

    def _exact(self, arrays: Mapping[str, np.ndarray], sample_ids: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        return {name: exact_frame_index(arrays[f"{name}_offsets"][idx], sample_ids, f"{name}_offsets")
                for name in KEY_FRAMES}

    def train_batch(self, fold: FoldContext, batch_pos: np.ndarray, streams: Streams,
                    runtime: Runtime) -> dict[str, torch.Tensor]:
        """Jittered key frames (one stored frame per key frame inside its window), augmented together."""
        data, idx = fold.data, fold.train[batch_pos]
        choice = {}
        for name in KEY_FRAMES:
            allowed = getattr(fold.state, name)[batch_pos]
            choice[name] = choose_frame_offsets(data.arrays[f"{name}_offsets"][idx], allowed, streams.data,
                                                data.sample_id[idx], f"{name}_offsets")
        batch = self._tensors(data.arrays, idx, choice, runtime)
        onset, apex = augment_frames([batch["onset"], batch["apex"]], self.settings.augment, streams.augment)
        return {"onset": onset, "apex": apex}

    def predict_inputs(self, inputs: PredictInputs, rows: np.ndarray, runtime: Runtime) -> dict[str, torch.Tensor]:
        """The exact onset and apex (stored offset 0)."""
        return self._tensors(inputs, rows, self._exact(inputs, inputs.sample_id[rows], rows), runtime)

    def report_extras(self, model: nn.Module, inputs: PredictInputs, rows: np.ndarray,
                      runtime: Runtime) -> dict[str, np.ndarray]:
        """First attention map (resized to 112²) and an exact-onset thumbnail of each test sample in ``rows``."""
        choice = self._exact(inputs, inputs.sample_id[rows], rows)["onset"]
        faces = np.stack([
            cv2.resize(inputs["onset_frames"][row, slot], (ATTENTION_SIZE, ATTENTION_SIZE), interpolation=cv2.INTER_AREA)
            for row, slot in zip(rows, choice, strict=True)
        ])
        extras = {"faces": faces, "maps": np.zeros((rows.size, 0, 0), dtype=np.float16)}
        if "return_attention" not in inspect.signature(model.forward).parameters:
            return extras
        with runtime.autocast():
            _, maps = model(**self.predict_inputs(inputs, rows, runtime), return_attention=True)
        if len(maps):
            first = maps[0].float()
            if first.shape[-2:] != (ATTENTION_SIZE, ATTENTION_SIZE):
                first = F.interpolate(first, size=(ATTENTION_SIZE, ATTENTION_SIZE), mode="bilinear", align_corners=False)
            extras["maps"] = first[:, 0].detach().cpu().numpy().astype(np.float16)
        return extras

    @classmethod
    def make_report_figures(cls, extras: Mapping[str, np.ndarray], title: Callable[[str], str]) -> dict[str, Any]:
        """The attention overlay of up to 8 test faces (none for the attention-free variants)."""
        from microexpr.evaluation.figures import attention_overlay_figure

        maps = np.asarray(extras.get("maps", np.zeros((0, 0, 0))))
        if maps.ndim != 3 or maps.shape[0] == 0 or maps.shape[1] == 0:
            return {}
        shown = min(8, maps.shape[0])
        captions = [f"{s} ({f})" for s, f in zip(extras["sample_ids"][:shown], extras["fold"][:shown], strict=True)]
        figure = attention_overlay_figure(
            list(extras["faces"][:shown]), [m.astype(np.float32) for m in maps[:shown]], captions,
            title=title(f"{cls.report_figures['attention_overlay']} ({shown})"),
        )
        return {"attention_overlay": figure}


@register_model("mmnet", task=MMNetTask)
class MMNet(nn.Module):
    """MMNet and its ablations; ``forward(onset=..., apex=...)`` -> logits (B, num_classes).

    Args:
        num_classes: classifier outputs.
        variant: "mmnet" (CA blocks + PC module), "resnet" (baseline: plain residual blocks, no PC),
            "ca_only", "pc_only" (paper Table 3).
        attention: "continuous" (CA: each map times the max-pooled previous map) or "independent" (CBAM spatial
            attention per block, no chaining; paper Table 4). Used by the variants that have attention.
        attention_kernel: kernel of the attention conv; None = 1 for continuous (paper), 7 for independent (CBAM).
        attention_bn: BN(1) before the sigmoid (reference code, CBAM code); False = paper Eq. 1 as written.
        always_project_shortcut: 1x1 conv shortcut also in the shape-keeping first block (paper Eq. 2 read
            literally); False = identity there (reference code).
        baseline_block: block of the attention-free variants: "resnet18" (conv3x3 + conv3x3, ResNet18's
            BasicBlock, the paper's baseline) or "ca_convs" (conv3x3 + conv1x1, the CA block minus attention).
        vit_depth, vit_heads, vit_mlp_ratio, vit_drop_path: PC module's ViT (paper Table 5: N_L, N_H).
        resize_antialias: low-pass filter when resizing the onset to 14x14 (False = reference code).
        image_size: input side; must be a multiple of 16 (the classifier's input is 512 * (image_size/16)^2).
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
        variant: str = "mmnet",
        attention: str = "continuous",
        attention_kernel: int | None = None,
        attention_bn: bool = True,
        always_project_shortcut: bool = False,
        baseline_block: str = "resnet18",
        vit_depth: int = 2,
        vit_heads: int = 4,
        vit_mlp_ratio: float = 4.0,
        vit_drop_path: float = 0.0,
        resize_antialias: bool = True,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        self.variant = _choice("variant", variant, VARIANTS)
        self.attention_kind = _choice("attention", attention, ATTENTION_KINDS)
        _choice("baseline_block", baseline_block, BASELINE_BLOCKS)
        if image_size < TOTAL_STRIDE or image_size % TOTAL_STRIDE:
            raise ValueError(
                f"MMNet: image_size must be a positive multiple of {TOTAL_STRIDE}, got {image_size!r}"
            )
        self.image_size = image_size
        self.uses_attention, uses_pc = VARIANTS[variant]
        grid_size = image_size // TOTAL_STRIDE

        self.stem = motion_stem(STEM_CHANNELS)
        kernel = DEFAULT_ATTENTION_KERNEL[attention] if attention_kernel is None else attention_kernel
        in_channels = (STEM_CHANNELS[1], *STAGE_CHANNELS[:-1])
        blocks: list[nn.Module] = []
        for c_in, c_out, stride in zip(in_channels, STAGE_CHANNELS, STAGE_STRIDES, strict=True):
            if self.uses_attention:
                block_cls = ATTENTION_KINDS[attention]
                blocks.append(block_cls(c_in, c_out, stride, kernel, attention_bn, always_project_shortcut))
            else:
                second_kernel = BASELINE_BLOCKS[baseline_block]
                blocks.append(ResidualBlock(c_in, c_out, stride, second_kernel, always_project_shortcut))
        self.blocks = nn.ModuleList(blocks)
        self._init_main_branch()

        self.position = (
            PositionCalibration(
                grid_size,
                STAGE_CHANNELS[-1],
                vit_depth,
                vit_heads,
                vit_mlp_ratio,
                vit_drop_path,
                resize_antialias,
            )
            if uses_pc
            else None
        )
        self.fc = nn.Linear(STAGE_CHANNELS[-1] * grid_size * grid_size, num_classes)

    def _init_main_branch(self) -> None:
        """Kaiming-normal (fan_out) convs after the first stem conv, unit/zero BN: the reference's ResNet init."""
        init_resnet_([*self.stem[3:].modules(), *self.blocks.modules()])

    def _check_inputs(self, onset: torch.Tensor, apex: torch.Tensor) -> None:
        expected = (3, self.image_size, self.image_size)
        for name, frame in (("onset", onset), ("apex", apex)):
            if frame.ndim != 4 or tuple(frame.shape[1:]) != expected:
                raise ValueError(
                    f"MMNet: {name} must have shape (B, {', '.join(map(str, expected))}), "
                    f"got {tuple(frame.shape)}"
                )
        if onset.shape[0] != apex.shape[0]:
            raise ValueError(f"MMNet: onset and apex batch sizes differ: {onset.shape[0]} vs {apex.shape[0]}")

    def forward(
        self, onset: torch.Tensor, apex: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Logits (B, num_classes); with ``return_attention`` also the per-block maps (B, 1, H_i, W_i).

        The maps are the ones that re-weight each block's features (for "continuous" the chained product), e.g.
        1x112x112, 1x56x56, 1x28x28, 1x14x14 at 224^2; an empty tuple for the attention-free variants.
        """
        self._check_inputs(onset, apex)
        features = self.stem(apex - onset)
        maps: list[torch.Tensor] = []
        prior: torch.Tensor | None = None
        for block in self.blocks:
            if self.uses_attention:
                features, prior = block(features, prior)
                maps.append(prior)
            else:
                features = block(features)
        if self.position is not None:
            features = features + self.position(onset)
        logits = self.fc(torch.flatten(features, 1))
        if return_attention:
            return logits, tuple(maps)
        return logits
