"""Dense optical flow (TV-L1, Farneback), optical strain and the flow features the five papers feed their models.

Conventions: frames are grey (H, W) — colour (H, W, 3) RGB is converted — uint8, or float on the same 0–255
scale. A flow field is (H, W, 2) float32, channel 0 = u (x, to the right), channel 1 = v (y, down), in pixels of
the input frames, such that ``prev(x, y) ≈ nxt(x + u, y + v)``.

Cost per 224² pair on a 2-core CPU, OpenCV 5.0: TV-L1 with default parameters 0.34 s (face_synthesis.md §3.1)
to 0.78 s (measured on a busy machine), 0.21 s with ``scale=0.5``, 0.52 s with SAMER's ``scale_step=0.5``;
Farneback 8 ms. TV-L1 is what MOL (flow targets) and SAMER (On-A/Off-A) use; the attribute-embedding paper uses
Farneback.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

FlowMethod = Literal["tvl1", "farneback"]
NormaliseMethod = Literal["none", "minmax", "maxabs", "unit"]


def _grey_float(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 on the 0–255 scale from grey or RGB, uint8 or float (0–255) input."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr.astype(np.float32) if arr.dtype != np.uint8 else arr, cv2.COLOR_RGB2GRAY)
    elif arr.ndim != 2:
        raise ValueError(f"expected a grey (H, W) or RGB (H, W, 3) frame, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def _check_pair(prev: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _grey_float(prev), _grey_float(nxt)
    if a.shape != b.shape:
        raise ValueError(f"frames differ in size: {a.shape} vs {b.shape}")
    return a, b


def _at_scale(flow_fn, prev: np.ndarray, nxt: np.ndarray, scale: float) -> np.ndarray:
    """Run ``flow_fn`` on copies shrunk by ``scale`` and bring the flow back to full size and full-size pixels."""
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if scale == 1.0:
        return flow_fn(prev, nxt)
    h, w = prev.shape
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = flow_fn(
        cv2.resize(prev, size, interpolation=cv2.INTER_AREA),
        cv2.resize(nxt, size, interpolation=cv2.INTER_AREA),
    )
    flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    flow[..., 0] *= w / size[0]
    flow[..., 1] *= h / size[1]
    return flow


def tvl1_flow(
    prev: np.ndarray,
    nxt: np.ndarray,
    *,
    tau: float = 0.25,
    lambda_: float = 0.15,
    theta: float = 0.3,
    nscales: int = 5,
    warps: int = 5,
    epsilon: float = 0.01,
    inner_iterations: int = 30,
    outer_iterations: int = 10,
    scale_step: float = 0.8,
    median_filtering: int = 5,
    scale: float = 1.0,
) -> np.ndarray:
    """Dual TV-L1 optical flow (Zach et al. 2007; OpenCV contrib ``DualTVL1OpticalFlow``), (H, W, 2) float32 px.

    Defaults are OpenCV's, which is what MOL's reference uses for its flow targets; SAMER's reference uses
    ``scale_step=0.5``. ``lambda_`` weighs the data term (smaller = smoother flow), ``theta`` couples the two
    sub-problems, ``tau`` is the time step, ``nscales``/``scale_step`` set the coarse-to-fine pyramid, ``warps``
    the re-warps per scale, ``epsilon`` the stopping threshold. ``scale`` < 1 computes the flow on frames
    shrunk by that factor (``INTER_AREA``) and upsamples the result, vectors rescaled to full-size pixels: 0.5
    is ≈ 3.6× faster (0.78 → 0.21 s at 224²) and loses detail finer than ~2 px.
    """

    def compute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        solver = cv2.optflow.DualTVL1OpticalFlow_create(
            tau=tau,
            lambda_=lambda_,
            theta=theta,
            nscales=nscales,
            warps=warps,
            epsilon=epsilon,
            innnerIterations=inner_iterations,  # sic: OpenCV's keyword
            outerIterations=outer_iterations,
            scaleStep=scale_step,
            medianFiltering=median_filtering,
        )
        # OpenCV rescales float input by 255 (it expects 0-1 floats), so hand it 0-1.
        return solver.calc(a / 255.0, b / 255.0, None)

    a, b = _check_pair(prev, nxt)
    return _at_scale(compute, a, b, scale).astype(np.float32, copy=False)


def farneback_flow(
    prev: np.ndarray,
    nxt: np.ndarray,
    *,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.2,
    gaussian_window: bool = False,
    scale: float = 1.0,
) -> np.ndarray:
    """Farneback polynomial-expansion flow (``cv2.calcOpticalFlowFarneback``), (H, W, 2) float32 px.

    The attribute-embedding paper gives no parameters; the defaults are OpenCV's documented example values
    (pyramid 0.5 × 3 levels, 15 px window, 3 iterations, poly_n 5 / sigma 1.2). ``scale`` as in ``tvl1_flow``.
    """

    def compute(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        flags = cv2.OPTFLOW_FARNEBACK_GAUSSIAN if gaussian_window else 0
        return cv2.calcOpticalFlowFarneback(
            a, b, None, pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
        )

    a, b = _check_pair(prev, nxt)
    return _at_scale(compute, a, b, scale).astype(np.float32, copy=False)


def compute_flow(
    prev: np.ndarray, nxt: np.ndarray, method: FlowMethod = "tvl1", **params: float
) -> np.ndarray:
    """Dispatch to ``tvl1_flow`` or ``farneback_flow`` by name."""
    if method == "tvl1":
        return tvl1_flow(prev, nxt, **params)
    if method == "farneback":
        return farneback_flow(prev, nxt, **params)
    raise ValueError(f"unknown flow method {method!r}; expected 'tvl1' or 'farneback'")


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """|flow| = sqrt(u² + v²), (H, W) float32."""
    return np.hypot(flow[..., 0], flow[..., 1]).astype(np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Magnitude of the optical strain tensor, (H, W) float32 (per pixel, unitless).

    The strain tensor is the symmetric part of the flow Jacobian, ε = ½(∇w + ∇wᵀ) with w = (u, v):
    ε_xx = ∂u/∂x, ε_yy = ∂v/∂y, ε_xy = ε_yx = ½(∂u/∂y + ∂v/∂x). Its magnitude is the Frobenius norm
    |ε| = sqrt(ε_xx² + ε_yy² + 2·ε_xy²) (Shreve et al.; as in Off-ApexNet/STSTNet and SAMER's reference, which uses
    backward differences). Derivatives are ``np.gradient`` central differences (one-sided at the border), so a
    linear field u = a·x gives |a| everywhere and a rigid translation gives 0.
    """
    u = flow[..., 0].astype(np.float64)
    v = flow[..., 1].astype(np.float64)
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * shear**2).astype(np.float32)


