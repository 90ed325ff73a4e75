"""Optical flow on known translations, strain on known fields, normalisations and the SAMER maps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from microexpr.vision.flow import (
    farneback_flow,
    flow_magnitude,
    normalise_flow,
    onset_apex_features,
    optical_strain,
    samer_composite,
    samer_magnitude_map,
    samer_on_off_apex,
    tvl1_flow,
)

SIZE = 80
MARGIN = 12  # flow near the border sees content entering the frame; errors are measured inside


def smooth_texture(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(size // 4, size // 4))
    fine = cv2.GaussianBlur(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 1.5)
    return (fine - fine.min()) / (fine.max() - fine.min()) * 180 + 40


def translated_pair(dx: float, dy: float, size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(prev, nxt) with nxt(x, y) = prev(x − dx, y − dy): content moves by (+dx, +dy); float32 on 0–255."""
    pad = 16
    big = smooth_texture(size + 2 * pad, seed)
    prev = big[pad : pad + size, pad : pad + size]
    sample_at = np.array([[1.0, 0.0, pad - dx], [0.0, 1.0, pad - dy]])
    nxt = cv2.warpAffine(big, sample_at, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    return prev.astype(np.float32), nxt.astype(np.float32)


def endpoint_error(flow: np.ndarray, dx: float, dy: float) -> np.ndarray:
    inner = flow[MARGIN:-MARGIN, MARGIN:-MARGIN]
    return np.hypot(inner[..., 0] - dx, inner[..., 1] - dy)


SHIFTS = [(0.3, -0.2), (3.2, -2.1)]  # sub-pixel and multi-pixel


@pytest.mark.parametrize(("dx", "dy"), SHIFTS)
def test_tvl1_recovers_translation(dx: float, dy: float) -> None:
    prev, nxt = translated_pair(dx, dy)
    error = endpoint_error(tvl1_flow(prev, nxt), dx, dy)
    # bounds: mean endpoint error < 0.05 px, worst interior pixel < 0.15 px (measured ≈ 0.004 / 0.02)
    assert error.mean() < 0.05 and error.max() < 0.15


@pytest.mark.parametrize(("dx", "dy"), SHIFTS)
def test_tvl1_at_half_scale_recovers_translation_in_full_size_pixels(dx: float, dy: float) -> None:
    prev, nxt = translated_pair(dx, dy)
    flow = tvl1_flow(prev, nxt, scale=0.5)
    assert flow.shape == (SIZE, SIZE, 2)
    assert endpoint_error(flow, dx, dy).mean() < 0.15  # measured ≈ 0.02–0.07


@pytest.mark.parametrize(("dx", "dy"), SHIFTS)
def test_farneback_recovers_translation(dx: float, dy: float) -> None:
    prev, nxt = translated_pair(dx, dy)
    error = endpoint_error(farneback_flow(prev, nxt), dx, dy)
    # bounds: mean < 0.15 px, worst interior pixel < 0.3 px (measured ≈ 0.06 / 0.1)
    assert error.mean() < 0.15 and error.max() < 0.3


def test_uint8_float_and_rgb_inputs_agree() -> None:
    prev, nxt = translated_pair(1.0, 0.5)
    prev8, nxt8 = np.rint(prev).astype(np.uint8), np.rint(nxt).astype(np.uint8)
    from_uint8 = tvl1_flow(prev8, nxt8)
    # float input is read on the same 0–255 scale (OpenCV itself would expect 0–1 floats)
    np.testing.assert_allclose(
        tvl1_flow(prev8.astype(np.float32), nxt8.astype(np.float32)), from_uint8, atol=1e-5
    )
    rgb = [np.repeat(im[..., None], 3, axis=2) for im in (prev8, nxt8)]
    np.testing.assert_allclose(farneback_flow(*rgb), farneback_flow(prev8, nxt8), atol=1e-5)
    with pytest.raises(ValueError, match="differ in size"):
        farneback_flow(prev8, nxt8[:-1])


def test_strain_of_linear_field_is_its_gradient() -> None:
    a, b = 0.03, -0.02
    y, x = np.mgrid[0:40, 0:50].astype(np.float64)
    stretch = np.dstack([a * x, np.zeros_like(x)])
    np.testing.assert_allclose(optical_strain(stretch)[1:-1, 1:-1], abs(a), rtol=1e-5)
    # pure shear u = b·y: ε_xy = b/2, |ε| = sqrt(2·(b/2)²) = |b|/√2
    shear = np.dstack([b * y, np.zeros_like(y)])
    np.testing.assert_allclose(optical_strain(shear)[1:-1, 1:-1], abs(b) / np.sqrt(2), rtol=1e-5)
    # a rotation has an antisymmetric Jacobian and no strain
    rotation = np.dstack([-b * y, b * x])
    np.testing.assert_allclose(optical_strain(rotation), 0.0, atol=1e-7)


def test_zero_and_uniform_flow_have_zero_strain() -> None:
    assert np.all(optical_strain(np.zeros((10, 12, 2), np.float32)) == 0)
    assert np.all(optical_strain(np.full((10, 12, 2), 2.5, np.float32)) == 0)


def test_magnitude_and_normalisations() -> None:
    flow = np.zeros((4, 5, 2), np.float32)
    flow[1, 2] = (3.0, 4.0)
    flow[3, 0] = (-1.5, 0.0)
    np.testing.assert_allclose(flow_magnitude(flow)[1, 2], 5.0)
    np.testing.assert_array_equal(normalise_flow(flow, "none"), flow)
    minmax = normalise_flow(flow, "minmax")
    assert minmax.min() == 0.0 and minmax.max() == 1.0
    np.testing.assert_allclose(minmax[1, 2], [1.0, 1.0])
    np.testing.assert_allclose(minmax[3, 0, 0], 0.0)
    maxabs = normalise_flow(flow, "maxabs")
    np.testing.assert_allclose(maxabs[1, 2], [0.6, 0.8])
    np.testing.assert_allclose(maxabs[0, 0], 0.0)  # zero motion stays zero
    np.testing.assert_allclose(normalise_flow(flow, "unit", scale=2.0), flow / 2)
    assert np.all(normalise_flow(np.zeros((3, 3, 2)), "minmax") == 0)
    with pytest.raises(ValueError, match="positive scale"):
        normalise_flow(flow, "unit")
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_flow(flow, "zscore")  # type: ignore[arg-type]


def test_onset_apex_features_stack_flow_and_strain() -> None:
    prev, nxt = translated_pair(1.5, 0.0)
    features = onset_apex_features(prev, nxt, method="farneback")
    assert features.shape == (SIZE, SIZE, 3) and features.dtype == np.float32
    inner = features[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert abs(np.median(inner[..., 0]) - 1.5) < 0.1
    assert np.median(inner[..., 2]) < 0.05  # a rigid translation barely strains


@pytest.mark.parametrize("method", ["tvl1", "farneback"])
def test_samer_maps_threshold_and_highlight_the_moving_region(method: str) -> None:
    rng = np.random.default_rng(1)
    onset = smooth_texture(SIZE, seed=2).astype(np.float32)
    # apex: a patch in the upper-left quadrant moves 2 px right; offset: back to rest with sensor noise
    flow_field = np.zeros((SIZE, SIZE, 2), np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    flow_field[..., 0] = 2.0 * np.exp(-((xx - 25) ** 2 + (yy - 25) ** 2) / (2 * 6.0**2))
    map_x = (xx - flow_field[..., 0]).astype(np.float32)
    apex = cv2.remap(onset, map_x, yy.astype(np.float32), cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    offset = onset + rng.normal(0, 0.5, onset.shape).astype(np.float32)
    maps = samer_on_off_apex(onset, apex, offset, method=method)
    assert maps.shape == (SIZE, SIZE, 2) and maps.dtype == np.uint8
    for channel in range(2):
        m = maps[..., channel]
        assert m.max() == 255
        assert (m == 0).mean() > 0.5  # the 1.5 × mean threshold clears the static background
        assert m[20:31, 20:31].mean() > 4 * m[50:, 50:].mean()  # the moving patch dominates
    composite = samer_composite(apex, maps)
    assert composite.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(composite[..., 1:], maps)


def test_samer_magnitude_map_zeroes_values_below_threshold() -> None:
    flow = np.zeros((10, 10, 2), np.float32)
    flow[..., 0] = np.linspace(0, 1, 100).reshape(10, 10)
    scaled_mean = np.mean((flow[..., 0] * 255).astype(np.uint8))
    result = samer_magnitude_map(flow, threshold_factor=1.5)
    kept = (flow[..., 0] * 255).astype(np.uint8) >= 1.5 * scaled_mean
    assert np.all(result[~kept] == 0)
    assert np.all(result[kept] > 0) and kept.sum() > 0
