"""Synthetic micro-expression generator: plan (labels, AUs, timing, quirks), rendering, laziness, learnability."""

from __future__ import annotations

import importlib.util
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from microexpr.data import synthetic as syn
from microexpr.datasets.face_photos import FacePhotoFolder, fallback_photos

FAKE_FACES = [f"face_{i:03d}" for i in range(40)]
# Small and short clips so rendering tests stay fast (160 px canvas, ~30 frames per clip).
SMALL = {
    "n_subjects": 2,
    "clips_per_subject": [2, 2],
    "canvas_size": 160,
    "lead_in_frames": [2, 3],
    "tail_frames": [2, 2],
    "onset_to_apex_ms": [40, 50],
    "apex_to_offset_ms": [80, 90],
}
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "synthetic_learnability.py"


@pytest.fixture(scope="module")
def photos() -> syn.FacePhotos:
    return fallback_photos()


def test_plan_is_deterministic_for_a_seed():
    first = syn.plan_dataset({"seed": 7}, FAKE_FACES, fallback=False)
    again = syn.plan_dataset({"seed": 7}, list(reversed(FAKE_FACES)), fallback=False)
    other = syn.plan_dataset({"seed": 8}, FAKE_FACES, fallback=False)
    assert first == again
    assert first.clips != other.clips


def test_default_size_and_distinct_faces():
    plan = syn.plan_dataset({}, FAKE_FACES, fallback=False)
    assert [s.folder for s in plan.subjects] == [f"sub{i:02d}" for i in range(1, 17)]
    assert len({s.face_id for s in plan.subjects}) == 16
    per_subject = {s.folder: sum(c.subject == s.folder for c in plan.clips) for s in plan.subjects}
    assert all(8 <= n <= 10 for n in per_subject.values())
    assert not plan.fallback


def test_class_proportions_follow_casme2():
    weights = syn.DEFAULT_PARAMS["class_weights"]
    plan = syn.plan_dataset({"n_subjects": 30}, FAKE_FACES, fallback=False)
    total = len(plan.clips)
    counts = {name: sum(c.emotion == name for c in plan.clips) for name in weights}
    wsum = sum(weights.values())
    for name, weight in weights.items():
        assert abs(counts[name] / total - weight / wsum) <= 1 / total, (name, counts)
    assert sum(counts.values()) == total


def test_action_units_follow_the_class_rules():
    plan = syn.plan_dataset({"n_subjects": 30, "unilateral_prob": 0.5}, FAKE_FACES, fallback=False)
    for clip in plan.clips:
        combo = tuple(a.au for a in clip.actions)
        assert combo in {c for c, _ in syn.AU_COMBOS[clip.emotion]}, (clip.emotion, combo)
        assert all(a.side in (None, "L", "R") for a in clip.actions)
        assert all(a.side is None or a.au in syn.LATERAL_AUS for a in clip.actions)
    assert any(a.side for c in plan.clips for a in c.actions)


def test_exactly_one_missing_apex_and_int_au_cells():
    plan = syn.plan_dataset({}, FAKE_FACES, fallback=False)
    frame = plan.annotation_frame()
    assert tuple(frame.columns) == syn.CASME2_COLUMNS
    assert (frame["ApexFrame"] == "/").sum() == 1
    cells = frame["Action Units"].tolist()
    ints = [c for c in cells if isinstance(c, int)]
    texts = [c for c in cells if isinstance(c, str)]
    assert ints and texts and len(ints) + len(texts) == len(cells)
    assert all(re.fullmatch(r"[LR]?\d+(\+[LR]?\d+)*", t) for t in texts)
    assert all("+" in t or t[0] in "LR" for t in texts)  # a plain single AU is always an int cell
    assert frame["Unnamed: 2"].isna().all() and frame["Unnamed: 6"].isna().all()
    assert set(frame["Estimated Emotion"]) == set(syn.DEFAULT_PARAMS["class_weights"])
    assert frame["Subject"].dtype == np.int64


