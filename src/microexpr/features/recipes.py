"""Per-clip feature recipes: what each preprocessing feature reads from the raw frames and what arrays it stores.

Every recipe is a module-level function run by :class:`~microexpr.datasets.feature_store.FeatureStore` in worker
processes (one clip at a time, so memory stays bounded by a clip, never the dataset). ``sample`` is a plain dict of
the index row (see :func:`sample_record`). The features that only need face images (``FACE_RECIPES``) take
``recipe(sample, params, faces)``: ``faces(numbers, size, grey)`` cuts the face out of the given frames, either by
the dlib warp of the clip's ``face_alignment`` (:func:`dlib_faces`) or by resizing the dataset's provided crops
(:func:`provided_faces`, ``alignment: dataset_crops``). ``mol_clips`` needs the landmarks themselves and takes
``recipe(sample, params, alignment)``. A clip that cannot yield a feature raises :class:`FeatureExclusion` with a
message naming the sample and the file.

Features (shapes per clip; docs/preprocessing.md has the normalisation of each):
  face_alignment  onset_landmarks (68,2) f32 in raw pixels, image_hw (2,)            dlib, onset frame only
  key_frames      onset_frames (A,S,S,3) u8, onset_offsets (A,) i16, apex_frames (B,S,S,3) u8,
                  apex_offsets (B,) i16                                               MMNet, CVA+FPF
  flow_onset_apex flow (S,S,3) f16 = u, v in pixels of the S crop, optical strain   TV-L1
  samer_inputs    composite (S,S,3) u8 = grey magnified apex, On-A, Off-A            SAMER
  mol_clips       frames (T,S,S) u8 grey, landmarks (T,68,2) f32 aligned, fallback (T,) bool,
                  flow_pairs (P,2) i16, flows (P,C,C,2) f16 pixels                   MOL
  attr_clips      rgb (N,S,S,3) u8 TIM-interpolated, flow (N,S,S,2) f16 Farneback pixels (frame 0 zero)  attr.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from microexpr.datasets.feature_store import FeatureExclusion, read_blob
from microexpr.vision.face import align_frames, get_detector, resize_face, to_grey, track_landmarks
from microexpr.vision.flow import compute_flow, optical_strain, samer_composite, samer_on_off_apex
from microexpr.vision.interpolate import tim_interpolate, uniform_resample
from microexpr.vision.magnify import get_magnifier

RECIPE_VERSION = 1

INDEX_FIELDS = ("sample_id", "dataset", "root", "clip_dir", "frame_paths", "frame_numbers", "onset", "apex", "offset",
                "content_hash")

#: ``faces(numbers, size, grey)`` -> (T, S, S, 3) RGB or (T, S, S) grey uint8 faces of the frames ``numbers``.
FaceSource = Callable[[Sequence[int], int, bool], np.ndarray]
_FLOOR_TOLERANCE = 1e-9  # floor(0.0375 * 80) must be 3 whether the fraction is written 0.0375 or 0.15 / 4


def sample_record(row: Any) -> dict[str, Any]:
    """The picklable subset of an index row a recipe needs (lists of plain ints and strings)."""
    return {
        "sample_id": str(row["sample_id"]),
        "dataset": str(row["dataset"]),
        "root": str(row["root"]),
        "clip_dir": str(row["clip_dir"]),
        "frame_paths": [str(p) for p in row["frame_paths"]],
        "frame_numbers": [int(n) for n in row["frame_numbers"]],
        "onset": int(row["onset"]),
        "apex": int(row["apex"]),
        "offset": int(row["offset"]),
        "content_hash": str(row["content_hash"]),
    }


def read_image(sample: dict[str, Any], path: Path) -> np.ndarray:
    """Decode one image file as RGB uint8; an exclusion naming the sample and the file if it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FeatureExclusion(f"sample {sample['sample_id']}: frame {path} cannot be decoded")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame(sample: dict[str, Any], position: int) -> np.ndarray:
    """Decode one frame (RGB uint8) by its position in the clip's frame list; a clear error if unreadable."""
    return read_image(sample, Path(sample["root"]) / sample["frame_paths"][position])


