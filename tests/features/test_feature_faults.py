"""Preprocess faults (issue 10 rows 1 and 12): a feature that cannot be computed is a recorded exclusion, never a
stopped run or a silent zero; a clip of large frames is processed one full-size frame at a time."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from microexpr.datasets.feature_store import FeatureJob, FeatureJobs, FeatureStore
from microexpr.features import recipes
from microexpr.vision.face import align_frames


def _sample(numbers: list[int], onset: int, apex: int, offset: int) -> dict:
    return {"sample_id": "casme2/sub01/EP01", "dataset": "casme2", "root": "/nowhere", "clip_dir": "sub01/EP01",
            "frame_paths": [f"sub01/EP01/img{n}.jpg" for n in numbers], "frame_numbers": numbers,
            "onset": onset, "apex": apex, "offset": offset, "content_hash": "x"}


def grey_faces(numbers, size, grey):
    shape = (len(numbers), size, size) if grey else (len(numbers), size, size, 3)
    return np.full(shape, 128, dtype=np.uint8)


PARAMS = {
    "key_frames": {"size": 16, "onset_after": 1, "apex_before": 1, "apex_after": 1},
    "flow_onset_apex": {"size": 16, "method": "farneback"},
    "samer_inputs": {"size": 16, "magnifier": "eulerian", "flow_target": "apex"},
    "attr_clips": {"size": 16, "n_frames": 4, "interpolation": "tim"},
}


@pytest.mark.parametrize("feature", ["key_frames", "flow_onset_apex", "samer_inputs", "attr_clips"])
def test_a_one_frame_clip_is_a_recorded_exclusion_in_the_store(tmp_path, feature: str) -> None:
    """Row 1: the store records the sample and the reason; the other clips are computed; nothing is zero-filled."""
    one = _sample([5], 5, 5, 5)
    job = FeatureJob(one["sample_id"], "aa" + "0" * 30, recipes.FACE_RECIPES[feature],
                     {"sample": one, "params": PARAMS[feature], "faces": grey_faces})
    store = FeatureStore(filepath=str(tmp_path / feature / "manifest.parquet"))
    store.save(FeatureJobs(feature, [job]))
    exclusions = store.load().exclusions()
    assert exclusions["sample_id"].tolist() == [one["sample_id"]]
    assert one["sample_id"] in exclusions["reason"].iloc[0]


def test_onset_equal_to_apex_is_an_exclusion_not_zero_motion() -> None:
    """Row 1: a longer clip whose apex is its onset has no motion to measure: excluded, not a zero flow."""
    sample = _sample([1, 2, 3, 4], 1, 1, 4)
    with pytest.raises(recipes.FeatureExclusion, match="onset and apex are the same frame"):
        recipes.flow_onset_apex(sample, PARAMS["flow_onset_apex"], grey_faces)


# ------------------------------------------------------------------------------------------ row 12: memory
BIG = (900, 1200, 3)  # a large frame (3.2 MB); the clip's 12 frames would be 39 MB at once
LANDMARKS = (np.random.default_rng(0).uniform(0.3, 0.7, size=(68, 2)) * [BIG[1], BIG[0]]).astype(np.float32)


def _big_frame(sample, position):
    return np.full(BIG, 10 + position, dtype=np.uint8)


def _peak_bytes(fn) -> tuple[int, object]:
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_dlib_faces_hold_one_full_size_frame_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(recipes, "read_frame", _big_frame)
    sample = _sample(list(range(1, 13)), 1, 6, 12)
    cut = recipes.dlib_faces(sample, {"onset_landmarks": LANDMARKS}, 2.5)
    peak, faces = _peak_bytes(lambda: cut(sample["frame_numbers"], 64, False))
    frame_bytes = int(np.prod(BIG))
    assert peak < 3 * frame_bytes, f"peak {peak / 1e6:.1f} MB for {frame_bytes / 1e6:.1f} MB frames"
    batch = align_frames([_big_frame(sample, i) for i in range(12)], {0: LANDMARKS}, {"out": (64, False)},
                         mode="onset", onset_index=0, box_enlarge=2.5).frames["out"]
    np.testing.assert_array_equal(faces, batch)  # same faces as warping the whole clip at once


def test_mol_clips_hold_one_full_size_frame_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(recipes, "read_frame", _big_frame)
    monkeypatch.setattr(recipes, "detector_from", lambda params: (lambda image: None))
    sample = _sample(list(range(1, 13)), 1, 6, 12)
    params = {"size": 32, "box_enlarge": 2.5, "clip_length": 4, "flow_params": {"scale": 0.5}, "landmarks": "detect"}
    peak, out = _peak_bytes(lambda: recipes.mol_clips(sample, params, {"onset_landmarks": LANDMARKS}))
    assert peak < 3 * int(np.prod(BIG)), f"peak {peak / 1e6:.1f} MB"
    assert out["frames"].shape == (12, 32, 32) and out["fallback"][1:].all() and not out["fallback"][0]
