"""Batched paired augmentation: one shared transform per sample, each part checked against torchvision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from microexpr.training.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    affine_theta,
    augment_frames,
    augment_pair,
    crop_mask,
    draw_transforms,
    to_model_tensor,
    warp,
)

GEOMETRY_OFF = {
    "hflip": 0.0,
    "rotation": 0.0,
    "padding": 0,
    "brightness": 0.0,
    "contrast": 0.0,
    "saturation": 0.0,
}


def _images(batch: int = 3, height: int = 24, width: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _torchvision_reference(
    image: torch.Tensor, flip: bool, angle: float, shift: tuple[int, int], pad: int
) -> torch.Tensor:
    """The reference's sequential steps: hflip, rotate (bilinear here), zero pad, crop at pad + shift."""
    out = TF.hflip(image) if flip else image
    out = TF.rotate(out, angle, interpolation=InterpolationMode.BILINEAR)
    out = TF.pad(out, pad)
    height, width = image.shape[-2:]
    return out[..., pad + shift[1] : pad + shift[1] + height, pad + shift[0] : pad + shift[0] + width]


def test_to_model_tensor_normalises_and_keeps_layout() -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 5, 6, 3), dtype=np.uint8)
    mean = np.array(IMAGENET_MEAN, dtype=np.float32)
    std = np.array(IMAGENET_STD, dtype=np.float32)
    expected = ((frames / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    plain = to_model_tensor(frames)
    nhwc = to_model_tensor(frames, channels_last=True)
    assert plain.shape == (2, 3, 5, 6) and plain.dtype == torch.float32 and plain.is_contiguous()
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not nhwc.is_contiguous()
    np.testing.assert_allclose(plain.numpy(), expected, atol=1e-5)
    assert torch.equal(plain, nhwc)
    with pytest.raises(ValueError, match="uint8"):
        to_model_tensor(frames.astype(np.float32))


def test_identical_onset_and_apex_stay_identical_with_every_part_on() -> None:
    cfg = AugmentConfig(hflip=0.5, rotation=10.0, padding=4, brightness=0.4, contrast=0.4, saturation=0.4)
    frames = _images(8)
    onset, apex = augment_pair(frames, frames.clone(), cfg, torch.Generator().manual_seed(1))
    assert torch.equal(onset, apex)
    assert not torch.allclose(onset, frames)  # something did happen


def test_every_frame_gets_the_same_geometric_transform() -> None:
    """Geometry is linear, so the motion (apex − onset) transformed alongside equals the transformed difference."""
    cfg = AugmentConfig(
        hflip=0.5, rotation=5.0, padding=3, **{k: 0.0 for k in ("brightness", "contrast", "saturation")}
    )
    onset, apex = _images(6, seed=1), _images(6, seed=2)
    out_onset, out_apex, out_motion = augment_frames(
        [onset, apex, apex - onset], cfg, torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(out_apex - out_onset, out_motion, atol=1e-5, rtol=0)


def test_flip_mirrors_exactly() -> None:
    frames = _images()
    cfg = AugmentConfig(**{**GEOMETRY_OFF, "hflip": 1.0})
    (flipped,) = augment_frames([frames], cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(flipped, torch.flip(frames, dims=[-1]), atol=1e-5, rtol=0)


def test_translation_is_pad_then_crop_with_zero_fill() -> None:
    frames = _images(16)
    cfg = AugmentConfig(**{**GEOMETRY_OFF, "padding": 3})
    (shifted,) = augment_frames([frames], cfg, torch.Generator().manual_seed(2))
    shifts = draw_transforms(16, cfg, torch.Generator().manual_seed(2)).shift.long()
    assert shifts.abs().max() <= 3 and shifts.unique().numel() > 3
    for image, out, (tx, ty) in zip(frames, shifted, shifts.tolist(), strict=True):
        expected = _torchvision_reference(image, False, 0.0, (tx, ty), 3)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("flip", "angle", "shift"), [(False, 10.0, (0, 0)), (True, -7.0, (2, 5)), (True, 3.0, (-6, 6))]
)
def test_composed_map_matches_torchvision_sequence(flip: bool, angle: float, shift: tuple[int, int]) -> None:
    image = _images(1, 40, 48)
    shift_t = torch.tensor([shift], dtype=torch.float32)
    theta = affine_theta(torch.tensor([flip]), torch.tensor([angle]), shift_t, 40, 48)
    ours = warp(image, theta) * crop_mask(shift_t, 40, 48, "cpu")
    expected = _torchvision_reference(image[0], flip, angle, shift, 6)
    torch.testing.assert_close(ours[0], expected, atol=1e-4, rtol=0)


def test_rotation_turns_counter_clockwise() -> None:
    """A bright dot right of centre moves up (y decreases) under a positive angle, as torchvision's rotate."""
    image = torch.zeros(1, 3, 41, 41)
    image[..., 20, 30] = 1.0
    theta = affine_theta(torch.tensor([False]), torch.tensor([90.0]), torch.zeros(1, 2), 41, 41)
    rotated = warp(image, theta, "nearest")
    y, x = np.unravel_index(int(rotated[0, 0].argmax()), (41, 41))
    assert (y, x) == (10, 20)


def test_colour_jitter_brightness_matches_its_factor_and_fill_is_mean_colour() -> None:
    frames = _images(4) * 0.3
    cfg = AugmentConfig(**{**GEOMETRY_OFF, "brightness": 0.5})
    (out,) = augment_frames([frames], cfg, torch.Generator().manual_seed(3))
    factors = draw_transforms(4, cfg, torch.Generator().manual_seed(3)).color[:, 0]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = ((frames * std + mean) * factors.view(-1, 1, 1, 1)).clamp(0, 1).sub(mean).div(std)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert ((factors >= 0.5) & (factors <= 1.5)).all()
    # a rotated, shifted constant image keeps 0 (= the mean colour) where nothing is covered
    cfg = AugmentConfig(**{**GEOMETRY_OFF, "rotation": 20.0, "padding": 5})
    (moved,) = augment_frames([torch.full((8, 3, 20, 20), 2.0)], cfg, torch.Generator().manual_seed(0))
    assert (moved == 0).any() and moved.max() <= 2.0 + 1e-5


def test_same_generator_seed_same_result_and_channels_last_kept() -> None:
    cfg = AugmentConfig()
    frames = _images(4).contiguous(memory_format=torch.channels_last)
    first = augment_pair(frames, frames + 0.1, cfg, torch.Generator().manual_seed(9))
    again = augment_pair(frames, frames + 0.1, cfg, torch.Generator().manual_seed(9))
    other = augment_pair(frames, frames + 0.1, cfg, torch.Generator().manual_seed(10))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], other[0])
    assert first[0].is_contiguous(memory_format=torch.channels_last)


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    assert AugmentConfig.from_params({"rotation": 4.0, "padding": 4}).padding == 4
    with pytest.raises(ValueError, match="'colour_jitter'"):
        AugmentConfig.from_params({"colour_jitter": 0.2})
    with pytest.raises(ValueError, match="hflip"):
        AugmentConfig(hflip=1.5)
    with pytest.raises(ValueError, match="padding"):
        AugmentConfig(padding=2.5)


# ------------------------------------------------------------------------------------ targets moved alike
from microexpr.training.augment import (  # noqa: E402
    IBUG68_MIRROR,
    augment_batch,
    crop_batch,
    random_crop_offsets,
    transform_flow_vectors,
    transform_points,
)

GEOMETRY_ONLY = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0}


