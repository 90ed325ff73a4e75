"""Face landmarks (dlib HOG detector + 68-point predictor) and similarity alignment of micro-expression clips.

Two layers:

* **Geometry** (no dlib): ``alignment_keypoints`` → ``canonical_template`` / ``similarity_from_landmarks``
  (least-squares similarity, Umeyama) → ``warp_image`` / ``transform_points``; ``align_frames`` aligns a clip
  from landmarks the caller already has. Everything here is deterministic and testable with synthetic points.
* **Provided crops** (no dlib): ``resize_face`` brings a dataset's own face crop to the model size.
* **Detection**: ``LandmarkDetector`` (lazy, process-local dlib models) and ``align_clip`` which detects, then
  calls ``align_frames``.

Coordinates are (x, y) in pixels, pixel centres at integers (OpenCV's and dlib's convention). Matrices are
2×3 float64 and map *source image* coordinates to *aligned* coordinates (``cv2.warpAffine`` convention).

Alignment follows MOL's reference preprocessing (reference_models.md §4.3): the five keypoints are the two eye
centres (mean of each eye's six landmarks), the nose tip (30) and the mouth corners (48, 54); ``box_enlarge`` (2.5)
sets how much context around them the crop keeps. dlib landmarks are integer pixels and jitter by 1–2 px between
still frames (face_synthesis.md §3.2), as large as the micro-motion itself, so the default estimates **one**
transform on the onset frame and applies it to the whole clip (``mode="onset"``); ``mode="per_frame"`` reproduces
MOL's per-frame re-alignment.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

# dlib 68-point indices (image-left eye = subject's right eye).
LEFT_EYE = tuple(range(36, 42))
RIGHT_EYE = tuple(range(42, 48))
NOSE_TIP = 30
MOUTH_LEFT = 48
MOUTH_RIGHT = 54

#: Mean positions of the five alignment keypoints (left eye, right eye, nose tip, mouth corners 48 and 54) in
#: inter-ocular-distance units, eye midpoint at the origin, y down; measured once with dlib on the 102 neutral
#: London Set faces (per-point sd ≤ 0.07 IOD) and symmetrised.
MEAN_FACE_KEYPOINTS = np.array(
    [[-0.5, 0.0], [0.5, 0.0], [0.0, 0.47], [-0.40, 1.08], [0.40, 1.08]], dtype=np.float64
)

Landmarks = np.ndarray  # (68, 2) float32, image coordinates
Detector = Callable[[np.ndarray], "Landmarks | None"]
AlignMode = Literal["onset", "per_frame"]
FitMethod = Literal["template", "eye_box"]


class NoFaceError(ValueError):
    """No face was found on a frame whose landmarks are required (the onset frame).

    ``frame_index`` is the index within the clip passed in; the caller adds the sample and file names.
    """

    def __init__(self, frame_index: int, detail: str = "") -> None:
        self.frame_index = frame_index
        message = f"no face found on frame {frame_index} (the frame the alignment is estimated on)"
        super().__init__(f"{message}: {detail}" if detail else message)


# ---------------------------------------------------------------------------------------------------------------
# Geometry (no dlib)
# ---------------------------------------------------------------------------------------------------------------


def alignment_keypoints(landmarks: np.ndarray) -> np.ndarray:
    """The five keypoints used for alignment, (5, 2) float64: eye centres (36–41, 42–47), nose tip 30, mouth 48/54."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) dlib landmarks, got shape {points.shape}")
    return np.stack(
        [
            points[list(LEFT_EYE)].mean(axis=0),
            points[list(RIGHT_EYE)].mean(axis=0),
            points[NOSE_TIP],
            points[MOUTH_LEFT],
            points[MOUTH_RIGHT],
        ]
    )