def test_timing_and_frame_numbers():
    plan = syn.plan_dataset({"n_subjects": 20}, FAKE_FACES, fallback=False)
    fps = syn.DEFAULT_PARAMS["fps"]
    for clip in plan.clips:
        assert 60 <= clip.expression_ms <= 360, clip
        assert 40 <= 1000 * clip.rise / fps <= 110 and 0 <= clip.hold <= 3
        assert clip.frame_numbers == tuple(range(clip.onset_frame, clip.offset_frame + 1))
        if clip.apex_label is not None:
            assert clip.onset_frame < clip.apex_label < clip.offset_frame
        envelope = clip.envelope()
        assert envelope[: clip.lead + 1].max() == 0 and envelope[clip.apex_index] == 1
        assert envelope[clip.n_frames - clip.tail :].max() == 0
    assert len({c.first_frame for c in plan.clips}) > 10  # numbered from the "long video", not from 1


def test_clip_names_look_like_casme2():
    plan = syn.plan_dataset({"n_subjects": 20}, FAKE_FACES, fallback=False)
    for subject in plan.subjects:
        names = [c.clip for c in plan.clips if c.subject == subject.folder]
        assert len(names) == len(set(names))
        assert all(re.fullmatch(r"EP\d{2}_\d+f?", n) for n in names), names


def test_fallback_derives_subjects_and_missing_faces_raise():
    plan = syn.plan_dataset({"n_subjects": 5}, ["astronaut", "grace_hopper"], fallback=True)
    assert plan.fallback
    assert [s.face_id for s in plan.subjects] == ["astronaut", "grace_hopper"] * 2 + ["astronaut"]
    assert [bool(s.variant) for s in plan.subjects] == [False, False, True, True, True]
    with pytest.raises(ValueError, match="n_subjects=16 needs 16 distinct face photos but only 2"):
        syn.plan_dataset({}, ["astronaut", "grace_hopper"], fallback=False)


def test_unknown_parameter_and_bad_range_raise():
    with pytest.raises(ValueError, match="unknown synthetic parameter.*n_subject"):
        syn.resolve_params({"n_subject": 3})
    with pytest.raises(ValueError, match="clips_per_subject"):
        syn.resolve_params({"clips_per_subject": [5, 2]})


def test_other_dataset_yields_one_skip_chunk(photos):
    chunks = list(syn.generate_synthetic_dataset("casme2", {}, photos))
    assert len(chunks) == 1 and isinstance(chunks[0], syn.SyntheticSkipped)
    assert "casme2" in chunks[0].reason


def test_chunks_are_lazy_and_basis_is_built_once_per_subject(photos, monkeypatch):
    calls = []
    real = syn.build_face_basis

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(syn, "build_face_basis", counting)
    chunks = list(syn.generate_synthetic_dataset("synthetic", SMALL, photos))
    clips = [c for c in chunks if isinstance(c, syn.ClipRender)]
    assert len(clips) == 4 and isinstance(chunks[-1], syn.SyntheticManifest)
    assert calls == []
    for chunk in clips:
        frames = chunk.render()
        assert len(frames) == len(chunk.frame_numbers)
        assert frames[0].dtype == np.uint8 and frames[0].shape == (160, 160, 3)
    assert len(calls) == 2


def test_same_seed_gives_same_keys_and_frames(photos):
    first = list(syn.generate_synthetic_dataset("synthetic", SMALL, photos))
    again = list(syn.generate_synthetic_dataset("synthetic", SMALL, photos))
    noisier = list(syn.generate_synthetic_dataset("synthetic", {**SMALL, "noise_sigma": 4.0}, photos))
    assert [c.key for c in first[:-1]] == [c.key for c in again[:-1]]
    assert all(a.key != b.key for a, b in zip(first[:-1], noisier[:-1], strict=True))
    frames_a, frames_b = first[1].render(), again[1].render()
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    manifest = first[-1]
    assert manifest.fallback and "Fallback faces" in manifest.readme
    assert sum(manifest.counts_per_class.values()) == len(manifest.clips) == 4