def normalise_flow(
    flow: np.ndarray, method: NormaliseMethod = "none", *, scale: float | None = None
) -> np.ndarray:
    """Rescale a flow-derived feature (H, W) or (H, W, C) per sample; returns float32.

    * ``"none"``: pixels, unchanged. MOL's flow targets (reference_models.md §4.3: raw TV-L1 pixels).
    * ``"minmax"``: each channel to [0, 1] by its own min and max over this sample (zero motion no longer maps to a
      fixed value). Apex-frame flow inputs of the MEB/STSTNet family; SAMER's On-A/Off-A maps (×255).
    * ``"maxabs"``: all channels divided by this sample's largest flow magnitude (sqrt(u²+v²) over the first two
      channels when C ≥ 2, else |x|), so directions and zero are kept, values in [−1, 1].
    * ``"unit"``: divide by the constant ``scale`` (e.g. the crop side, to express flow as a fraction of the
      face; or a dataset-wide constant) — comparable across samples.

    A constant channel under "minmax" or an all-zero sample under "maxabs" maps to 0.
    """
    arr = np.asarray(flow, dtype=np.float32)
    if method == "none":
        return arr.copy()
    if method == "unit":
        if scale is None or scale <= 0:
            raise ValueError("normalise_flow(method='unit') needs a positive scale")
        return arr / np.float32(scale)
    if method == "minmax":
        axes = (0, 1)
        low = arr.min(axis=axes, keepdims=True)
        span = arr.max(axis=axes, keepdims=True) - low
        return np.where(span > 0, (arr - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    if method == "maxabs":
        if arr.ndim == 3 and arr.shape[2] >= 2:
            peak = float(flow_magnitude(arr).max())
        else:
            peak = float(np.abs(arr).max())
        return arr / np.float32(peak) if peak > 0 else np.zeros_like(arr)
    raise ValueError(f"unknown normalisation {method!r}; expected 'none', 'minmax', 'maxabs' or 'unit'")


def onset_apex_features(
    onset: np.ndarray, apex: np.ndarray, method: FlowMethod = "tvl1", **flow_params: float
) -> np.ndarray:
    """(H, W, 3) float32 [u, v, optical strain] of the onset → apex flow, in pixels (normalise separately)."""
    flow = compute_flow(onset, apex, method, **flow_params)
    return np.dstack([flow, optical_strain(flow)]).astype(np.float32)


def samer_magnitude_map(flow: np.ndarray, threshold_factor: float = 1.5) -> np.ndarray:
    """One SAMER flow map: |flow| min-max scaled to 0–255 uint8, then every value below
    ``threshold_factor`` × (the map's mean) set to 0, as in the reference code (reference_models.md §3.1)."""
    scaled = (normalise_flow(flow_magnitude(flow), "minmax") * 255.0).astype(np.uint8)
    cut = threshold_factor * float(scaled.mean())
    return np.where(scaled < cut, 0, scaled).astype(np.uint8)


def samer_on_off_apex(
    onset: np.ndarray,
    apex: np.ndarray,
    offset: np.ndarray,
    *,
    method: FlowMethod = "tvl1",
    threshold_factor: float = 1.5,
    **flow_params: float,
) -> np.ndarray:
    """SAMER's On-A and Off-A maps, (H, W, 2) uint8: [|flow(onset → T)|, |flow(offset → T)|] with T = ``apex``.

    The Mimicking paper (§3.1.1, §4) calls T the target frame: the apex for CASME II (its best setting) or the
    learning-magnified apex for SAMM; pass whichever as ``apex``. Each magnitude is min-max scaled to 0–255 and
    thresholded at ``threshold_factor`` × its mean (``samer_magnitude_map``). Flow: TV-L1 with
    ``scale_step=0.5`` unless overridden (reference code). The model input is
    ``samer_composite(grey magnified apex, maps)``.
    """
    if method == "tvl1":
        flow_params.setdefault("scale_step", 0.5)
    on_a = samer_magnitude_map(compute_flow(onset, apex, method, **flow_params), threshold_factor)
    off_a = samer_magnitude_map(compute_flow(offset, apex, method, **flow_params), threshold_factor)
    return np.dstack([on_a, off_a])


def samer_composite(target: np.ndarray, on_off: np.ndarray) -> np.ndarray:
    """SAMER's 3-channel input (H, W, 3) uint8: [grey(magnified apex), On-A, Off-A]."""
    grey = np.clip(np.rint(_grey_float(target)), 0, 255).astype(np.uint8)
    if on_off.shape[:2] != grey.shape or on_off.shape[2:] != (2,):
        raise ValueError(f"expected On-A/Off-A of shape {grey.shape + (2,)}, got {on_off.shape}")
    return np.dstack([grey, on_off]).astype(np.uint8)
