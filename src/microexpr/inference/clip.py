"""A new clip for prediction: its frames (a folder of images or a video file), its key frames, and the features
its model reads, computed by the training recipes with the settings the model card recorded.

Frames: a folder's images (``.jpg .jpeg .png .bmp .tif .tiff .webp``) are ordered and numbered by the last number
in their file names (``img46.jpg`` is frame 46), or by name and numbered from 1 when the names do not all carry
distinct numbers; a video's frames are numbered from 1 and written losslessly (PNG) to a scratch folder, so both
go through the same recipes (``microexpr.features.recipes``) that built the training features.

Key frames: ``onset`` defaults to the first frame, ``offset`` to the last. When the apex is not given it is
**spotted** as the peak of onset-relative flow magnitude, guarded against head drift: every frame from onset to
offset is cut by the onset's face alignment (grey, 128 px); the Farneback flow from the onset to each frame, and
from the offset to each frame, is computed over the central face region (the outer eighth of each side left out,
where the warp's border and the hair move) with its least-squares affine part (the head's rigid motion) removed;
a frame's motion is the mean remaining magnitude. The apex is the frame where the smaller of its onset-relative and offset-relative
motion, averaged over 3 frames, peaks: an expression is away from both neutral ends at its apex, whereas slow head
drift grows from the onset and would make the last frame win on the onset-relative curve alone. The curves are
kept for the figure and the JSON, and a spotted apex is always reported as spotted. It is a heuristic: pass
``--apex`` when the apex is known (docs/predict.md gives how far it landed on synthetic clips).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from microexpr.datasets.feature_store import FeatureExclusion
from microexpr.features import recipes
from microexpr.vision.face import resize_face, to_grey
from microexpr.vision.flow import compute_flow, flow_magnitude

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
SPOT_SIZE = 128
SPOT_METHOD = "farneback"
SPOT_BORDER = 1 / 8
SPOT_SMOOTH = 3
DEFAULT_BOX_ENLARGE = 2.5

__all__ = ["Clip", "ClipError", "KeyFrames", "choose_key_frames", "clip_features", "clip_row", "open_clip",
           "key_frame_motion", "residual_motion", "sample_record"]


class ClipError(ValueError):
    """A clip that cannot be read or predicted on (no frames, no face, key frames outside the clip)."""


@dataclass(frozen=True)
class Clip:
    """Frames of one clip on disk: ``root`` / ``frame_paths[i]`` is frame number ``frame_numbers[i]``."""

    name: str
    root: Path
    frame_paths: list[str]
    frame_numbers: list[int]
    source: str  # "folder" | "video"
    fps: float | None = None

    def __len__(self) -> int:
        return len(self.frame_numbers)


@dataclass
class KeyFrames:
    """Onset, apex, offset (frame numbers), how each was chosen, and the motion curves of the frames between."""

    onset: int
    apex: int
    offset: int
    chosen: dict[str, str]
    curve_numbers: list[int] = field(default_factory=list)
    curves: dict[str, list[float]] = field(default_factory=dict)
    face_source: str = "dlib"

    @property
    def spotted(self) -> bool:
        return self.chosen.get("apex", "").startswith("spotted")


def _number_in(name: str) -> int | None:
    found = re.findall(r"\d+", Path(name).stem)
    return int(found[-1]) if found else None


def clip_from_folder(folder: Path) -> Clip:
    """The images of ``folder`` in frame order (module docstring)."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise ClipError(f"{folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    numbers = [_number_in(n) for n in names]
    if None not in numbers and len(set(numbers)) == len(numbers):
        order = np.argsort(numbers, kind="stable")
        names, numbers = [names[i] for i in order], [int(numbers[i]) for i in order]
    else:
        numbers = list(range(1, len(names) + 1))
    return Clip(folder.name, folder, names, numbers, "folder")


def clip_from_video(path: Path, scratch: Path) -> Clip:
    """Decode ``path`` with OpenCV into lossless PNG frames ``000001.png`` … under ``scratch`` (numbered from 1)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ClipError(f"{path}: OpenCV cannot open this video file")
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0) or None
    scratch.mkdir(parents=True, exist_ok=True)
    names = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            name = f"{len(names) + 1:06d}.png"
            if not cv2.imwrite(str(scratch / name), frame):
                raise ClipError(f"cannot write decoded frame {name} to {scratch}")
            names.append(name)
    finally:
        capture.release()
    if not names:
        raise ClipError(f"{path}: no frame could be decoded")
    return Clip(path.stem, scratch, names, list(range(1, len(names) + 1)), "video", fps)


def open_clip(path: Path | str, scratch: Path) -> Clip:
    """A folder of frames or a video file (anything OpenCV decodes)."""
    path = Path(path)
    if path.is_dir():
        return clip_from_folder(path)
    if path.is_file():
        return clip_from_video(path, scratch)
    raise ClipError(f"{path} is neither a folder of frames nor a video file")


def sample_record(clip: Clip, onset: int, apex: int, offset: int, dataset: str) -> dict[str, Any]:
    """The index-row subset the feature recipes read (``recipes.sample_record``), for frames onset..offset."""
    keep = [i for i, n in enumerate(clip.frame_numbers) if onset <= n <= offset]
    return {
        "sample_id": clip.name, "dataset": dataset, "root": str(clip.root), "clip_dir": "",
        "frame_paths": [clip.frame_paths[i] for i in keep], "frame_numbers": [clip.frame_numbers[i] for i in keep],
        "onset": int(onset), "apex": int(apex), "offset": int(offset), "content_hash": "",
    }


def clip_row(sample: Mapping[str, Any], label_set: str, fps: float | None) -> pd.Series:
    """An index row for a task's ``sample_arrays``: the clip's frames and key frames, and no annotation at all
    (no AUs, no emotion, no label): what the task derives from annotations is training-only and never reaches
    prediction."""
    return pd.Series({
        "sample_id": sample["sample_id"], "dataset": sample["dataset"], "subject": "new", "clip": sample["sample_id"],
        "fold_subject": f"{sample['dataset']}/new", "root": sample["root"], "clip_dir": "",
        "frame_paths": list(sample["frame_paths"]), "frame_numbers": list(sample["frame_numbers"]),
        "n_frames": len(sample["frame_numbers"]), "missing_frames": [], "onset": sample["onset"],
        "apex": sample["apex"], "offset": sample["offset"], "apex_source": "prediction", "fps": fps or np.nan,
        "au_raw": "", "aus": [], "au_codes": [], "au_unparsed": [], "emotion_raw": "", "emotion": "",
        "objective_class": "", "label_set": label_set, "label": "", "label_id": -1, "annotation_file": "",
        "annotation_row": -1, "corrections": "", "notes": "", "content_hash": "",
    })


def _alignment(sample: dict[str, Any], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    try:
        return recipes.face_alignment(sample, dict(params))
    except FeatureExclusion as error:
        raise ClipError(str(error)) from None


def _box_enlarge(preprocessing: Mapping[str, Mapping[str, Any]]) -> float:
    for feature, cfg in preprocessing.items():
        if feature != "face_alignment" and "box_enlarge" in cfg and cfg.get("alignment", "dlib") == "dlib":
            return float(cfg["box_enlarge"])
    return DEFAULT_BOX_ENLARGE


def _uses_crops(cfg: Mapping[str, Any]) -> bool:
    return cfg.get("alignment", "dlib") == "dataset_crops"


def residual_motion(flow: np.ndarray) -> float:
    """Mean magnitude of (H, W, 2) flow after removing its least-squares affine part (the head's rigid motion:
    translation, rotation, scale), i.e. the local, non-rigid motion of the face."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    design = np.stack([xs.ravel(), ys.ravel(), np.ones(height * width)], axis=1).astype(np.float64)
    vectors = flow.reshape(-1, 2).astype(np.float64)
    coefficients, *_ = np.linalg.lstsq(design, vectors, rcond=None)
    residual = vectors - design @ coefficients
    return float(np.hypot(residual[:, 0], residual[:, 1]).mean())


def _motion(reference: np.ndarray, face: np.ndarray, inner: slice) -> float:
    return residual_motion(compute_flow(reference, face, SPOT_METHOD)[inner, inner])


def key_frame_motion(grey_faces: np.ndarray) -> dict[str, np.ndarray]:
    """Per frame of (T, S, S) grey faces from onset to offset: ``onset`` and ``offset`` relative motion (mean
    non-rigid Farneback magnitude in pixels of the crop, module docstring) and the spotting ``score`` (3-frame
    mean of their minimum)."""
    side = grey_faces.shape[1]
    border = int(round(side * SPOT_BORDER))
    inner = slice(border, side - border)
    onset = np.array([0.0] + [_motion(grey_faces[0], f, inner) for f in grey_faces[1:]])
    offset = np.array([_motion(grey_faces[-1], f, inner) for f in grey_faces[:-1]] + [0.0])
    low = np.minimum(onset, offset)
    score = np.convolve(np.pad(low, SPOT_SMOOTH // 2, mode="edge"), np.ones(SPOT_SMOOTH) / SPOT_SMOOTH, mode="valid")
    return {"onset": onset, "offset": offset, "score": score}


def _face_cutter(sample: dict[str, Any], preprocessing: Mapping[str, Mapping[str, Any]]):
    """(faces(numbers, size, grey), "dlib" | "frames as crops", alignment or None) for the clip."""
    face_cfgs = [cfg for f, cfg in preprocessing.items() if f != "face_alignment"]
    if face_cfgs and all(_uses_crops(cfg) for cfg in face_cfgs):
        paths = dict(zip(sample["frame_numbers"], sample["frame_paths"], strict=True))

        def cut(numbers: Sequence[int], size: int, grey: bool) -> np.ndarray:
            faces = [resize_face(recipes.read_image(sample, Path(sample["root"]) / paths[n]), size) for n in numbers]
            return np.stack([to_grey(f) if grey else f for f in faces])

        return cut, "frames as crops", None
    alignment = _alignment(sample, preprocessing["face_alignment"])
    return recipes.dlib_faces(sample, alignment, _box_enlarge(preprocessing)), "dlib", alignment


def _check_number(clip: Clip, name: str, value: int) -> int:
    if value not in clip.frame_numbers:
        raise ClipError(f"--{name} {value} is not a frame of {clip.name} (frames {clip.frame_numbers[0]}.."
                        f"{clip.frame_numbers[-1]})")
    return int(value)


def choose_key_frames(clip: Clip, preprocessing: Mapping[str, Mapping[str, Any]], dataset: str,
                      onset: int | None = None, apex: int | None = None, offset: int | None = None) -> KeyFrames:
    """Onset, apex and offset: those given, else the first frame, the spotted apex, the last frame."""
    chosen = {"onset": "given" if onset is not None else "first frame",
              "offset": "given" if offset is not None else "last frame"}
    onset = _check_number(clip, "onset", onset if onset is not None else clip.frame_numbers[0])
    offset = _check_number(clip, "offset", offset if offset is not None else clip.frame_numbers[-1])
    if apex is not None:
        apex = _check_number(clip, "apex", apex)
    if not onset < offset or (apex is not None and not onset <= apex <= offset):
        raise ClipError(f"key frames must satisfy onset < offset and onset <= apex <= offset; got onset {onset}, "
                        f"apex {apex}, offset {offset}")
    sample = sample_record(clip, onset, apex if apex is not None else onset, offset, dataset)
    cut, face_source, _ = _face_cutter(sample, preprocessing)
    numbers = list(sample["frame_numbers"])
    curves = key_frame_motion(cut(numbers, SPOT_SIZE, True))
    if apex is None:
        position = int(np.argmax(curves["score"]))
        apex = numbers[position]
        chosen["apex"] = (f"spotted: peak of onset-relative flow magnitude bounded by the offset-relative one, "
                          f"{curves['score'][position]:.3f} px over the central face at {SPOT_SIZE} px")
    else:
        chosen["apex"] = "given"
    return KeyFrames(onset, int(apex), offset, chosen, numbers, {k: v.tolist() for k, v in curves.items()},
                     face_source)


def clip_features(sample: dict[str, Any], features: Sequence[str],
                  preprocessing: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Every feature the model reads, by the training recipe with the card's settings: faces by the dlib warp of
    the onset's landmarks, or (``alignment: dataset_crops`` in training) the frames themselves as face crops."""
    out: dict[str, dict[str, np.ndarray]] = {}
    alignment = None
    try:
        for feature in features:
            if feature == "face_alignment":
                continue
            cfg = dict(preprocessing[feature])
            if feature in recipes.FACE_RECIPES and _uses_crops(cfg):
                paths = dict(zip(sample["frame_numbers"], sample["frame_paths"], strict=True))
                out[feature] = recipes.with_provided_crops(feature, sample, cfg, sample["root"], paths)
                continue
            if alignment is None:
                alignment = _alignment(sample, preprocessing["face_alignment"])
            if feature in recipes.FACE_RECIPES:
                out[feature] = recipes.FACE_RECIPES[feature](
                    sample, cfg, recipes.dlib_faces(sample, alignment, float(cfg["box_enlarge"])))
            else:
                out[feature] = recipes.RECIPES[feature](sample, cfg, alignment)
    except FeatureExclusion as error:
        raise ClipError(str(error)) from None
    return out


def key_faces(sample: dict[str, Any], preprocessing: Mapping[str, Mapping[str, Any]], size: int = SPOT_SIZE
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB onset and apex faces and the onset -> apex flow magnitude map (for the prediction figure)."""
    cut, _, _ = _face_cutter(sample, preprocessing)
    onset, apex = cut([sample["onset"], sample["apex"]], size, False)
    magnitude = flow_magnitude(compute_flow(to_grey(onset), to_grey(apex), SPOT_METHOD))
    return onset, apex, magnitude
