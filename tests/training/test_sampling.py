"""Frame windows and frame choice: windows per mode, padding never chosen, uniform over the allowed slots."""

from __future__ import annotations

import numpy as np
import pytest

from microexpr.training.sampling import (
    PAD_OFFSET,
    allowed_windows,
    choose_frame_offsets,
    exact_frame_index,
    validate_frames_config,
)


def test_frames_mode_windows_follow_the_settings_and_shrink_for_short_rises() -> None:
    rise = np.array([20, 7, 3, 1, 0])
    fall = np.array([10, 10, 10, 1, 0])
    cfg = {"mode": "frames", "onset": 3, "apex_before": 3, "apex_after": 2}
    windows = allowed_windows(cfg, rise, fall)
    # long rise: the settings as written; apex_after limited by the fall (offset) for the 4th sample
    assert windows.onset[0].tolist() == [0, 3]
    assert windows.apex[0].tolist() == [-3, 2]
    assert windows.apex[3].tolist() == [0, 1]
    # the chosen onset and apex never cross: onset + hi_onset < apex + lo_apex
    assert ((windows.onset[:, 1] - windows.apex[:, 0]) < np.maximum(rise, 1)).all()
    assert windows.onset[2].tolist() == [0, 1] and windows.apex[2].tolist() == [-1, 2]
    assert windows.onset[4].tolist() == [0, 0] and windows.apex[4].tolist() == [0, 0]


def test_rise_fraction_mode_reproduces_the_reference_floor() -> None:
    rise = np.array([80, 40, 10, 27])
    fall = np.array([40, 40, 40, 7])
    cfg = {
        "mode": "rise_fraction",
        "onset_fraction": 0.15 / 4,
        "apex_fraction": 0.15 / 4,
        "apex_after_fraction": 0.15 / 4,
    }
    windows = allowed_windows(cfg, rise, fall)
    expected_onset = [int(0.15 * r / 4) for r in rise]  # the reference's int(0.15 * (apex - onset) / 4)
    expected_after = [int(0.15 * f / 4) for f in fall]
    assert windows.onset[:, 1].tolist() == expected_onset
    assert (-windows.apex[:, 0]).tolist() == expected_onset
    assert windows.apex[:, 1].tolist() == expected_after
    assert (windows.onset[:, 0] == 0).all()


def test_exact_mode_and_config_errors() -> None:
    windows = allowed_windows({"mode": "exact"}, np.array([5, 9]), np.array([3, 3]))
    assert not windows.onset.any() and not windows.apex.any()
    assert validate_frames_config({})["mode"] == "frames"
    with pytest.raises(ValueError, match="'onset_fraction'"):
        validate_frames_config({"mode": "frames", "onset_fraction": 0.1})
    with pytest.raises(ValueError, match="'spline'"):
        validate_frames_config({"mode": "spline"})
    with pytest.raises(ValueError, match="integer"):
        validate_frames_config({"onset": 1.5})
    with pytest.raises(ValueError, match="casme2/sub01/EP02"):
        allowed_windows({}, np.array([3, -1]), np.array([1, 1]), sample_ids=["a", "casme2/sub01/EP02"])


def test_choice_stays_in_the_window_skips_padding_and_is_uniform() -> None:
    offsets = np.array(
        [
            [0, 1, 2, 3, PAD_OFFSET],
            [0, 1, PAD_OFFSET, PAD_OFFSET, PAD_OFFSET],  # only two frames stored
            [-3, -2, -1, 0, 1],
            [0, 1, 2, 3, 4],
        ],
        dtype=np.int16,
    )
    allowed = np.array([[0, 3], [0, 3], [-2, 0], [0, 0]])
    rng = np.random.default_rng(7)
    draws = 4000
    chosen = np.stack([choose_frame_offsets(offsets, allowed, rng) for _ in range(draws)])  # (draws, 4)
    picked = np.take_along_axis(np.broadcast_to(offsets, (draws, *offsets.shape)), chosen[..., None], 2)[
        ..., 0
    ]
    assert (picked != PAD_OFFSET).all()
    assert ((picked >= allowed[:, 0]) & (picked <= allowed[:, 1])).all()
    for row, candidates in enumerate([[0, 1, 2, 3], [0, 1], [-2, -1, 0], [0]]):
        values, counts = np.unique(picked[:, row], return_counts=True)
        assert values.tolist() == candidates
        expected = draws / len(candidates)
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected)  # uniform within ~5 sigma


def test_choice_is_reproducible_from_the_generator() -> None:
    offsets = np.tile(np.arange(4, dtype=np.int16), (50, 1))
    allowed = np.tile([0, 3], (50, 1))
    first = choose_frame_offsets(offsets, allowed, np.random.default_rng(3))
    again = choose_frame_offsets(offsets, allowed, np.random.default_rng(3))
    other = choose_frame_offsets(offsets, allowed, np.random.default_rng(4))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_exact_index_finds_offset_zero_and_missing_key_frames_are_named() -> None:
    offsets = np.array([[-2, -1, 0, 1], [0, PAD_OFFSET, PAD_OFFSET, PAD_OFFSET]], dtype=np.int16)
    assert exact_frame_index(offsets).tolist() == [2, 0]
    broken = np.array([[0, 1], [1, 2]], dtype=np.int16)
    with pytest.raises(ValueError, match="samm/006/1_2"):
        exact_frame_index(broken, ["samm/006/1_1", "samm/006/1_2"], "onset_offsets")
    with pytest.raises(ValueError, match="contain offset 0"):
        choose_frame_offsets(offsets, np.array([[1, 2], [0, 0]]), np.random.default_rng(0))
