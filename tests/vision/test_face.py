"""Face alignment: geometry on synthetic landmarks (no dlib), then dlib on a real photograph."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from microexpr.vision.face import (
    LEFT_EYE,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    NOSE_TIP,
    RIGHT_EYE,
    LandmarkDetector,
    NoFaceError,
    align_clip,
    align_frames,
    alignment_keypoints,
    canonical_template,
    compose_affine,
    eye_box_similarity,
    invert_affine,
    resize_face,
    similarity_from_landmarks,
    similarity_from_points,
    transform_points,
    warp_image,
)


def landmarks_with_keypoints(keypoints: np.ndarray, seed: int = 0) -> np.ndarray:
    """68 landmarks whose five alignment keypoints are exactly ``keypoints`` (eyes: hexagons around the centres)."""
    rng = np.random.default_rng(seed)
    low, high = keypoints.min(axis=0), keypoints.max(axis=0)
    points = rng.uniform(low, high, size=(68, 2))
    radius = 0.15 * np.linalg.norm(keypoints[1] - keypoints[0])
    angles = np.arange(6) * np.pi / 3
    ring = radius * np.stack([np.cos(angles), 0.5 * np.sin(angles)], axis=1)
    points[list(LEFT_EYE)] = keypoints[0] + ring
    points[list(RIGHT_EYE)] = keypoints[1] + ring
    points[NOSE_TIP], points[MOUTH_LEFT], points[MOUTH_RIGHT] = keypoints[2], keypoints[3], keypoints[4]
    return points


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    theta = np.deg2rad(degrees)
    c, s = scale * np.cos(theta), scale * np.sin(theta)
    return np.array([[c, -s, tx], [s, c, ty]])


def smooth_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(height // 8 + 2, width // 8 + 2)).astype(np.float32)
    fine = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(fine, (0, 0), 2.0)
    return np.clip((fine - fine.min()) / (fine.max() - fine.min()) * 200 + 28, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- geometry


def test_template_layout_and_scaling() -> None:
    t144, t288 = canonical_template(144, 2.5), canonical_template(288, 2.5)
    left_eye, right_eye, nose, mouth_l, mouth_r = t144
    assert left_eye[1] == pytest.approx(right_eye[1])  # level eyes
    assert (left_eye[0] + right_eye[0]) / 2 == pytest.approx(71.5)  # centred
    assert left_eye[1] < nose[1] < mouth_l[1] == pytest.approx(mouth_r[1])
    # box_enlarge: eyes-to-mouth (the longer side of the keypoint box) spans 1/2.5 of the crop
    assert (mouth_l[1] - left_eye[1]) == pytest.approx(143 / 2.5)
    np.testing.assert_allclose((t288 - 143.5) * 143 / 287, t144 - 71.5, atol=1e-9)


def test_similarity_recovers_inverse_of_known_transform() -> None:
    template = canonical_template(144)
    canonical = landmarks_with_keypoints(template)
    camera_from_aligned = similarity(2.3, 17.0, 120.0, -35.0)
    observed = transform_points(canonical, camera_from_aligned)
    recovered = similarity_from_landmarks(observed, template)
    np.testing.assert_allclose(recovered, invert_affine(camera_from_aligned), atol=1e-6)
    np.testing.assert_allclose(transform_points(observed, recovered), canonical, atol=1e-6)


def test_similarity_never_reflects_and_is_least_squares() -> None:
    rng = np.random.default_rng(3)
    source = rng.normal(size=(5, 2))
    mirrored = source * [-1.0, 1.0]
    matrix = similarity_from_points(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    # any perturbation of the optimum increases the squared error
    target = transform_points(source, similarity(1.4, -30, 2, 1)) + rng.normal(scale=0.05, size=(5, 2))
    best = similarity_from_points(source, target)
    best_err = np.sum((transform_points(source, best) - target) ** 2)
    for delta in (similarity(1.01, 0, 0, 0), similarity(1, 0.5, 0, 0), similarity(1, 0, 0.01, 0)):
        assert np.sum((transform_points(source, compose_affine(delta, best)) - target) ** 2) > best_err


def test_eye_box_similarity_levels_eyes_and_fits_box() -> None:
    keypoints = transform_points(canonical_template(100), similarity(1.8, 25.0, 40.0, 60.0))
    matrix = eye_box_similarity(landmarks_with_keypoints(keypoints), out_size=144, box_enlarge=2.5)
    aligned = transform_points(keypoints, matrix)
    assert aligned[0, 1] == pytest.approx(aligned[1, 1], abs=1e-9)
    span = aligned.max(axis=0) - aligned.min(axis=0)
    assert span.max() == pytest.approx(143 / 2.5)
    np.testing.assert_allclose((aligned.max(axis=0) + aligned.min(axis=0)) / 2, [71.5, 71.5], atol=1e-9)


@pytest.mark.parametrize("scale", [1.6, 3.2])  # 3.2: the alignment shrinks > 2x and takes the INTER_AREA path
def test_warp_with_alignment_undoes_known_similarity(scale: float) -> None:
    side = 144
    canonical_image = smooth_texture(side, side)
    canonical_landmarks = landmarks_with_keypoints(canonical_template(side))
    camera_from_aligned = similarity(scale, -12.0, 70.0, 60.0)
    camera = cv2.warpAffine(
        canonical_image, camera_from_aligned, (600, 560), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    clip = align_frames(
        [camera], {0: transform_points(canonical_landmarks, camera_from_aligned)}, {"face": (side, True)}
    )
    np.testing.assert_allclose(clip.transforms["face"][0], invert_affine(camera_from_aligned), atol=1e-6)
    np.testing.assert_allclose(clip.landmarks["face"][0], canonical_landmarks, atol=1e-3)
    inner = slice(8, side - 8)
    error = np.abs(clip.frames["face"][0][inner, inner].astype(float) - canonical_image[inner, inner])
    assert error.mean() < 1.5 and error.max() < 12  # two resamplings of a smooth texture


def test_warp_image_shrinks_large_reductions_without_aliasing() -> None:
    stripes = ((np.indices((400, 400))[1] // 2) % 2 * 255).astype(np.uint8)  # 4 px period
    shrink = np.array([[0.1, 0.0, 0.0], [0.0, 0.1, 0.0]])
    small = warp_image(stripes, shrink, 40).astype(float)
    assert abs(small.mean() - 127.5) < 3 and small.std() < 10  # area-averaged, not sampled stripes


def _clip_with_landmarks(n_frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    frames = [smooth_texture(240, 320, seed=i) for i in range(n_frames)]
    base = transform_points(canonical_template(144), similarity(1.5, 5.0, 60.0, 20.0))
    landmarks = [landmarks_with_keypoints(base + [i * 2.0, 0.0]) for i in range(n_frames)]
    return frames, landmarks


def test_align_frames_onset_mode_uses_one_transform_and_reports_fallbacks() -> None:
    frames, landmarks = _clip_with_landmarks(4)
    found = {0: landmarks[0], 2: landmarks[2], 3: None}
    clip = align_frames(frames, found, {"g": (112, True), "rgb": (224, False)}, mode="onset")
    assert clip.frames["g"].shape == (4, 112, 112) and clip.frames["g"].dtype == np.uint8
    assert clip.frames["rgb"].shape == (4, 224, 224, 3)  # grey source replicated to 3 channels
    for name in ("g", "rgb"):
        assert np.all(clip.transforms[name] == clip.transforms[name][0])
    assert clip.fallback_frames == (3,)
    assert clip.own_landmarks.tolist() == [True, False, True, False]
    # frame 2's own landmarks (moved 4 px right in the image) show through, frame 1 carries the onset's
    np.testing.assert_allclose(clip.landmarks["g"][1], clip.landmarks["g"][0])
    assert np.all(clip.landmarks["g"][2][:, 0] > clip.landmarks["g"][0][:, 0])
    # the two sizes are the same crop at different resolutions
    np.testing.assert_allclose(
        (clip.landmarks["rgb"] - 111.5) * 111 / 223, clip.landmarks["g"] - 55.5, atol=1e-3
    )


def test_align_frames_per_frame_mode_follows_each_face() -> None:
    frames, landmarks = _clip_with_landmarks(3)
    clip = align_frames(
        frames, {0: landmarks[0], 1: None, 2: landmarks[2]}, {"g": (144, True)}, mode="per_frame"
    )
    t = clip.transforms["g"]
    np.testing.assert_allclose(t[1], t[0])  # fallback
    assert not np.allclose(t[2], t[0])
    np.testing.assert_allclose(
        alignment_keypoints(clip.landmarks["g"][2]), canonical_template(144), atol=1e-4
    )
    assert clip.fallback_frames == (1,)
    with pytest.raises(ValueError, match="every frame searched"):
        align_frames(frames, {0: landmarks[0]}, {"g": (144, True)}, mode="per_frame")


def test_align_clip_calls_detector_only_where_needed_and_raises_on_missing_onset_face() -> None:
    frames, landmarks = _clip_with_landmarks(3)
    calls: list[int] = []

    def fake_detector(image: np.ndarray) -> np.ndarray | None:
        index = next(i for i, f in enumerate(frames) if f is image or np.array_equal(f, image))
        calls.append(index)
        return landmarks[index]

    align_clip(frames, {"g": (64, True)}, detector=fake_detector, onset_index=1)
    assert calls == [1]
    calls.clear()
    clip = align_clip(frames, {"g": (64, True)}, detector=fake_detector, landmarks_per_frame=True)
    assert sorted(calls) == [0, 1, 2] and clip.own_landmarks.all()
    with pytest.raises(NoFaceError, match="frame 2") as info:
        align_clip(frames, {"g": (64, True)}, detector=lambda image: None, onset_index=2)
    assert info.value.frame_index == 2


# --------------------------------------------------------------------------------------------- dlib


def _real_face_rgb() -> np.ndarray:
    """A real frontal face: the London Set photo (shared folder or MICROEXPR_FACES), else matplotlib's
    public-domain grace_hopper.jpg, which ships with every matplotlib install."""
    folder = Path(os.environ.get("MICROEXPR_FACES", ""))
    path = folder / "london_001_03.jpg"
    if not path.is_file():
        import matplotlib.cbook

        path = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    image = cv2.imread(str(path))
    assert image is not None, f"could not read {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector()


def test_dlib_landmarks_align_real_photo_and_its_rotated_copy(detector: LandmarkDetector) -> None:
    photo = _real_face_rgb()
    landmarks = detector(photo)
    assert landmarks is not None and landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    template = canonical_template(144)
    clip = align_clip([photo], {"g": (144, True)}, detector=detector)
    keypoints = alignment_keypoints(clip.landmarks["g"][0])
    eye_error = np.linalg.norm(keypoints[:2] - template[:2], axis=1)
    assert eye_error.max() < 4.0, eye_error  # a least-squares fit of 5 points: eyes land within a few px

    h, w = photo.shape[:2]
    moved = cv2.getRotationMatrix2D((w / 2, h / 2), 10.0, 0.85)
    moved[:, 2] += (20.0, -15.0)
    moved_photo = cv2.warpAffine(photo, moved, (w, h), borderMode=cv2.BORDER_REPLICATE)
    moved_clip = align_clip([moved_photo], {"g": (144, True)}, detector=detector)
    moved_keypoints = alignment_keypoints(moved_clip.landmarks["g"][0])
    assert np.linalg.norm(moved_keypoints - keypoints, axis=1).max() < 2.0
    a, b = clip.frames["g"][0].astype(float), moved_clip.frames["g"][0].astype(float)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert np.abs(a - b).mean() < 6.0


def test_dlib_no_face_raises(detector: LandmarkDetector) -> None:
    rng = np.random.default_rng(0)
    blank = [np.full((240, 320, 3), 128, np.uint8), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)]
    assert detector(blank[1]) is None
    with pytest.raises(NoFaceError, match="frame 0"):
        align_clip(blank, {"g": (112, True)}, detector=detector)


def test_detector_pickles_without_models_and_downscaled_detection_agrees(detector: LandmarkDetector) -> None:
    photo = _real_face_rgb()
    reference = detector(photo)
    copy = pickle.loads(pickle.dumps(detector))
    assert copy._models is None
    full_res = LandmarkDetector(detect_max_side=4096)(photo)
    assert reference is not None and full_res is not None
    # the downscaled box differs by rounding; the full-resolution predictor still lands close
    assert np.median(np.linalg.norm(reference - full_res, axis=1)) < 2.0
    np.testing.assert_array_equal(copy(photo), reference)


@pytest.mark.parametrize("shape", [(300, 260, 3), (150, 190, 3), (224, 224, 3), (61, 47)])
def test_resize_face_matches_the_reference_resize(shape: tuple[int, ...]) -> None:
    """Provided crops are resized as MMNet's reference does: torchvision Resize((S, S)) on a PIL image."""
    from torchvision import transforms

    image = np.random.default_rng(sum(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    image[10:40, 5:30] = 255  # an edge, so that shrinking with and without a low-pass filter differ
    expected = np.asarray(transforms.Resize((224, 224))(transforms.ToPILImage()(image)))
    resized = resize_face(image, 224)
    assert resized.shape == expected.shape and resized.dtype == np.uint8
    np.testing.assert_array_equal(resized, expected)
