"""Batched training augmentation for paired key frames (onset, apex): one random transform per sample, shared.

The reference code stacks its frames along channels and runs torchvision's per-sample transforms on the CPU:
RandomHorizontalFlip(0.5) → RandomRotation(3°) → RandomCrop(224, padding 15), after Normalize, so padding and
rotation corners are 0 in normalised space (the ImageNet mean colour). Here the three geometric steps are composed
into one affine map per sample and applied to the whole batch, onset and apex stacked on channels, with a single
``affine_grid`` + ``grid_sample`` call on whatever device the batch lives on. Pad-then-crop is the translation
``t = crop_origin − padding`` in whole pixels, uniform over [−padding, padding] in x and y as RandomCrop draws it;
uncovered pixels are zero (the mean colour), as the reference's zero padding after Normalize.

Optional colour jitter (paper text; not in the reference code) scales brightness, contrast and saturation with
the same factors for onset and apex, in [0, 1] RGB before the geometry (torchvision ``ColorJitter`` semantics in
a fixed order brightness → contrast → saturation, clamped after each step; the contrast pivot is the mean grey
level of the sample's two frames together, so both frames get exactly the same pixel map).

All random numbers come from the ``torch.Generator`` passed in (a CPU generator); the drawn parameters are moved
to the batch's device, so results do not depend on the device's random state or on other threads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "PairTransform",
    "affine_theta",
    "augment_frames",
    "augment_pair",
    "crop_mask",
    "draw_transforms",
    "jitter_color",
    "to_model_tensor",
    "warp",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
_INTERPOLATIONS = ("bilinear", "nearest")


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (``augment`` in the training parameters; defaults: docs/models.md MMNet).

    hflip: probability of a horizontal flip. rotation: maximum angle in degrees (uniform in ±rotation,
    positive = counter-clockwise as torchvision). padding: maximum translation in pixels (RandomCrop's padding).
    brightness, contrast, saturation: jitter strengths (factor uniform in [max(0, 1 − s), 1 + s]; 0 = off).
    interpolation: "bilinear" (default) or "nearest" (torchvision RandomRotation's default, the reference).
    """

    hflip: float = 0.5
    rotation: float = 3.0
    padding: int = 15
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"augment.hflip must be a probability in [0, 1], got {self.hflip!r}")
        for name in ("rotation", "brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"augment.{name} must be a non-negative number, got {value!r}")
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"augment.padding must be a non-negative integer (pixels), got {self.padding!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"augment.interpolation must be one of {_INTERPOLATIONS}, got {self.interpolation!r}"
            )

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> AugmentConfig:
        """Build from a parameters mapping; unknown keys raise a ValueError that names them."""
        params = dict(params or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"augment got unknown key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(sorted(known))}"
            )
        return cls(**params)

    @property
    def geometric(self) -> bool:
        return self.hflip > 0 or self.rotation > 0 or self.padding > 0

    @property
    def color(self) -> bool:
        return self.brightness > 0 or self.contrast > 0 or self.saturation > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PairTransform(NamedTuple):
    """Per-sample random parameters (CPU tensors): flip (B,) bool, angle (B,) degrees, shift (B, 2) pixels
    (x, y; content moves by −shift), color (B, 3) brightness/contrast/saturation factors."""

    flip: torch.Tensor
    angle: torch.Tensor
    shift: torch.Tensor
    color: torch.Tensor


def _factor(strength: float, n: int, generator: torch.Generator) -> torch.Tensor:
    low = max(0.0, 1.0 - strength)
    return low + (1.0 + strength - low) * torch.rand(n, generator=generator)


def draw_transforms(batch: int, cfg: AugmentConfig, generator: torch.Generator) -> PairTransform:
    """Draw one transform per sample from ``generator``, always in the same order (reproducible)."""
    flip = torch.rand(batch, generator=generator) < cfg.hflip
    angle = (2.0 * torch.rand(batch, generator=generator) - 1.0) * cfg.rotation
    shift = torch.randint(-cfg.padding, cfg.padding + 1, (batch, 2), generator=generator).float()
    color = torch.stack(
        [_factor(s, batch, generator) for s in (cfg.brightness, cfg.contrast, cfg.saturation)], dim=1
    )
    return PairTransform(flip, angle, shift, color)