def test_ibug68_mirror_map_is_an_involution_that_swaps_left_and_right() -> None:
    mirror = np.asarray(IBUG68_MIRROR)
    assert sorted(mirror.tolist()) == list(range(68))
    assert (mirror[mirror] == np.arange(68)).all()
    assert mirror[36] == 45 and mirror[0] == 16 and mirror[48] == 54  # outer eye corners, jaw ends, mouth corners
    assert [i for i in range(68) if mirror[i] == i] == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]  # the midline


def _params(flip: bool, angle: float = 0.0, shift: tuple[int, int] = (0, 0)):
    from microexpr.training.augment import PairTransform

    return PairTransform(torch.tensor([flip]), torch.tensor([angle]), torch.tensor([shift], dtype=torch.float32),
                         torch.ones(1, 3))


def test_flip_negates_flow_u_and_mirrors_points_and_twice_is_identity() -> None:
    flow = torch.randn(1, 2, 8, 10, generator=torch.Generator().manual_seed(0))
    flipped = transform_flow_vectors(flow, _params(True))
    torch.testing.assert_close(flipped[:, 0], -flow[:, 0])
    torch.testing.assert_close(flipped[:, 1], flow[:, 1])
    points = torch.rand(1, 68, 2, generator=torch.Generator().manual_seed(1)) * torch.tensor([10.0, 8.0])
    once = transform_points(points, _params(True), 8, 10, IBUG68_MIRROR)
    torch.testing.assert_close(once[0, :, 0], (9.0 - points[0, :, 0])[list(IBUG68_MIRROR)])  # x -> W - 1 - x
    twice = transform_points(once, _params(True), 8, 10, IBUG68_MIRROR)
    torch.testing.assert_close(twice, points)
    cfg = AugmentConfig(hflip=1.0, rotation=0.0, padding=0, **GEOMETRY_ONLY)
    image = _images(2, 8, 10)
    flow2 = torch.randn(2, 2, 8, 10)
    once_batch = augment_batch([image], cfg, torch.Generator().manual_seed(0), flows=[flow2])
    twice_batch = augment_batch(once_batch.images, cfg, torch.Generator().manual_seed(0), flows=once_batch.flows)
    torch.testing.assert_close(twice_batch.images[0], image, atol=1e-5, rtol=0)
    torch.testing.assert_close(twice_batch.flows[0], flow2, atol=1e-5, rtol=0)


