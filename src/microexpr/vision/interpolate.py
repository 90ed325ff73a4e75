"""Temporal resampling of a frame sequence to a fixed length: linear (``uniform_resample``) and the Temporal
Interpolation Model (``tim_interpolate``; Zhou, Zhao & Pietikäinen, CVPR 2011; used for micro-expressions by
Pfister et al., ICCV 2011, and by the attribute-embedding paper to get 16 frames).

Frames are an array (or sequence) of shape (n, ...) — grey (n, H, W) or colour (n, H, W, C). Integer input is
returned rounded and clipped to its dtype; float input keeps its dtype. Output frames j = 0..n_out−1 sit at the
uniformly spaced input positions s_j = j·(n−1)/(n_out−1), so the first and last frames are reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_stack(frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    stack = np.asarray(frames)
    if stack.ndim < 2:
        raise ValueError(f"expected frames of shape (n, ...), got {stack.shape}")
    return stack


def _check_lengths(n_in: int, n_out: int) -> None:
    if n_in < 2:
        raise ValueError(f"cannot interpolate a sequence of {n_in} frame(s): need at least 2")
    if n_out < 2:
        raise ValueError(f"n_out must be at least 2 (first and last frame), got {n_out}")


def _restore_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype if np.issubdtype(dtype, np.floating) else np.float32)


def sample_positions(n_in: int, n_out: int) -> np.ndarray:
    """Input-frame positions (float, 0-based) of the ``n_out`` output frames; exact 0 and n_in − 1 at the ends."""
    _check_lengths(n_in, n_out)
    return np.linspace(0.0, n_in - 1.0, n_out)


def uniform_resample(frames: Sequence[np.ndarray] | np.ndarray, n_out: int) -> np.ndarray:
    """Linear interpolation in time between the two neighbouring input frames of each output position."""
    stack = _as_stack(frames)
    positions = sample_positions(len(stack), n_out)
    lower = np.minimum(np.floor(positions).astype(int), len(stack) - 2)
    weight = (positions - lower).reshape((-1,) + (1,) * (stack.ndim - 1))
    values = (1.0 - weight) * stack[lower].astype(np.float64) + weight * stack[lower + 1].astype(np.float64)
    return _restore_dtype(values, stack.dtype)


def path_graph_embedding(positions: np.ndarray, n: int) -> np.ndarray:
    """The TIM curve: (len(positions), n − 1) coordinates cos(π·k·(s + ½)/n), k = 1..n−1, at 0-based positions s.

    At integer s = 0..n−1 these are the non-constant eigenvectors of the Laplacian of the path graph on n
    vertices (eigenvalues 2 − 2cos(πk/n)); the closed form extends them to a continuous curve. (They are the
    DCT-II basis vectors, which is why the embedding needs no eigen-solver.)
    """
    k = np.arange(1, n)
    return np.cos(np.pi * np.outer(np.asarray(positions, dtype=np.float64) + 0.5, k) / n)


def tim_interpolate(
    frames: Sequence[np.ndarray] | np.ndarray, n_out: int, *, n_components: int | None = None
) -> np.ndarray:
    """Temporal Interpolation Model: resample ``frames`` (n, ...) to ``n_out`` frames along a smooth curve.

    Math (Zhou et al. 2011). The n frames are the vertices of a path graph (frame i linked to i ± 1). Its
    Laplacian's non-constant eigenvectors embed frame i at y(i) ∈ R^(n−1), and in closed form
    y_k(s) = cos(πk(s + ½)/n), k = 1..n−1, which is a continuous curve in s (``path_graph_embedding``). The frames
    are mean-centred and reduced by PCA (x_i − μ ≈ V z_i, V the top principal directions); a linear map W with
    z_i = Wᵀ y(i) is fitted by least squares over the n frames (exact here: y(0..n−1) with the constant form an
    orthogonal basis). New frames are x(s_j) = μ + V Wᵀ y(s_j) at s_j = j(n−1)/(n_out − 1). So TIM is cosine-series
    (DCT) interpolation of the PCA coefficients; it reproduces every input frame at integer s, handles n_out > n
    (upsampling) and n_out < n (evaluating the curve at fewer points) alike.

    ``n_components`` (default: all, i.e. rank ≤ n − 1) keeps fewer principal components, which denoises but no
    longer reproduces the input frames. For n = 2 the curve is a half cosine, which would ease in and out of a
    uniform motion; linear interpolation is returned instead. n < 2 raises ``ValueError``.
    """
    stack = _as_stack(frames)
    n = len(stack)
    _check_lengths(n, n_out)
    if n_components is not None and n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if n == 2:
        return uniform_resample(stack, n_out)
    flat = stack.reshape(n, -1).astype(np.float64)
    mean = flat.mean(axis=0)
    u, singular, vt = np.linalg.svd(flat - mean, full_matrices=False)
    rank = int(np.sum(singular > singular.max(initial=0.0) * 1e-12)) if singular.size else 0
    keep = rank if n_components is None else min(int(n_components), rank)
    codes = u[:, :keep] * singular[:keep]  # PCA coefficients z_i, (n, keep)
    curve = path_graph_embedding(np.arange(n), n)  # (n, n - 1)
    weights, *_ = np.linalg.lstsq(curve, codes, rcond=None)  # (n - 1, keep)
    new_codes = path_graph_embedding(sample_positions(n, n_out), n) @ weights
    values = mean + new_codes @ vt[:keep]
    return _restore_dtype(values.reshape((n_out,) + stack.shape[1:]), stack.dtype)
