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

With ``interpolation: nearest`` (the reference code's RandomRotation) the three steps are instead applied in the
reference's order, one sample at a time with torchvision's own ``rotate``, so the pixels are exactly the reference
pipeline's (a composed nearest-neighbour map differs from it at about 1e-5 of the pixels, where float rounding
lands on the other side of a pixel boundary).

The same drawn transform moves the training targets that live on the image grid (``augment_batch``): optical
flow fields are resampled like images and their vectors turned by the inverse linear part (a flip negates u),
landmark points are mapped through the inverse transform and, when flipped, re-indexed by a mirror map
(left eye <-> right eye; ``IBUG68_MIRROR`` for dlib's 68 points). ``random_crop_offsets`` / ``crop_batch`` cut
per-sample crops (e.g. 128² out of 144²) that move points by the crop origin.

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
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

__all__ = [
    "IBUG68_MIRROR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "AugmentedBatch",
    "PairTransform",
    "affine_theta",
    "augment_batch",
    "augment_frames",
    "augment_pair",
    "crop_batch",
    "crop_mask",
    "draw_transforms",
    "inverse_linear",
    "jitter_color",
    "random_crop_offsets",
    "to_input_tensor",
    "to_model_tensor",
    "transform_flow_vectors",
    "transform_points",
    "warp",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
_INTERPOLATIONS = ("bilinear", "nearest")


def _mirror_pairs(pairs: Sequence[tuple[int, int]], n: int) -> tuple[int, ...]:
    order = list(range(n))
    for a, b in pairs:
        order[a], order[b] = b, a
    return tuple(order)


# dlib / iBUG 68-point layout: index i of a mirrored face is point IBUG68_MIRROR[i] of the original (an involution).
IBUG68_MIRROR: tuple[int, ...] = _mirror_pairs(
    [(i, 16 - i) for i in range(8)]  # jaw line
    + [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]  # eyebrows
    + [(31, 35), (32, 34)]  # nostrils (27-30, 33 on the midline)
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips (51, 57 on the midline)
    + [(60, 64), (61, 63), (65, 67)],  # inner lips (62, 66 on the midline)
    68,
)


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (``augment`` in a task's settings, e.g. ``mmnet.task.augment``; defaults: docs/models.md).

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


def _flip_rotation(flip: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """(B, 2, 2) float64 pixel-space linear map F·R (output offsets → source offsets; F mirrors x when ``flip``)."""
    radians = angle_deg.double() * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    mirror = 1.0 - 2.0 * flip.double()  # -1 flips x
    return torch.stack([torch.stack([mirror * cos, -mirror * sin], -1), torch.stack([sin, cos], -1)], dim=-2)


def affine_theta(
    flip: torch.Tensor, angle_deg: torch.Tensor, shift_px: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """(B, 2, 3) ``affine_grid`` matrices (align_corners=False) of flip → rotate → translate, per sample.

    Output pixel q (centred pixel coordinates, y down) reads the source at F·R·(q + shift), where R rotates
    the content counter-clockwise by ``angle_deg`` about the image centre and F mirrors x when ``flip``. That
    is torchvision's hflip, then rotate(angle), then pad-and-crop with crop origin ``padding + shift``.
    """
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    # pixel-space linear part F·R, then conjugated by D = diag(W/2, H/2) into normalised coordinates
    linear = _flip_rotation(flip, angle_deg)  # (B, 2, 2)
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
    """channels_last (NHWC) / channels_last_3d (NDHWC) when ``images`` is laid out so (and not trivially both),
    else contiguous."""
    layout = torch.channels_last if images.ndim == 4 else torch.channels_last_3d if images.ndim == 5 else None
    if layout is not None and images.is_contiguous(memory_format=layout) and not images.is_contiguous():
        return layout
    return torch.contiguous_format


class AugmentedBatch(NamedTuple):
    """What ``augment_batch`` returns: the inputs, flows and points in the order given, all moved alike."""

    images: list[torch.Tensor]
    flows: list[torch.Tensor]
    points: list[torch.Tensor]


def _as_channels(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) as is; a clip (B, C, T, H, W) with its frames stacked on channels (B, C·T, H, W)."""
    if image.ndim == 5:
        return image.reshape(image.shape[0], -1, *image.shape[-2:])
    if image.ndim != 4:
        raise ValueError(f"spatial inputs must be (B, C, H, W) images or (B, C, T, H, W) clips, got {tuple(image.shape)}")
    return image


def _jitter_inputs(images: list[torch.Tensor], colour: Sequence[bool], factors: torch.Tensor) -> list[torch.Tensor]:
    """Colour jitter on the RGB inputs flagged in ``colour`` (clips frame by frame), one pivot per sample."""
    chosen = [i for i, flag in enumerate(colour) if flag]
    if not chosen:
        return images
    frames: list[torch.Tensor] = []
    for i in chosen:
        image = images[i]
        if image.shape[1] != 3:
            raise ValueError(f"colour jitter needs RGB inputs (3 channels), input {i} has shape {tuple(image.shape)}")
        frames.extend(image.unbind(2) if image.ndim == 5 else [image])
    jittered = iter(jitter_color(frames, factors))
    out = list(images)
    for i in chosen:
        out[i] = torch.stack([next(jittered) for _ in range(images[i].shape[2])], 2) if images[i].ndim == 5 else next(
            jittered)
    return out


def _shift_zero_fill(image: torch.Tensor, shift_x: int, shift_y: int) -> torch.Tensor:
    """(C, H, W) moved by (−shift_x, −shift_y) with zero fill: zero padding then a crop at padding + shift."""
    out = torch.zeros_like(image)
    height, width = image.shape[-2:]
    ys, yd = (slice(shift_y, height), slice(0, height - shift_y)) if shift_y >= 0 else (
        slice(0, height + shift_y), slice(-shift_y, height))
    xs, xd = (slice(shift_x, width), slice(0, width - shift_x)) if shift_x >= 0 else (
        slice(0, width + shift_x), slice(-shift_x, width))
    out[..., yd, xd] = image[..., ys, xs]
    return out


def _sequential_nearest(images: torch.Tensor, params: PairTransform) -> torch.Tensor:
    """hflip → torchvision ``rotate`` (nearest) → zero-padded crop, one sample at a time: the reference pipeline."""
    out = torch.empty_like(images)
    for i in range(images.shape[0]):
        image = images[i].flip(-1) if bool(params.flip[i]) else images[i]
        angle = float(params.angle[i])
        if angle != 0.0:
            image = TF.rotate(image, angle, interpolation=InterpolationMode.NEAREST)
        shift_x, shift_y = (int(v) for v in params.shift[i].tolist())
        out[i] = _shift_zero_fill(image, shift_x, shift_y)
    return out


def _apply_geometry(stacked: torch.Tensor, params: PairTransform, cfg: AugmentConfig) -> torch.Tensor:
    """The drawn flip/rotation/translation on (B, C, H, W): one composed map (bilinear) or the reference's steps."""
    batch, _, height, width = stacked.shape
    if cfg.interpolation == "nearest":
        return _sequential_nearest(stacked, params)
    theta = affine_theta(params.flip, params.angle, params.shift, height, width)
    warped = warp(stacked, theta, cfg.interpolation)
    if cfg.padding > 0 and cfg.rotation > 0:
        warped = warped * crop_mask(params.shift, height, width, warped.device).to(warped.dtype)
    return warped


def inverse_linear(params: PairTransform) -> torch.Tensor:
    """(B, 2, 2) float64 inverse of the linear part: how a displacement in the source appears in the output."""
    return torch.linalg.inv(_flip_rotation(params.flip, params.angle))


def transform_flow_vectors(flow: torch.Tensor, params: PairTransform) -> torch.Tensor:
    """Turn the (u, v) vectors of a flow (B, 2, ...) that was already resampled: flip negates u, rotation turns."""
    inverse = inverse_linear(params).to(flow.device, flow.dtype)
    u, v = flow[:, 0], flow[:, 1]
    shape = (-1,) + (1,) * (flow.ndim - 2)
    new_u = inverse[:, 0, 0].view(shape) * u + inverse[:, 0, 1].view(shape) * v
    new_v = inverse[:, 1, 0].view(shape) * u + inverse[:, 1, 1].view(shape) * v
    return torch.stack([new_u, new_v], dim=1)


def transform_points(
    points: torch.Tensor, params: PairTransform, height: int, width: int, mirror: Sequence[int] | None = None
) -> torch.Tensor:
    """Map (x, y) pixel positions (B, ..., K, 2) through the drawn transforms; flipped samples re-indexed by ``mirror``.

    Pixel (column x, row y) has its centre at x + 0.5 in the continuous image; the transform maps output position
    q to source position L·(q + shift) about the image centre, so a source point s lands at L⁻¹·s − shift.
    """
    if points.shape[-1] != 2:
        raise ValueError(f"points must end in (x, y), got shape {tuple(points.shape)}")
    dtype = points.dtype
    centre = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64, device=points.device)
    inverse = inverse_linear(params).to(points.device)
    flat = points.double().reshape(points.shape[0], -1, 2) + 0.5 - centre
    moved = torch.einsum("bij,bnj->bni", inverse, flat) - params.shift.double().to(points.device)[:, None, :]
    out = (moved + centre - 0.5).reshape(points.shape).to(dtype)
    flipped = params.flip.to(points.device)
    if mirror is not None and bool(flipped.any()):
        index = torch.as_tensor(mirror, device=points.device, dtype=torch.long)
        if index.numel() != points.shape[-2]:
            raise ValueError(f"mirror map has {index.numel()} entries for {points.shape[-2]} points")
        out[flipped] = out[flipped].index_select(-2, index)
    return out


def augment_batch(
    images: Sequence[torch.Tensor],
    cfg: AugmentConfig,
    generator: torch.Generator,
    *,
    colour: Sequence[bool] | None = None,
    flows: Sequence[torch.Tensor] = (),
    points: Sequence[torch.Tensor] = (),
    mirror: Sequence[int] | None = None,
) -> AugmentedBatch:
    """One random transform per sample, applied to every spatial input and to the targets it moves.

    ``images``: normalised (B, C, H, W) images or (B, C, T, H, W) clips of the same samples and the same H, W;
    ``colour`` flags the RGB ones that get colour jitter (default: every 3-channel input). ``flows``: (B, 2, H, W)
    or (B, 2, T, H, W) displacement fields in pixels on the same grid, resampled and their vectors turned.
    ``points``: (B, ..., K, 2) (x, y) pixel positions, mapped, and re-indexed by ``mirror`` where flipped.
    Randomness comes from ``generator`` only, one draw per sample for every part even when a part is off, so
    switching one part off does not reshuffle the others.
    """
    images = list(images)
    if not images:
        raise ValueError("augment_batch needs at least one image or clip input")
    batch = images[0].shape[0]
    height, width = images[0].shape[-2:]
    for tensor in [*images, *flows]:
        if tensor.shape[0] != batch or tuple(tensor.shape[-2:]) != (height, width):
            raise ValueError(
                f"every spatial input and flow must share the batch and grid (B={batch}, {height}x{width}), "
                f"got {tuple(tensor.shape)}"
            )
    params = draw_transforms(batch, cfg, generator)
    flags = [image.shape[1] == 3 for image in images] if colour is None else list(colour)
    if cfg.color:
        images = _jitter_inputs(images, flags, params.color)
    if not cfg.geometric:
        return AugmentedBatch(images, list(flows), list(points))
    parts = [*images, *flows]
    memory_format = _memory_format(images[0])
    stacked = [_as_channels(part) for part in parts]
    moved = _apply_geometry(torch.cat(stacked, dim=1), params, cfg).split([s.shape[1] for s in stacked], dim=1)
    restored = [m.reshape(p.shape) for m, p in zip(moved, parts, strict=True)]
    out_images = [m.contiguous(memory_format=memory_format) for m in restored[: len(images)]]
    out_flows = [transform_flow_vectors(f, params) for f in restored[len(images):]]
    out_points = [transform_points(p, params, height, width, mirror) for p in points]
    return AugmentedBatch(out_images, out_flows, out_points)


def augment_frames(
    frames: Sequence[torch.Tensor], cfg: AugmentConfig, generator: torch.Generator
) -> list[torch.Tensor]:
    """The same random colour jitter and flip/rotation/translation for every frame of each sample.

    ``frames`` are ImageNet-normalised (B, 3, H, W) float tensors of the same samples (e.g. onset and apex) on
    any device; outputs keep shape, device, dtype and memory format (``augment_batch`` with images only).
    """
    frames = list(frames)
    shapes = {tuple(f.shape) for f in frames}
    if not frames or len(shapes) != 1:
        raise ValueError(f"augment_frames needs one or more frames of the same shape, got {sorted(shapes)}")
    return augment_batch(frames, cfg, generator, colour=[True] * len(frames)).images


def random_crop_offsets(
    batch: int, size_in: tuple[int, int], size_out: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """(B, 2) integer (x, y) origins of a uniform random ``size_out`` crop inside ``size_in`` per sample."""
    (h_in, w_in), (h_out, w_out) = size_in, size_out
    if h_out > h_in or w_out > w_in:
        raise ValueError(f"crop {size_out} is larger than the input {size_in}")
    x = torch.randint(0, w_in - w_out + 1, (batch,), generator=generator)
    y = torch.randint(0, h_in - h_out + 1, (batch,), generator=generator)
    return torch.stack([x, y], dim=1)


def crop_batch(tensor: torch.Tensor, origins: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-sample crops of (B, ..., H, W) at ``origins`` (B, 2) (x, y); subtract the origins from points to follow."""
    height, width = size
    return torch.stack([
        tensor[i, ..., y : y + height, x : x + width] for i, (x, y) in enumerate(origins.tolist())
    ])


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


def to_input_tensor(
    array: np.ndarray,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> torch.Tensor:
    """Channels-last numpy (N, H, W, C) or (N, T, H, W, C) → float32 (N, C, H, W) / (N, C, T, H, W) on ``device``.

    uint8 arrays are scaled to [0, 1] and then normalised per channel by ``mean``/``std`` (None: no
    normalisation); float arrays (flow in pixels) are normalised as they are. ``channels_last`` keeps the
    array's channels-last memory layout (no copy): NHWC images come out ``channels_last``, NTHWC clips
    ``channels_last_3d``.
    """
    if array.ndim not in (4, 5):
        raise ValueError(f"expected (N, H, W, C) or (N, T, H, W, C), got shape {array.shape}")
    raw = torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)
    order = (0, 3, 1, 2) if array.ndim == 4 else (0, 4, 1, 2, 3)
    tensor = raw.permute(*order).float()
    if not channels_last:
        tensor = tensor.contiguous()
    channels = tensor.shape[1]
    view = (1, channels) + (1,) * (tensor.ndim - 2)
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    if mean is not None:
        if len(mean) != channels:
            raise ValueError(f"normalisation mean has {len(mean)} values for {channels} channels")
        tensor = tensor.sub_(torch.tensor(mean, dtype=tensor.dtype, device=tensor.device).view(view) * scale)
    if std is not None:
        if len(std) != channels:
            raise ValueError(f"normalisation std has {len(std)} values for {channels} channels")
        tensor = tensor.div_(torch.tensor(std, dtype=tensor.dtype, device=tensor.device).view(view) * scale)
    elif scale != 1.0:
        tensor = tensor.div_(scale)
    return tensor
