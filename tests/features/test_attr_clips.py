"""attr_clips (attribute-embedding paper §IV.B): one Farneback flow field per interpolated frame, field 0 zero; the
flow sequence (frame i-1 -> i, default) or the displacement from frame 0 (``flow_reference: first``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from microexpr.features.recipes import attr_clips

SIZE, FRAMES = 64, 4


def _shifting_faces(numbers, size, grey):
    """A smooth texture moved 1 px to the right per frame."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (size, size + 8)).astype(np.float32), (0, 0), 2.0)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    frames = [np.repeat(texture[:, 4 - i : 4 - i + size, None], 3, axis=2) for i in range(len(numbers))]
    return np.stack(frames)


def _params(reference: str) -> dict:
    return {"size": SIZE, "n_frames": FRAMES, "interpolation": "uniform", "flow_reference": reference,
            "flow_params": {}}


@pytest.mark.parametrize(("reference", "steps"), [("previous", [0, 1, 1, 1]), ("first", [0, 1, 2, 3])])
def test_one_flow_field_per_frame_with_field_zero_still(reference: str, steps: list[int]) -> None:
    out = attr_clips({"frame_numbers": list(range(FRAMES))}, _params(reference), _shifting_faces)
    assert out["rgb"].shape == (FRAMES, SIZE, SIZE, 3) and out["rgb"].dtype == np.uint8
    assert out["flow"].shape == (FRAMES, SIZE, SIZE, 2) and out["flow"].dtype == np.float16
    inner = out["flow"][:, 12:-12, 12:-12, 0].astype(np.float32)
    np.testing.assert_allclose(np.median(inner, axis=(1, 2)), steps, atol=0.25)


def test_unknown_flow_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="flow_reference"):
        attr_clips({"frame_numbers": list(range(FRAMES))}, _params("onset"), _shifting_faces)