class ClipFrames(Sequence):
    """A clip's frames decoded on access (RGB uint8), so a recipe that walks them holds one full-size frame at a
    time; a frame read twice is decoded twice (cheaper than holding a 4000×3000 clip in memory)."""

    def __init__(self, sample: dict[str, Any]) -> None:
        self.sample = sample

    def __len__(self) -> int:
        return len(self.sample["frame_paths"])

    def __getitem__(self, position: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self) <= position < len(self):
            raise IndexError(position)
        return read_frame(self.sample, position % len(self))


def position_of(sample: dict[str, Any], frame_number: int) -> int:
    """Position in the frame list of a frame number (the index lists onset..offset in numeric order)."""
    try:
        return sample["frame_numbers"].index(frame_number)
    except ValueError:
        raise FeatureExclusion(
            f"sample {sample['sample_id']}: frame number {frame_number} is not in its frame list"
        ) from None


def detector_from(params: dict[str, Any]):
    return get_detector(detect_max_side=int(params.get("detect_max_side", 320)), upsample=int(params.get("upsample", 0)))


def face_alignment(sample: dict[str, Any], params: dict[str, Any], alignment: None = None) -> dict[str, np.ndarray]:
    """dlib landmarks of the onset frame; every other feature warps frames with the transform they define."""
    onset_pos = position_of(sample, sample["onset"])
    image = read_frame(sample, onset_pos)
    landmarks = detector_from(params)(image)
    if landmarks is None:
        path = Path(sample["root"]) / sample["frame_paths"][onset_pos]
        raise FeatureExclusion(f"sample {sample['sample_id']}: no face found on the onset frame {path}")
    return {"onset_landmarks": landmarks.astype(np.float32), "image_hw": np.array(image.shape[:2], dtype=np.int32)}


