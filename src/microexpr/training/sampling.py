"""Frame jitter: which stored frame around the onset and the apex a training sample uses in one epoch.

The input builder stores, per sample, a few aligned frames around the onset and the apex with their offsets
relative to that key frame (``onset_offsets``, ``apex_offsets``; ``PAD_OFFSET`` marks unused slots). Training
draws one stored frame per key frame, uniformly among the stored offsets inside an allowed window; test time
always takes offset 0 (the exact onset and apex).

Window modes (``frames`` settings, docs/models.md "MMNet", difference 6):

- ``frames`` (paper text, default): onset in [0, ``onset``] frames after the onset, apex in
  [-``apex_before``, +``apex_after``] around the apex. Windows are shrunk for short rises so that the two chosen
  frames never cross: the onset may move at most ⌊(rise−1)/2⌋ frames forward and the apex as far back; the apex
  never moves past the offset (``fall`` frames after it).
- ``rise_fraction`` (reference code): onset in [0, ⌊onset_fraction·rise⌋], apex in [−⌊apex_fraction·rise⌋,
  +⌊apex_after_fraction·fall⌋]. The reference's 5-class script is ``onset_fraction = apex_fraction = 0.15/4``,
  ``apex_after_fraction = 0``; its 3-class script ``0.2/4``, ``0.15/4`` and ``0.15/4``.
- ``exact``: no jitter (offset 0 for both), e.g. for ablations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "FRAME_MODES",
    "PAD_OFFSET",
    "FrameWindows",
    "allowed_windows",
    "choose_frame_offsets",
    "exact_frame_index",
    "uncovered_windows",
    "validate_frames_config",
]

PAD_OFFSET = -32768  # int16 marker of an unused frame slot
# mode -> accepted keys and their defaults
FRAME_MODES: dict[str, dict[str, float]] = {
    "frames": {"onset": 3, "apex_before": 3, "apex_after": 0},
    "rise_fraction": {"onset_fraction": 0.0375, "apex_fraction": 0.0375, "apex_after_fraction": 0.0},
    "exact": {},
}
_FLOOR_TOLERANCE = 1e-9  # ⌊0.15·80/4⌋ must be 3 whether the fraction is written 0.0375 or 0.15/4


class FrameWindows(NamedTuple):
    """Allowed offset windows per sample, each (N, 2) int64 inclusive [lo, hi], relative to the key frame."""

    onset: np.ndarray
    apex: np.ndarray


def validate_frames_config(frames_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The ``frames`` settings with defaults filled in; ValueError naming an unknown mode or key, or a bad value.

    Settings of a mode may be given flat (``{mode: frames, onset: 3}``) or in a block named after the mode
    (``{mode: rise_fraction, frames: {onset: 3}, rise_fraction: {onset_fraction: 0.05}}``); only the active
    mode's block is used. Blocks let a Kedro env switch the mode without inheriting the other mode's keys.
    """
    cfg = dict(frames_cfg)
    mode = cfg.pop("mode", "frames")
    if mode not in FRAME_MODES:
        raise ValueError(f"frames.mode={mode!r} is not one of {', '.join(map(repr, FRAME_MODES))}")
    blocks = {name: cfg.pop(name) for name in list(cfg) if name in FRAME_MODES}
    for name, block in blocks.items():
        if not isinstance(block, Mapping):
            raise ValueError(f"frames.{name} must be a mapping of that mode's settings, got {block!r}")
    cfg = {**dict(blocks.get(mode) or {}), **cfg}
    defaults = FRAME_MODES[mode]
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(
            f"frames (mode {mode!r}) got unknown key(s) {', '.join(map(repr, unknown))}; "
            f"accepted keys: {', '.join(['mode', *defaults])}"
        )
    resolved: dict[str, Any] = {"mode": mode, **defaults, **cfg}
    for key in defaults:
        value = resolved[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"frames.{key} must be a non-negative number, got {value!r}")
        if mode == "frames" and value != int(value):
            raise ValueError(f"frames.{key} counts frames and must be an integer, got {value!r}")
    return resolved


def _as_lengths(values: np.ndarray, name: str, sample_ids: Sequence[str] | None) -> np.ndarray:
    lengths = np.asarray(values, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"{name} must be one value per sample (1-D), got shape {lengths.shape}")
    negative = np.flatnonzero(lengths < 0)
    if negative.size:
        names = [str(sample_ids[i]) if sample_ids is not None else f"row {i}" for i in negative[:5]]
        raise ValueError(f"{name} is negative (key frames out of order) for samples {names}")
    return lengths