def test_points_follow_the_image_and_flow_vectors_follow_the_points() -> None:
    """A bright dot lands where transform_points sends its pixel; a displacement turns like a pair of points."""
    size = 41
    cfg = AugmentConfig(hflip=0.5, rotation=20.0, padding=4, **GEOMETRY_ONLY)
    generator = torch.Generator().manual_seed(7)
    images = torch.zeros(6, 3, size, size)
    dot = torch.tensor([27.0, 14.0])  # (x, y)
    images[..., 14, 27] = 1.0
    point = dot.expand(6, 1, 2).clone()
    moved = augment_batch([images], AugmentConfig(**{**cfg.as_dict(), "interpolation": "nearest"}),
                          torch.Generator().manual_seed(7), points=[point])
    for i in range(6):
        y, x = np.unravel_index(int(moved.images[0][i, 0].argmax()), (size, size))
        assert abs(x - float(moved.points[0][i, 0, 0])) <= 1 and abs(y - float(moved.points[0][i, 0, 1])) <= 1
    from microexpr.training.augment import draw_transforms

    params = draw_transforms(6, cfg, generator)
    displacement = torch.tensor([1.5, -0.5])
    start = transform_points(point, params, size, size)
    end = transform_points(point + displacement, params, size, size)
    vectors = transform_flow_vectors(displacement.view(1, 2, 1, 1).expand(6, 2, 1, 1), params)
    torch.testing.assert_close((end - start)[:, 0], vectors[:, :, 0, 0], atol=1e-5, rtol=0)


def test_nearest_mode_reproduces_the_reference_torchvision_pipeline_bit_for_bit() -> None:
    """--env mmnet_reference: RandomHorizontalFlip → RandomRotation (nearest) → RandomCrop(pad) on stacked frames."""
    cfg = AugmentConfig(hflip=0.5, rotation=3.0, padding=15, interpolation="nearest", **GEOMETRY_ONLY)
    onset, apex = _images(16, 224, 224, seed=3), _images(16, 224, 224, seed=4)
    ours = augment_frames([onset, apex], cfg, torch.Generator().manual_seed(11))
    params = draw_transforms(16, cfg, torch.Generator().manual_seed(11))
    assert params.flip.any() and (~params.flip).any() and (params.angle != 0).all()
    for i in range(16):
        stacked = torch.cat([onset[i], apex[i]])
        out = TF.hflip(stacked) if bool(params.flip[i]) else stacked
        out = TF.rotate(out, float(params.angle[i]), interpolation=InterpolationMode.NEAREST)
        out = TF.pad(out, 15)
        tx, ty = (int(v) for v in params.shift[i].tolist())
        reference = out[..., 15 + ty : 15 + ty + 224, 15 + tx : 15 + tx + 224]
        assert torch.equal(torch.cat([ours[0][i], ours[1][i]]), reference), f"sample {i}"


def test_random_crops_move_points_by_the_crop_origin() -> None:
    images = torch.arange(2 * 1 * 6 * 8, dtype=torch.float32).view(2, 1, 6, 8)
    origins = random_crop_offsets(2, (6, 8), (4, 5), torch.Generator().manual_seed(0))
    crops = crop_batch(images, origins, (4, 5))
    assert crops.shape == (2, 1, 4, 5)
    for i, (x, y) in enumerate(origins.tolist()):
        assert torch.equal(crops[i, 0], images[i, 0, y : y + 4, x : x + 5])
        point = torch.tensor([x + 2.0, y + 1.0])  # a pixel inside the crop ...
        assert crops[i, 0, 1, 2] == images[i, 0, int(point[1]), int(point[0])]  # ... is at point - origin
    with pytest.raises(ValueError, match="larger"):
        random_crop_offsets(1, (4, 4), (5, 4), torch.Generator())