def _warp_one(frame: np.ndarray, onset_landmarks: np.ndarray, size: int, grey: bool, box_enlarge: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """One frame warped with the clip's onset transform: (face, the transform)."""
    aligned = align_frames(
        [frame], {0: onset_landmarks}, {"out": (size, grey)}, mode="onset", onset_index=0, box_enlarge=box_enlarge,
    )
    return aligned.frames["out"][0], aligned.transforms["out"][0]


def dlib_faces(sample: dict[str, Any], alignment: dict[str, np.ndarray], box_enlarge: float) -> FaceSource:
    """Faces cut by the dlib warp: every frame warped with the one transform of the clip's onset landmarks.

    Frames are decoded and warped one at a time, so a clip of large frames (4000x3000) holds one full-size frame
    in memory, not the whole clip (docs/reliability.md, memory)."""
    def cut(numbers: Sequence[int], size: int, grey: bool) -> np.ndarray:
        return np.stack([
            _warp_one(read_frame(sample, position_of(sample, n)), alignment["onset_landmarks"], size, grey,
                      box_enlarge)[0]
            for n in numbers
        ])
    return cut


def provided_faces(sample: dict[str, Any], root: str, paths: dict[int, str]) -> FaceSource:
    """Faces from the dataset's own crop files (``paths``: frame number -> path under ``root``), resized only."""
    def cut(numbers: Sequence[int], size: int, grey: bool) -> np.ndarray:
        faces = []
        for n in numbers:
            if n not in paths:
                raise FeatureExclusion(f"sample {sample['sample_id']}: no provided crop was located for frame {n}")
            face = resize_face(read_image(sample, Path(root) / paths[n]), size)
            faces.append(to_grey(face) if grey else face)
        return np.stack(faces)
    return cut


def window_numbers(sample: dict[str, Any], centre: int, before: int, after: int, lo: int, hi: int) -> list[int]:
    """Frame numbers centre-before..centre+after that exist in the clip and lie within [lo, hi]."""
    present = set(sample["frame_numbers"])
    return [n for n in range(centre - before, centre + after + 1) if lo <= n <= hi and n in present]


def stored_reach(params: dict[str, Any], name: str, length: int) -> int:
    """Frames stored on one side of a key frame: ``params[name]``, or ⌊``<name>_fraction``·length⌋ when that is
    larger (length = the rise for the onset and apex-before sides, the fall for apex-after), so a training window
    that grows with the rise (MMNet's reference code) finds its frames stored."""
    fraction = float(params.get(f"{name}_fraction") or 0.0)
    return max(int(params[name]), math.floor(fraction * max(length, 0) + _FLOOR_TOLERANCE))


def key_frame_windows(sample: dict[str, Any], params: dict[str, Any]) -> tuple[list[int], list[int]]:
    """Frame numbers stored around the onset (onset..onset+a, not past the apex) and around the apex
    (apex-b..apex+c, within onset..offset); numbers missing from the clip are skipped."""
    onset, apex, offset = sample["onset"], sample["apex"], sample["offset"]
    rise, fall = apex - onset, offset - apex
    on_numbers = window_numbers(sample, onset, 0, stored_reach(params, "onset_after", rise), onset, apex)
    ap_numbers = window_numbers(sample, apex, stored_reach(params, "apex_before", rise),
                                stored_reach(params, "apex_after", fall), onset, offset)
    return on_numbers, ap_numbers


def require_motion(sample: dict[str, Any], feature: str) -> None:
    """A feature measuring onset -> apex motion needs two distinct frames: else an exclusion, never a zero."""
    if sample["onset"] == sample["apex"]:
        raise FeatureExclusion(
            f"sample {sample['sample_id']}: onset and apex are the same frame ({sample['onset']}); {feature} "
            "needs motion between two frames"
        )


def key_frames(sample: dict[str, Any], params: dict[str, Any], faces: FaceSource) -> dict[str, np.ndarray]:
    """RGB faces of the frames around the onset and the apex (the frame-jitter windows of MMNet-style training)."""
    require_motion(sample, "key_frames")
    onset, apex = sample["onset"], sample["apex"]
    on_numbers, ap_numbers = key_frame_windows(sample, params)
    numbers = sorted(set(on_numbers) | set(ap_numbers) | {onset})
    by_number = dict(zip(numbers, faces(numbers, int(params["size"]), False), strict=True))
    return {
        "onset_frames": np.stack([by_number[n] for n in on_numbers]),
        "onset_offsets": np.array([n - onset for n in on_numbers], dtype=np.int16),
        "apex_frames": np.stack([by_number[n] for n in ap_numbers]),
        "apex_offsets": np.array([n - apex for n in ap_numbers], dtype=np.int16),
    }


def flow_onset_apex(sample: dict[str, Any], params: dict[str, Any], faces: FaceSource) -> dict[str, np.ndarray]:
    """TV-L1 (or Farneback) flow onset -> apex on the grey face, with optical strain."""
    require_motion(sample, "flow_onset_apex")
    onset_img, apex_img = faces([sample["onset"], sample["apex"]], int(params["size"]), True)
    flow = compute_flow(onset_img, apex_img, params["method"], **dict(params.get("flow_params") or {}))
    return {"flow": np.dstack([flow, optical_strain(flow)]).astype(np.float16)}


SAMER_FLOW_TARGETS = ("apex", "magnified_apex")


def samer_flow_target(params: dict[str, Any], dataset: str) -> str:
    """The frame SAMER's On-A / Off-A flows point to for a clip of ``dataset``.

    ``flow_target`` is one choice for every dataset or a mapping dataset -> choice with a ``default`` entry (the
    paper, §4: the apex on CASME II, the magnified apex on SAMM).
    """
    choice = params.get("flow_target", "apex")
    if isinstance(choice, Mapping):
        choice = choice.get(dataset, choice.get("default", "apex"))
    if choice not in SAMER_FLOW_TARGETS:
        raise ValueError(f"preprocess.samer_inputs.flow_target for {dataset!r} must be one of {SAMER_FLOW_TARGETS}, "
                         f"got {choice!r}")
    return str(choice)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB encoded as a JPEG of ``quality`` and decoded again (the reference code stores
    SAMER's composite as ``optical.jpg``; PIL's default quality is 75)."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100 or null, got {quality!r}")
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding of the SAMER composite failed")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def samer_inputs(sample: dict[str, Any], params: dict[str, Any], faces: FaceSource) -> dict[str, np.ndarray]:
    """SAMER's composite: grey magnified apex, On-A and Off-A flow-magnitude maps (onset/offset -> target frame,
    the apex or the magnified apex per dataset: ``samer_flow_target``). Stored losslessly unless ``jpeg_quality``
    asks for the reference's JPEG round trip."""
    require_motion(sample, "samer_inputs")
    onset_img, apex_img, offset_img = faces([sample["onset"], sample["apex"], sample["offset"]],
                                            int(params["size"]), False)
    magnify = get_magnifier(params["magnifier"], **dict(params.get("magnifier_params") or {}))
    magnified = magnify(onset_img, apex_img)
    target = magnified if samer_flow_target(params, sample["dataset"]) == "magnified_apex" else apex_img
    maps = samer_on_off_apex(to_grey(onset_img), to_grey(target), to_grey(offset_img),
                             **dict(params.get("flow_params") or {}))
    composite = samer_composite(magnified, maps)
    quality = params.get("jpeg_quality")
    return {"composite": composite if quality is None else jpeg_round_trip(composite, int(quality))}


