"""Temporal resampling: linear and TIM on sequences with a known (linear) time course."""

from __future__ import annotations

import numpy as np
import pytest

from microexpr.vision.interpolate import (
    path_graph_embedding,
    sample_positions,
    tim_interpolate,
    uniform_resample,
)


def ramp(
    n_frames: int, shape: tuple[int, ...] = (6, 7), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames base + slope·t, t = i/(n−1) ∈ [0, 1]: every pixel changes linearly in time at its own rate."""
    rng = np.random.default_rng(seed)
    base, slope = rng.uniform(50, 150, shape), rng.uniform(-60, 60, shape)
    t = np.linspace(0.0, 1.0, n_frames).reshape((-1,) + (1,) * len(shape))
    return base + slope * t, base, slope


def expected_ramp(base: np.ndarray, slope: np.ndarray, n_out: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n_out).reshape((-1,) + (1,) * base.ndim)
    return base + slope * t


@pytest.mark.parametrize(("n_in", "n_out"), [(2, 16), (5, 16), (30, 16), (9, 9)])
def test_uniform_resample_is_exact_on_a_ramp(n_in: int, n_out: int) -> None:
    frames, base, slope = ramp(n_in)
    np.testing.assert_allclose(uniform_resample(frames, n_out), expected_ramp(base, slope, n_out), atol=1e-9)


@pytest.mark.parametrize(("n_in", "n_out"), [(3, 16), (5, 16), (8, 16), (30, 16), (100, 16), (11, 7)])
def test_tim_follows_a_ramp_and_keeps_endpoints(n_in: int, n_out: int) -> None:
    frames, base, slope = ramp(n_in)
    out = tim_interpolate(frames, n_out)
    assert out.shape == (n_out,) + frames.shape[1:]
    np.testing.assert_allclose(out[0], frames[0], atol=1e-9)
    np.testing.assert_allclose(out[-1], frames[-1], atol=1e-9)
    # the cosine curve bends near the ends (even extension of the ramp): bound the error by 10 % of one input
    # step; measured 8 % (n=3), 5 % (n=5 and 8), 1.4 % (11 → 7), < 0.3 % (n ≥ 30)
    step = np.abs(slope).max() / (n_in - 1)
    assert np.abs(out - expected_ramp(base, slope, n_out)).max() < 0.1 * step


def test_tim_reproduces_input_frames_at_their_positions() -> None:
    rng = np.random.default_rng(1)
    frames = rng.uniform(0, 255, (7, 5, 4, 3))  # colour, no particular time course
    same = tim_interpolate(frames, 7)
    np.testing.assert_allclose(same, frames, atol=1e-8)
    doubled = tim_interpolate(frames, 13)  # positions 0, 0.5, 1, ... : every other output is an input frame
    np.testing.assert_allclose(doubled[::2], frames, atol=1e-8)


def test_tim_is_smooth_not_piecewise_linear() -> None:
    """On a non-linear time course TIM differs from linear interpolation between neighbours."""
    t = np.arange(6.0)
    frames = np.sin(t / 5 * np.pi)[:, None, None] * np.ones((1, 2, 2))
    tim, linear = tim_interpolate(frames, 11)[1::2, 0, 0], uniform_resample(frames, 11)[1::2, 0, 0]
    truth = np.sin((t[:-1] + 0.5) / 5 * np.pi)
    assert np.abs(tim - truth).max() < np.abs(linear - truth).max()


def test_uint8_frames_round_and_stay_uint8() -> None:
    frames = np.stack([np.full((3, 3), v, np.uint8) for v in (0, 100, 200, 250)])
    for fn in (tim_interpolate, uniform_resample):
        out = fn(frames, 7)
        assert out.dtype == np.uint8 and out[0, 0, 0] == 0 and out[-1, 0, 0] == 250


def test_two_frames_fall_back_to_linear_and_one_frame_is_an_error() -> None:
    frames, base, slope = ramp(2)
    np.testing.assert_allclose(tim_interpolate(frames, 5), expected_ramp(base, slope, 5), atol=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        tim_interpolate(frames[:1], 16)
    with pytest.raises(ValueError, match="at least 2"):
        uniform_resample(frames[:1], 16)
    with pytest.raises(ValueError, match="n_out"):
        tim_interpolate(frames, 1)


def test_embedding_is_the_path_graph_laplacian_spectrum() -> None:
    n = 6
    laplacian = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    laplacian[0, 0] = laplacian[-1, -1] = 1
    vectors = path_graph_embedding(np.arange(n), n)
    eigenvalues = 2 - 2 * np.cos(np.pi * np.arange(1, n) / n)
    np.testing.assert_allclose(laplacian @ vectors, vectors * eigenvalues, atol=1e-12)
    np.testing.assert_allclose(sample_positions(5, 3), [0.0, 2.0, 4.0])


def test_fewer_components_denoise() -> None:
    frames, base, slope = ramp(12, shape=(20, 20))
    noisy = frames + np.random.default_rng(2).normal(0, 2.0, frames.shape)
    truth = expected_ramp(base, slope, 16)
    full = np.abs(tim_interpolate(noisy, 16) - truth).mean()
    reduced = np.abs(tim_interpolate(noisy, 16, n_components=1) - truth).mean()
    assert reduced < full