def _fit_box(keypoints: np.ndarray, out_size: int, box_enlarge: float) -> np.ndarray:
    """Scale + translation that centres the keypoints' bounding box, enlarged ``box_enlarge`` times on its longer
    side, in an ``out_size`` square (MOL's crop rule), applied to already-rotated keypoints. Returns 2×3."""
    low, high = keypoints.min(axis=0), keypoints.max(axis=0)
    centre = (low + high) / 2.0
    half_size = 0.5 * box_enlarge * float(np.max(high - low))
    scale = (out_size - 1) / (2.0 * half_size)
    offset = (out_size - 1) / 2.0 - scale * centre
    return np.array([[scale, 0.0, offset[0]], [0.0, scale, offset[1]]])


def canonical_template(out_size: int, box_enlarge: float = 2.5) -> np.ndarray:
    """Target positions (5, 2) of the alignment keypoints in an ``out_size``² crop.

    The mean-face layout ``MEAN_FACE_KEYPOINTS`` placed by MOL's crop rule: the keypoints' bounding box is centred
    and its longer side (eyes→mouth) spans ``1/box_enlarge`` of the crop. At 144 px and 2.5 the eye centres sit at
    y ≈ 43 with an inter-ocular distance of ≈ 53 px. Templates of different sizes are scaled copies of each other.
    """
    if out_size < 2 or box_enlarge <= 0:
        raise ValueError(f"need out_size >= 2 and box_enlarge > 0, got {out_size}, {box_enlarge}")
    return transform_points(MEAN_FACE_KEYPOINTS, _fit_box(MEAN_FACE_KEYPOINTS, out_size, box_enlarge))


def similarity_from_points(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping ``source`` onto
    ``target``, as a 2×3 matrix: Umeyama's closed form (1991).

    Written out because ``cv2.estimateAffinePartial2D`` only offers robust estimators (RANSAC/LMedS) that draw
    random subsets; with five clean points plain least squares is exact, deterministic and needs no threshold.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 0:
        raise ValueError("source points are all identical: no similarity is defined")
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflect[1, 1] = -1.0
    rotation = u @ reflect @ vt
    scale = float(np.trace(np.diag(singular) @ reflect)) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def similarity_from_landmarks(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """2×3 similarity taking the five alignment keypoints of ``landmarks`` (68, 2) onto ``template`` (5, 2)."""
    return similarity_from_points(alignment_keypoints(landmarks), template)


def eye_box_similarity(landmarks: np.ndarray, out_size: int, box_enlarge: float = 2.5) -> np.ndarray:
    """MOL reference-code alignment (a parity option): rotate so the eye centres are level, then apply the crop
    rule of ``canonical_template`` to *this face's* rotated keypoints rather than fitting a mean template.

    Unlike the template fit, the scale follows each face's own eye-to-mouth extent.
    """
    keypoints = alignment_keypoints(landmarks)
    dx, dy = keypoints[1] - keypoints[0]
    length = float(np.hypot(dx, dy))
    if length == 0:
        raise ValueError("eye centres coincide: cannot level the eyes")
    cos, sin = dx / length, dy / length
    rotation = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]])
    box = _fit_box(transform_points(keypoints, rotation), out_size, box_enlarge)
    return compose_affine(box, rotation)


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2×3 matrix of ``outer ∘ inner`` (apply ``inner`` first)."""
    inner3 = np.vstack([inner, [0.0, 0.0, 1.0]])
    return (np.vstack([outer, [0.0, 0.0, 1.0]]) @ inner3)[:2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2×3 affine matrix to (N, 2) points; returns float64 (N, 2)."""
    pts = np.asarray(points, dtype=np.float64)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def warp_image(
    image: np.ndarray,
    matrix: np.ndarray,
    out_size: int,
    border: Literal["replicate", "constant"] = "replicate",
) -> np.ndarray:
    """Warp ``image`` into an ``out_size``² crop with the 2×3 ``matrix`` (bilinear), keeping dtype and channels.

    When the warp shrinks the image by more than 2× the image is first reduced with ``INTER_AREA`` (and the
    matrix adjusted), because bilinear sampling alone aliases fine texture at large reductions. ``border``:
    "replicate" (default; no hard edge that would move with the face under per-frame alignment) or "constant"
    (mid-grey 128, MOL's reference).
    """
    m = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    source = image
    if scale < 0.5:
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * scale * 2)), max(1, round(h * scale * 2))
        source = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        # pixel centres: x_small = (x + 0.5) * fx - 0.5
        fx, fy = new_w / w, new_h / h
        pre = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])
        m = compose_affine(m, invert_affine(pre))
    border_mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    channels = 1 if source.ndim == 2 else source.shape[2]
    return cv2.warpAffine(
        source,
        m,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=border_mode,
        borderValue=(128,) * min(channels, 4),
    )