def interval_pairs(n_frames: int, clip_length: int) -> list[tuple[int, int]]:
    """MOL's sampling: interval = n // clip_length; sub-clip j takes frames i*interval + j; flow between neighbours."""
    interval = n_frames // clip_length
    if interval < 1:
        return []
    return [(i * interval + j, (i + 1) * interval + j) for j in range(interval) for i in range(clip_length - 1)]


def frame_landmarks(frames: list[np.ndarray], onset_pos: int, params: dict[str, Any]) -> dict[int, np.ndarray | None]:
    """Every frame's 68 landmarks: ``landmarks: track`` (default) detects the face on the onset frame only and
    tracks it (``track_landmarks``); ``detect`` runs the HOG detector on every frame (about 10x slower)."""
    detector = detector_from(params)
    mode = params.get("landmarks", "track")
    if mode == "track":
        return track_landmarks(detector, frames, onset_pos)
    if mode == "detect":
        return {i: detector(frame) for i, frame in enumerate(frames)}
    raise ValueError(f"preprocess.mol_clips.landmarks must be 'track' or 'detect', got {mode!r}")


def mol_clips(sample: dict[str, Any], params: dict[str, Any], alignment: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Grey aligned clip (MOL: 144 px), per-frame landmarks in aligned coordinates, TV-L1 targets of sampled pairs.

    ``warp``: onset (every frame warped by the onset's transform, so TV-L1 sees no alignment jitter) | per_frame
    (each frame by its own landmarks, the MOL code); ``fit``: template | eye_box (the MOL code's rule)."""
    n = len(sample["frame_paths"])
    clip_length = int(params["clip_length"])
    if n < clip_length:
        raise FeatureExclusion(
            f"sample {sample['sample_id']}: {n} frames, fewer than MOL's clip length {clip_length}"
        )
    onset_pos = position_of(sample, sample["onset"])
    frames = ClipFrames(sample)  # decoded on access: one full-size frame in memory at a time (docs/reliability.md)
    found = frame_landmarks(frames, onset_pos, params)
    found[onset_pos] = alignment["onset_landmarks"]
    aligned = align_frames(frames, found, {"out": (int(params["size"]), True)}, mode=params.get("warp", "onset"),
                           onset_index=onset_pos, box_enlarge=float(params["box_enlarge"]),
                           fit=params.get("fit", "template"))
    grey = aligned.frames["out"]
    pairs = interval_pairs(n, clip_length)
    flows = np.stack([
        compute_flow(grey[a], grey[b], "tvl1", **dict(params.get("flow_params") or {})) for a, b in pairs
    ]).astype(np.float16)
    fallback = np.zeros(n, dtype=bool)
    fallback[list(aligned.fallback_frames)] = True
    return {
        "frames": grey,
        "landmarks": aligned.landmarks["out"],
        "fallback": fallback,
        "flow_pairs": np.array(pairs, dtype=np.int16).reshape(-1, 2),
        "flows": flows,
    }


def attr_clips(sample: dict[str, Any], params: dict[str, Any], faces: FaceSource) -> dict[str, np.ndarray]:
    """RGB face clip temporally interpolated to N frames (TIM or uniform) and N Farneback flow fields, one per frame.

    ``flow_reference``: ``previous`` (default) = flow from frame i-1 to frame i (the flow *sequence* of the
    attribute-embedding paper §IV.B), ``first`` = flow from frame 0 to frame i. Frame 0 has no earlier frame: its
    field is zero in both readings, so the flow clip has as many frames as the RGB clip (the paper's two streams
    take 16-frame clips, Table I).
    """
    if len(sample["frame_numbers"]) < 2:
        raise FeatureExclusion(
            f"sample {sample['sample_id']}: {len(sample['frame_numbers'])} frame(s); attr_clips interpolates "
            "between at least two"
        )
    clip = faces(list(sample["frame_numbers"]), int(params["size"]), False)
    interpolate = tim_interpolate if params["interpolation"] == "tim" else uniform_resample
    rgb = interpolate(clip, int(params["n_frames"]))
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8) if rgb.dtype != np.uint8 else rgb
    reference = str(params.get("flow_reference", "previous"))
    if reference not in ("previous", "first"):
        raise ValueError(f"preprocess.attr_clips.flow_reference must be previous or first, got {reference!r}")
    flow_params = dict(params.get("flow_params") or {})
    fields = [np.zeros((*rgb.shape[1:3], 2), dtype=np.float32)]
    for i in range(1, len(rgb)):
        source = rgb[i - 1] if reference == "previous" else rgb[0]
        fields.append(compute_flow(source, rgb[i], "farneback", **flow_params))
    return {"rgb": rgb, "flow": np.stack(fields).astype(np.float16)}


def needed_frames(feature: str, sample: dict[str, Any], params: dict[str, Any]) -> list[int]:
    """Frame numbers a face feature reads (the crops it needs under ``alignment: dataset_crops``)."""
    if feature == "key_frames":
        on_numbers, ap_numbers = key_frame_windows(sample, params)
        return sorted(set(on_numbers) | set(ap_numbers) | {sample["onset"]})
    if feature == "flow_onset_apex":
        return sorted({sample["onset"], sample["apex"]})
    if feature == "samer_inputs":
        return sorted({sample["onset"], sample["apex"], sample["offset"]})
    if feature == "attr_clips":
        return list(sample["frame_numbers"])
    raise ValueError(f"feature {feature!r} cannot use provided crops; those that can: {', '.join(FACE_RECIPES)}")


def with_alignment(feature: str, sample: dict[str, Any], params: dict[str, Any], blob_dir: str,
                   align_key: str) -> dict[str, np.ndarray]:
    """Job entry point of every feature built on the dlib alignment: load the clip's alignment arrays, run the
    recipe (face features get the warp as their face source)."""
    alignment = read_blob(Path(blob_dir), align_key)
    if feature in FACE_RECIPES:
        return FACE_RECIPES[feature](sample, params, dlib_faces(sample, alignment, float(params["box_enlarge"])))
    return RECIPES[feature](sample, params, alignment)


def with_provided_crops(feature: str, sample: dict[str, Any], params: dict[str, Any], root: str,
                        paths: dict[int, str]) -> dict[str, np.ndarray]:
    """Job entry point of a face feature under ``alignment: dataset_crops``: the dataset's crops, resized."""
    return FACE_RECIPES[feature](sample, params, provided_faces(sample, root, paths))


def excluded_upstream(reason: str) -> dict[str, np.ndarray]:
    """Job for a clip whose alignment failed: propagate the reason instead of computing anything."""
    raise FeatureExclusion(reason)


FACE_RECIPES: dict[str, Callable[[dict[str, Any], dict[str, Any], FaceSource], dict[str, np.ndarray]]] = {
    "key_frames": key_frames,
    "flow_onset_apex": flow_onset_apex,
    "samer_inputs": samer_inputs,
    "attr_clips": attr_clips,
}

RECIPES = {
    "face_alignment": face_alignment,
    **FACE_RECIPES,
    "mol_clips": mol_clips,
}