def allowed_windows(
    frames_cfg: Mapping[str, Any],
    rise: np.ndarray,
    fall: np.ndarray,
    sample_ids: Sequence[str] | None = None,
) -> FrameWindows:
    """Training-time offset windows for the onset and apex of each sample (module docstring gives the modes).

    ``rise`` = apex − onset and ``fall`` = offset − apex in frames, (N,). A negative length raises, naming the
    samples (``sample_ids`` when given, else row numbers).
    """
    cfg = validate_frames_config(frames_cfg)
    rise = _as_lengths(rise, "rise", sample_ids)
    fall = _as_lengths(fall, "fall", sample_ids)
    if rise.shape != fall.shape:
        raise ValueError(f"rise and fall must have the same length, got {rise.shape} and {fall.shape}")
    zeros = np.zeros_like(rise)
    if cfg["mode"] == "exact":
        return FrameWindows(np.stack([zeros, zeros], 1), np.stack([zeros, zeros], 1))
    if cfg["mode"] == "frames":
        half_rise = np.maximum(rise - 1, 0) // 2
        onset_hi = np.minimum(int(cfg["onset"]), half_rise)
        apex_lo = -np.minimum(int(cfg["apex_before"]), half_rise)
        apex_hi = np.minimum(int(cfg["apex_after"]), fall)
    else:
        onset_hi = np.floor(cfg["onset_fraction"] * rise + _FLOOR_TOLERANCE).astype(np.int64)
        apex_lo = -np.floor(cfg["apex_fraction"] * rise + _FLOOR_TOLERANCE).astype(np.int64)
        apex_hi = np.floor(cfg["apex_after_fraction"] * fall + _FLOOR_TOLERANCE).astype(np.int64)
    return FrameWindows(np.stack([zeros, onset_hi], 1), np.stack([apex_lo, apex_hi], 1))


def _check_offsets(offsets: np.ndarray, sample_ids: Sequence[str] | None, what: str) -> np.ndarray:
    offsets = np.asarray(offsets)
    if offsets.ndim != 2 or offsets.shape[1] < 1:
        raise ValueError(
            f"{what} must be (N, K) with K >= 1 stored frames per sample, got shape {offsets.shape}"
        )
    missing = np.flatnonzero(~(offsets == 0).any(axis=1))
    if missing.size:
        names = [str(sample_ids[i]) if sample_ids is not None else f"row {i}" for i in missing[:5]]
        raise ValueError(
            f"{what}: the key frame itself (offset 0) is not stored for samples {names} "
            f"({missing.size} in all); the input builder must always store it"
        )
    return offsets


def exact_frame_index(
    offsets: np.ndarray, sample_ids: Sequence[str] | None = None, what: str = "offsets"
) -> np.ndarray:
    """Index (N,) of the stored frame at offset 0 in each row: the test-time choice (exact onset / apex)."""
    offsets = _check_offsets(offsets, sample_ids, what)
    return np.argmax(offsets == 0, axis=1).astype(np.int64)


def choose_frame_offsets(
    offsets: np.ndarray,
    allowed: np.ndarray,
    generator: np.random.Generator,
    sample_ids: Sequence[str] | None = None,
    what: str = "offsets",
) -> np.ndarray:
    """Index (N,) of one stored frame per sample, uniform over the stored offsets inside ``allowed`` (N, 2).

    Padding slots (``PAD_OFFSET``) are never chosen. Offset 0 must be stored for every sample and every window
    must contain 0, so there is always at least one candidate (the exact key frame).
    """
    offsets = _check_offsets(offsets, sample_ids, what)
    allowed = np.asarray(allowed, dtype=np.int64)
    if allowed.shape != (offsets.shape[0], 2):
        raise ValueError(f"allowed must be (N, 2) = ({offsets.shape[0]}, 2), got {allowed.shape}")
    if ((allowed[:, 0] > 0) | (allowed[:, 1] < 0)).any():
        raise ValueError("every allowed window must contain offset 0 (lo <= 0 <= hi)")
    inside = (
        (offsets != PAD_OFFSET) & (offsets >= allowed[:, :1]) & (offsets <= allowed[:, 1:])
    )  # (N, K), at least the offset-0 slot per row
    counts = inside.sum(axis=1)
    draw = np.minimum((generator.random(offsets.shape[0]) * counts).astype(np.int64), counts - 1)
    rank = np.cumsum(inside, axis=1) - 1  # rank of each candidate slot within its row
    return np.argmax(inside & (rank == draw[:, None]), axis=1).astype(np.int64)


def uncovered_windows(
    windows: FrameWindows, onset_offsets: np.ndarray, apex_offsets: np.ndarray, rise: np.ndarray, fall: np.ndarray
) -> dict[str, np.ndarray]:
    """Per side, (N,) bool: the window reaches an offset beyond the stored frames although the clip has frames
    there (stored frames that already reach the onset-apex-offset edges do not count)."""

    def stored(offsets: np.ndarray, reduce) -> np.ndarray:
        values = np.where(offsets == PAD_OFFSET, np.nan, np.asarray(offsets, dtype=float))
        return reduce(values, axis=1)

    onset_hi = stored(onset_offsets, np.nanmax)
    apex_lo, apex_hi = stored(apex_offsets, np.nanmin), stored(apex_offsets, np.nanmax)
    rise, fall = np.asarray(rise), np.asarray(fall)
    return {
        "onset_after": (windows.onset[:, 1] > onset_hi) & (onset_hi < rise),
        "apex_before": (windows.apex[:, 0] < apex_lo) & (-apex_lo < rise),
        "apex_after": (windows.apex[:, 1] > apex_hi) & (apex_hi < fall),
    }