def resize_face(image: np.ndarray, out_size: int) -> np.ndarray:
    """A dataset-provided face crop resized to ``out_size``² the way the MMNet reference does it: torchvision's
    ``Resize((S, S))`` on a PIL image, i.e. PIL bilinear, which low-pass filters when shrinking (no warp, no
    landmarks). uint8 grey (H, W) or RGB (H, W, 3) in, the same channels out."""
    from PIL import Image

    if out_size < 1:
        raise ValueError(f"out_size must be >= 1, got {out_size}")
    pixels = np.ascontiguousarray(_as_uint8(np.asarray(image)))
    if pixels.shape[:2] == (out_size, out_size):
        return pixels.copy()
    return np.asarray(Image.fromarray(pixels).resize((out_size, out_size), Image.Resampling.BILINEAR))


def to_grey(image: np.ndarray, color: Literal["rgb", "bgr"] = "rgb") -> np.ndarray:
    """(H, W) grey image of the same dtype from grey (H, W), (H, W, 1) or colour (H, W, 3) input."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if color == "rgb" else cv2.COLOR_BGR2GRAY)
    raise ValueError(f"expected a grey (H, W) or colour (H, W, 3) image, got shape {image.shape}")


# ---------------------------------------------------------------------------------------------------------------
# Clip alignment from landmarks
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlignedClip:
    """Result of aligning one clip at one or more output sizes.

    * ``frames[name]``: (T, S, S) grey or (T, S, S, 3) colour, dtype of the input frames.
    * ``landmarks[name]``: (T, 68, 2) float32, every frame's landmarks in that size's aligned coordinates. A frame
      whose own landmarks were not detected (not requested, or detection failed) carries the onset landmarks.
    * ``transforms[name]``: (T, 2, 3) float64, source image → aligned coordinates, the matrix used per frame.
    * ``own_landmarks``: (T,) bool, True where the frame's landmarks come from its own detection.
    * ``fallback_frames``: indices where detection was attempted, found no face, and the onset transform and
      landmarks were used instead (never the onset itself: that raises ``NoFaceError``).
    """

    frames: dict[str, np.ndarray]
    landmarks: dict[str, np.ndarray]
    transforms: dict[str, np.ndarray]
    own_landmarks: np.ndarray
    fallback_frames: tuple[int, ...]
    mode: AlignMode
    onset_index: int


def _frame_transform(landmarks: np.ndarray, side: int, box_enlarge: float, fit: FitMethod) -> np.ndarray:
    if fit == "template":
        return similarity_from_landmarks(landmarks, canonical_template(side, box_enlarge))
    if fit == "eye_box":
        return eye_box_similarity(landmarks, side, box_enlarge)
    raise ValueError(f"unknown fit {fit!r}; expected 'template' or 'eye_box'")


def _as_output_channels(warped: np.ndarray, grey: bool, color: Literal["rgb", "bgr"]) -> np.ndarray:
    if grey:
        return to_grey(warped, color)
    if warped.ndim == 2:  # grey source (e.g. SMIC-NIR) asked for colour: replicate the channel
        return np.repeat(warped[..., None], 3, axis=2)
    return warped


def align_frames(
    frames: Sequence[np.ndarray] | np.ndarray,
    landmarks: Mapping[int, np.ndarray | None],
    sizes: Mapping[str, tuple[int, bool]],
    *,
    mode: AlignMode = "onset",
    onset_index: int = 0,
    box_enlarge: float = 2.5,
    fit: FitMethod = "template",
    color: Literal["rgb", "bgr"] = "rgb",
    border: Literal["replicate", "constant"] = "replicate",
) -> AlignedClip:
    """Align a clip given landmarks already found: the geometric half of ``align_clip`` (no dlib).

    ``landmarks`` maps frame index → (68, 2) landmarks, or None where detection ran and found no face; a frame
    missing from the mapping was not searched. The onset frame must have landmarks (else ``NoFaceError``).
    ``sizes`` maps an output name to ``(side, grey)``; all sizes share ``box_enlarge`` so they are the same crop
    at different resolutions. ``mode="onset"`` applies the onset transform to every frame; ``mode="per_frame"``
    fits each frame's own landmarks (every frame must have been searched) and falls back to the onset transform
    where none were found. ``fit`` picks the least-squares template fit (default) or MOL's ``eye_box`` rule.
    """
    n_frames = len(frames)
    if not sizes:
        raise ValueError("sizes is empty: name at least one output size")
    if not 0 <= onset_index < n_frames:
        raise ValueError(f"onset_index {onset_index} outside a clip of {n_frames} frames")
    unknown = sorted(i for i in landmarks if not 0 <= i < n_frames)
    if unknown:
        raise ValueError(f"landmarks given for frames {unknown} outside a clip of {n_frames} frames")
    onset_landmarks = landmarks.get(onset_index)
    if onset_landmarks is None:
        raise NoFaceError(onset_index)
    if mode == "per_frame":
        missing = [i for i in range(n_frames) if i not in landmarks]
        if missing:
            raise ValueError(f"mode='per_frame' needs every frame searched; frames {missing} were not")
    elif mode != "onset":
        raise ValueError(f"unknown mode {mode!r}; expected 'onset' or 'per_frame'")

    fallback = tuple(i for i in range(n_frames) if i in landmarks and landmarks[i] is None)
    own = np.array([landmarks.get(i) is not None for i in range(n_frames)])
    frame_landmarks = [
        np.asarray(landmarks[i] if own[i] else onset_landmarks, dtype=np.float64) for i in range(n_frames)
    ]

    out_frames: dict[str, np.ndarray] = {}
    out_landmarks: dict[str, np.ndarray] = {}
    out_transforms: dict[str, np.ndarray] = {}
    for name, (side, grey) in sizes.items():
        onset_matrix = _frame_transform(onset_landmarks, side, box_enlarge, fit)
        matrices = np.stack(
            [
                _frame_transform(frame_landmarks[i], side, box_enlarge, fit)
                if mode == "per_frame" and own[i]
                else onset_matrix
                for i in range(n_frames)
            ]
        )
        out_transforms[name] = matrices
        out_frames[name] = np.stack(
            [
                _as_output_channels(warp_image(np.asarray(frames[i]), matrices[i], side, border), grey, color)
                for i in range(n_frames)
            ]
        )
        out_landmarks[name] = np.stack(
            [transform_points(frame_landmarks[i], matrices[i]) for i in range(n_frames)]
        ).astype(np.float32)
    return AlignedClip(
        frames=out_frames,
        landmarks=out_landmarks,
        transforms=out_transforms,
        own_landmarks=own,
        fallback_frames=fallback,
        mode=mode,
        onset_index=onset_index,
    )


# ---------------------------------------------------------------------------------------------------------------
# dlib detection
# ---------------------------------------------------------------------------------------------------------------


def default_predictor_path() -> Path:
    """Path of the 68-point model shipped by the ``face-recognition-models`` package.

    Located with ``importlib.util.find_spec``: importing the package would import ``pkg_resources``.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "package 'face-recognition-models' is not installed: it ships "
            "shape_predictor_68_face_landmarks.dat (pip install face-recognition-models), "
            "or pass predictor_path= to LandmarkDetector"
        )
    path = (
        Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    )
    if not path.is_file():
        raise FileNotFoundError(f"dlib 68-point predictor not found at {path}")
    return path


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class LandmarkDetector:
    """dlib HOG frontal face detector + 68-point shape predictor; call it on an image to get (68, 2) landmarks.

    Detection runs on a copy shrunk so its longer side is at most ``detect_max_side`` px (HOG detection cost grows
    with the pixel count; a 280 px CASME II face is still ~140 px at 320), upsampled ``upsample`` times by dlib;
    if nothing is found there and the copy was shrunk, detection is retried on the copy with one more upsampling,
    then at full resolution (retries cost time only on frames where the first pass fails). The largest face
    wins. The predictor then runs at full resolution inside the rescaled box. Input: grey or RGB/BGR image,
    uint8 (floats are rounded into 0–255).

    The dlib models load on first use and are dropped when pickled, so instances can be sent to worker
    processes; ``get_detector`` keeps one loaded instance per process and configuration.
    """

    def __init__(
        self,
        predictor_path: str | os.PathLike[str] | None = None,
        detect_max_side: int = 320,
        upsample: int = 0,
        color: Literal["rgb", "bgr"] = "rgb",
    ) -> None:
        if detect_max_side < 32 or upsample < 0:
            raise ValueError(
                f"need detect_max_side >= 32 and upsample >= 0, got {detect_max_side}, {upsample}"
            )
        self.predictor_path = Path(predictor_path) if predictor_path is not None else None
        self.detect_max_side = detect_max_side
        self.upsample = upsample
        self.color = color
        self._models: tuple[object, object] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_models"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _load(self) -> tuple[object, object]:
        with self._lock:
            if self._models is None:
                import dlib

                path = self.predictor_path or default_predictor_path()
                self._models = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path)))
        return self._models

    def _largest_face(self, detector: object, grey: np.ndarray, upsample: int) -> object | None:
        rects = detector(grey, upsample)
        if len(rects) == 0:
            return None
        return max(rects, key=lambda r: r.width() * r.height())

    def _grey(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(_as_uint8(to_grey(np.asarray(image), self.color)))

    def face_box(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """(left, top, right, bottom) of the largest face in full-resolution pixels, or None (detection only)."""
        rect = self._detect(self._grey(image))
        return None if rect is None else (rect.left(), rect.top(), rect.right(), rect.bottom())

    def landmarks_in_box(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """(68, 2) landmarks predicted inside ``box`` (left, top, right, bottom): the shape predictor alone, no
        detection (a few milliseconds, where HOG detection costs tens)."""
        import dlib

        _, predictor = self._load()
        shape = predictor(self._grey(image), dlib.rectangle(*(int(round(v)) for v in box)))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        grey = self._grey(image)
        rect = self._detect(grey)
        if rect is None:
            return None
        _, predictor = self._load()
        shape = predictor(grey, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def _detect(self, grey: np.ndarray) -> object | None:
        import dlib

        detector, _ = self._load()
        h, w = grey.shape
        shrink = min(1.0, self.detect_max_side / max(h, w))
        rect = None
        if shrink < 1.0:
            small = cv2.resize(
                grey, (max(1, round(w * shrink)), max(1, round(h * shrink))), interpolation=cv2.INTER_AREA
            )
            found = self._largest_face(detector, small, self.upsample)
            if found is None:  # small face: one more upsampling of the small copy is cheaper than full size
                found = self._largest_face(detector, small, self.upsample + 1)
            if found is not None:
                fx, fy = w / small.shape[1], h / small.shape[0]
                rect = dlib.rectangle(
                    round(found.left() * fx),
                    round(found.top() * fy),
                    round((found.right() + 1) * fx) - 1,
                    round((found.bottom() + 1) * fy) - 1,
                )
        if rect is None:
            rect = self._largest_face(detector, grey, self.upsample)
        return rect


def track_landmarks(
    detector: LandmarkDetector, frames: Sequence[np.ndarray], start: int, max_shift: float = 0.1
) -> dict[int, np.ndarray | None]:
    """68 landmarks of every frame, detecting the face once and tracking it (MOL's per-frame landmark targets).

    HOG detection runs on ``frames[start]`` only; walking outwards from it, each frame's landmarks are predicted
    inside that box moved by the drift of the previous frame's landmark centroid from the start frame's. Where
    the centroid jumps by more than ``max_shift`` × the box width from the previous frame (the track is lost),
    the frame is detected afresh (None if no face). Returns {frame index: landmarks or None}.
    """
    box = detector.face_box(frames[start])
    if box is None:
        return {i: detector(frames[i]) for i in range(len(frames))}
    width = float(box[2] - box[0])
    found: dict[int, np.ndarray | None] = {start: detector.landmarks_in_box(frames[start], box)}
    origin = found[start].mean(axis=0)
    for order in (range(start + 1, len(frames)), range(start - 1, -1, -1)):
        previous = found[start]
        for i in order:
            dx, dy = previous.mean(axis=0) - origin
            moved = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
            points = detector.landmarks_in_box(frames[i], moved)
            if np.linalg.norm(points.mean(axis=0) - previous.mean(axis=0)) > max_shift * width:
                points = detector(frames[i])
            found[i] = points
            if points is not None:
                previous = points
    return found


_DETECTORS: dict[tuple[int, tuple[tuple[str, object], ...]], LandmarkDetector] = {}
_DETECTORS_LOCK = threading.Lock()


def get_detector(**config: object) -> LandmarkDetector:
    """The process-local shared ``LandmarkDetector`` for ``config`` (``LandmarkDetector`` keyword arguments)."""
    key = (os.getpid(), tuple(sorted((k, str(v)) for k, v in config.items())))
    with _DETECTORS_LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = LandmarkDetector(**config)  # type: ignore[arg-type]
        return _DETECTORS[key]


def align_clip(
    frames: Sequence[np.ndarray] | np.ndarray,
    sizes: Mapping[str, tuple[int, bool]],
    mode: AlignMode = "onset",
    detector: Detector | None = None,
    *,
    landmarks_per_frame: bool = False,
    onset_index: int = 0,
    box_enlarge: float = 2.5,
    fit: FitMethod = "template",
    color: Literal["rgb", "bgr"] = "rgb",
    border: Literal["replicate", "constant"] = "replicate",
) -> AlignedClip:
    """Detect landmarks and align a clip (see ``align_frames`` for the geometry and the result).

    Detection runs on the onset frame, and on every frame when ``mode="per_frame"`` or ``landmarks_per_frame``
    (MOL's landmark targets need each frame's own landmarks even when cropping with the onset transform).
    ``detector`` is any callable image → (68, 2) landmarks or None; default: the shared dlib ``get_detector()``.
    Raises ``NoFaceError`` (with the frame index) when the onset frame has no face.
    """
    if not 0 <= onset_index < len(frames):
        raise ValueError(f"onset_index {onset_index} outside a clip of {len(frames)} frames")
    detect = detector if detector is not None else get_detector(color=color)
    searched = range(len(frames)) if (mode == "per_frame" or landmarks_per_frame) else [onset_index]
    found: dict[int, np.ndarray | None] = {onset_index: detect(np.asarray(frames[onset_index]))}
    if found[onset_index] is None:
        raise NoFaceError(onset_index)
    for i in searched:
        if i not in found:
            found[i] = detect(np.asarray(frames[i]))
    return align_frames(
        frames,
        found,
        sizes,
        mode=mode,
        onset_index=onset_index,
        box_enlarge=box_enlarge,
        fit=fit,
        color=color,
        border=border,
    )