def affine_theta(
    flip: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices (align_corners=False) of flip → rotate → translate, per sample.

    Output pixel q (centred pixel coordinates, y down) reads the source at F·R·(q + shift), where R rotates
    the content counter-clockwise by ``angle_deg`` about the image centre and F mirrors x when ``flip``. That
    is torchvision's hflip, then rotate(angle), then pad-and-crop with crop origin ``padding + shift``.
    """
    radians = angle_deg.double() * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    mirror = 1.0 - 2.0 * flip.double()  # -1 flips x
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    # pixel-space linear part F·R, then conjugated by D = diag(W/2, H/2) into normalised coordinates
    linear = torch.stack(
        [torch.stack([mirror * cos, -mirror * sin], -1), torch.stack([sin, cos], -1)], dim=-2
    )  # (B, 2, 2)
    normalised = linear * half[None, None, :] / half[None, :, None]
    offset = (linear @ shift_px.double().unsqueeze(-1)).squeeze(-1) / half
    return torch.cat([normalised, offset.unsqueeze(-1)], dim=-1).float()


def warp(images: torch.Tensor, theta: torch.Tensor, interpolation: str = "bilinear") -> torch.Tensor:
    """Apply per-sample affine maps ``theta`` (B, 2, 3) to (B, C, H, W) with zero fill: one grid_sample call."""
    grid = F.affine_grid(theta.to(images.device, images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=interpolation, padding_mode="zeros", align_corners=False)


def crop_mask(shift_px: torch.Tensor, height: int, width: int, device: torch.device | str) -> torch.Tensor:
    """(B, 1, H, W) mask of output pixels whose crop position lies inside the (rotated) image, not the padding.

    Pad-then-crop after a rotation shows the zero padding strip, while one composed affine map would fill that
    strip with rotated-in content; multiplying by this mask restores the reference's zeros there.
    """
    shift = shift_px.to(device=device, dtype=torch.int64)
    xs = torch.arange(width, device=device) + shift[:, :1]
    ys = torch.arange(height, device=device) + shift[:, 1:]
    inside_x = (xs >= 0) & (xs < width)
    inside_y = (ys >= 0) & (ys < height)
    return inside_y[:, None, :, None] & inside_x[:, None, None, :]


def _stats(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


def jitter_color(frames: list[torch.Tensor], factors: torch.Tensor) -> list[torch.Tensor]:
    """Brightness → contrast → saturation jitter on ImageNet-normalised (B, 3, H, W) frames of the same samples.

    ``factors`` (B, 3) are shared by all frames; the contrast pivot is the mean grey level over all the frames
    of a sample, so every frame of a sample goes through the same pixel map.
    """
    device, dtype = frames[0].device, frames[0].dtype
    mean, std = _stats(device, dtype)
    factors = factors.to(device, dtype)
    brightness, contrast, saturation = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    grey_weights = torch.tensor(_GREY_WEIGHTS, device=device, dtype=dtype).view(1, 3, 1, 1)
    rgb = [(frame * std + mean).mul(brightness).clamp_(0.0, 1.0) for frame in frames]
    pivot = torch.stack([(x * grey_weights).sum(1).mean((1, 2)) for x in rgb]).mean(0).view(-1, 1, 1, 1)
    rgb = [((x - pivot) * contrast + pivot).clamp_(0.0, 1.0) for x in rgb]
    rgb = [
        ((x - (grey := (x * grey_weights).sum(1, keepdim=True))) * saturation + grey).clamp_(0.0, 1.0)
        for x in rgb
    ]
    return [(x - mean) / std for x in rgb]


def _memory_format(images: torch.Tensor) -> torch.memory_format:
    """channels_last when ``images`` is laid out NHWC (and not trivially both), else contiguous."""
    if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def augment_frames(
    frames: Sequence[torch.Tensor], cfg: AugmentConfig, generator: torch.Generator
) -> list[torch.Tensor]:
    """The same random colour jitter and flip/rotation/translation for every frame of each sample.

    ``frames`` are ImageNet-normalised (B, 3, H, W) float tensors of the same samples (e.g. onset and apex) on
    any device; outputs keep shape, device, dtype and memory format. Randomness is drawn from ``generator``
    only, one draw per sample for every part even when a part is off, so switching one part off does not
    reshuffle the others.
    """
    frames = list(frames)
    shapes = {tuple(f.shape) for f in frames}
    if not frames or len(shapes) != 1:
        raise ValueError(f"augment_frames needs one or more frames of the same shape, got {sorted(shapes)}")
    batch, channels, height, width = frames[0].shape
    params = draw_transforms(batch, cfg, generator)
    if cfg.color:
        frames = jitter_color(frames, params.color)
    if not cfg.geometric:
        return frames
    memory_format = _memory_format(frames[0])
    theta = affine_theta(params.flip, params.angle, params.shift, height, width)
    warped = warp(torch.cat(frames, dim=1), theta, cfg.interpolation)
    if cfg.padding > 0 and cfg.rotation > 0:
        warped = warped * crop_mask(params.shift, height, width, warped.device).to(warped.dtype)
    return [part.contiguous(memory_format=memory_format) for part in warped.split(channels, dim=1)]


def augment_pair(
    onset: torch.Tensor, apex: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``augment_frames`` for the (onset, apex) pair: one shared random transform per sample."""
    onset, apex = augment_frames([onset, apex], cfg, generator)
    return onset, apex


def to_model_tensor(
    frames: np.ndarray,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 RGB (N, H, W, 3) → ImageNet-normalised float32 (N, 3, H, W) on ``device``.

    The uint8 array is moved first (4× less to copy to a GPU) and normalised there. With ``channels_last`` the
    result keeps the NHWC memory layout (no copy: an NHWC array permuted to NCHW already has those strides).
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (N, H, W, 3), got {frames.dtype} {frames.shape}")
    raw = torch.from_numpy(np.ascontiguousarray(frames)).to(device, non_blocking=True)
    images = raw.permute(0, 3, 1, 2).float()
    if not channels_last:
        images = images.contiguous()
    mean, std = _stats(images.device, images.dtype)
    return images.sub_(mean * 255.0).div_(std * 255.0)