def _basis_and_clip(photos: syn.FacePhotos, size: int = 192) -> tuple[syn.FaceBasis, syn.ClipPlan]:
    params = syn.resolve_params({**SMALL, "canvas_size": size})
    plan = syn.plan_dataset(params, list(photos.images), fallback=True)
    canvas, landmarks = syn.build_identity_canvas(photos.images["grace_hopper"], size, "grace_hopper")
    basis = syn.build_face_basis(canvas, landmarks, np.random.default_rng(0), params)
    return basis, plan.clips[0]


def test_basis_fields_are_micro_sized(photos):
    basis, _ = _basis_and_clip(photos)
    assert set(basis.fields) == set(syn.SUPPORTED_AUS)
    for au, field in basis.fields.items():
        peak = float(np.hypot(field[0], field[1]).max()) / basis.iod
        assert 0.005 < peak < 0.2, (au, peak)  # IOD units at intensity 1
        magnitude = np.hypot(field[0], field[1])
        # Anchored to zero away from the face: top row and side columns (the chin can sit near the bottom).
        far = max(magnitude[0].max(), magnitude[:, 0].max(), magnitude[:, -1].max())
        assert far < 0.05 * peak * basis.iod, au


def test_subset_render_equals_full_and_dlib_finds_the_face(photos):
    basis, clip = _basis_and_clip(photos)
    frames = syn.render_clip(basis, clip)
    subset = syn.render_clip(basis, clip, [0, clip.apex_index])
    assert np.array_equal(subset[0], frames[0]) and np.array_equal(subset[1], frames[clip.apex_index])
    for frame in subset:
        landmarks = syn.detect_landmarks68(frame, upsample=0)
        assert landmarks is not None and landmarks.shape == (68, 2)


def test_one_sided_au_moves_mostly_its_side(photos):
    basis, clip = _basis_and_clip(photos)
    still = replace(
        clip.nuisance, noise_sigma=0, jitter_px=0, jitter_rot_deg=0, jitter_scale=0, drift_px=0, flicker=0
    )
    clip = replace(clip, nuisance=still)
    half = basis.canvas.shape[1] // 2
    energy = {}
    for side in (None, "L"):
        planned = replace(clip, actions=(syn.AUAction(12, side, 1.0),))
        onset, apex = syn.render_clip(basis, planned, [0, planned.apex_index])
        diff = np.abs(apex.astype(float) - onset.astype(float))
        energy[side] = (diff[:, :half].sum(), diff[:, half:].sum())
    # Subject's left = image right: the one-sided AU keeps the image-right motion, loses most of the other side.
    assert energy["L"][1] > 0.6 * energy[None][1]
    assert energy["L"][0] < 0.5 * energy[None][0]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("synthetic_learnability", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_london_set_is_learnable_but_not_trivial(tmp_path):
    """10 subjects x 8 clips of London faces, Farneback onset->apex flow, LOSO logistic regression."""
    bench = _benchmark_module()
    folder = bench.faces_folder()
    assert folder is not None, (
        f"the learnability test needs the London face set: set MICROEXPR_FACES or provide {bench.DEFAULT_FACES}"
    )
    photos = FacePhotoFolder(str(folder)).load()
    params = {"n_subjects": 10, "clips_per_subject": [8, 8], "canvas_size": 224, "seed": 11}
    start = time.perf_counter()
    bench.write_dataset(tmp_path / "synthetic", params, photos)
    features, labels, groups = bench.disk_features(tmp_path / "synthetic")
    uf1 = bench.loso_uf1(features, labels, groups)
    elapsed = time.perf_counter() - start
    print(f"synthetic learnability: UF1={uf1:.3f} on {len(labels)} clips in {elapsed:.1f} s")  # noqa: T201
    assert len(set(groups)) == 10 and len(labels) == 80
    assert 0.35 < uf1 < 0.95, uf1
