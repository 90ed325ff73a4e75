"""Per-clip feature recipes: what each preprocessing feature reads from the raw frames and what arrays it stores.

Every recipe is a module-level function ``recipe(sample, params, alignment=None) -> dict[str, np.ndarray]``
run by :class:`~microexpr.datasets.feature_store.FeatureStore` in worker processes (one clip at a time, so memory
stays bounded by a clip, never the dataset). ``sample`` is a plain dict of the index row (see
:func:`sample_record`); ``alignment`` is the arrays of the clip's ``face_alignment`` feature. A clip that cannot
yield a feature raises :class:`FeatureExclusion` with a message naming the sample and the file.

Features (shapes per clip; docs/preprocessing.md has the normalisation of each):
  face_alignment  onset_landmarks (68,2) f32 in raw pixels, image_hw (2,)            dlib, onset frame only
  key_frames      onset_frames (A,S,S,3) u8, onset_offsets (A,) i16, apex_frames (B,S,S,3) u8,
                  apex_offsets (B,) i16                                               MMNet, CVA+FPF
  flow_onset_apex flow (S,S,3) f16 = u, v in pixels of the S crop, optical strain   TV-L1
  samer_inputs    composite (S,S,3) u8 = grey magnified apex, On-A, Off-A            SAMER
  mol_clips       frames (T,S,S) u8 grey, landmarks (T,68,2) f32 aligned, fallback (T,) bool,
                  flow_pairs (P,2) i16, flows (P,C,C,2) f16 pixels                   MOL
  attr_clips      rgb (N,S,S,3) u8 TIM-interpolated, flow (N-1,S,S,2) f16 Farneback pixels   attribute paper
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from microexpr.datasets.feature_store import FeatureExclusion, read_blob
from microexpr.vision.face import align_frames, get_detector, to_grey
from microexpr.vision.flow import compute_flow, optical_strain, samer_composite, samer_on_off_apex
from microexpr.vision.interpolate import tim_interpolate, uniform_resample
from microexpr.vision.magnify import get_magnifier

RECIPE_VERSION = 1

INDEX_FIELDS = ("sample_id", "root", "frame_paths", "frame_numbers", "onset", "apex", "offset", "content_hash")


def sample_record(row: Any) -> dict[str, Any]:
    """The picklable subset of an index row a recipe needs (lists of plain ints and strings)."""
    return {
        "sample_id": str(row["sample_id"]),
        "root": str(row["root"]),
        "frame_paths": [str(p) for p in row["frame_paths"]],
        "frame_numbers": [int(n) for n in row["frame_numbers"]],
        "onset": int(row["onset"]),
        "apex": int(row["apex"]),
        "offset": int(row["offset"]),
        "content_hash": str(row["content_hash"]),
    }


def read_frame(sample: dict[str, Any], position: int) -> np.ndarray:
    """Decode one frame (RGB uint8) by its position in the clip's frame list; a clear error if unreadable."""
    path = Path(sample["root"]) / sample["frame_paths"][position]
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FeatureExclusion(f"sample {sample['sample_id']}: frame {path} cannot be decoded")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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


def _warp(frames: list[np.ndarray], alignment: dict[str, np.ndarray], size: int, grey: bool,
          box_enlarge: float) -> np.ndarray:
    """Warp frames with the clip's onset transform (frame 0 of the list stands for the onset here)."""
    aligned = align_frames(
        frames, {0: alignment["onset_landmarks"]}, {"out": (size, grey)}, mode="onset", onset_index=0,
        box_enlarge=box_enlarge,
    )
    return aligned.frames["out"]


def window_numbers(sample: dict[str, Any], centre: int, before: int, after: int, lo: int, hi: int) -> list[int]:
    """Frame numbers centre-before..centre+after that exist in the clip and lie within [lo, hi]."""
    present = set(sample["frame_numbers"])
    return [n for n in range(centre - before, centre + after + 1) if lo <= n <= hi and n in present]


def key_frames(sample: dict[str, Any], params: dict[str, Any], alignment: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Aligned RGB frames around the onset and the apex (the frame-jitter windows of MMNet-style training)."""
    onset, apex, offset = sample["onset"], sample["apex"], sample["offset"]
    on_numbers = window_numbers(sample, onset, 0, int(params["onset_after"]), onset, apex)
    ap_numbers = window_numbers(sample, apex, int(params["apex_before"]), int(params["apex_after"]), onset, offset)
    numbers = sorted(set(on_numbers) | set(ap_numbers) | {onset})
    frames = [read_frame(sample, position_of(sample, onset))] + [
        read_frame(sample, position_of(sample, n)) for n in numbers if n != onset
    ]
    ordered = [onset] + [n for n in numbers if n != onset]
    warped = _warp(frames, alignment, int(params["size"]), False, float(params["box_enlarge"]))
    by_number = dict(zip(ordered, warped, strict=True))
    return {
        "onset_frames": np.stack([by_number[n] for n in on_numbers]),
        "onset_offsets": np.array([n - onset for n in on_numbers], dtype=np.int16),
        "apex_frames": np.stack([by_number[n] for n in ap_numbers]),
        "apex_offsets": np.array([n - apex for n in ap_numbers], dtype=np.int16),
    }


def _grey_pair(sample: dict[str, Any], numbers: list[int], alignment: dict[str, np.ndarray], size: int,
               box_enlarge: float, colour: bool = False) -> np.ndarray:
    """Aligned frames of the given numbers; the onset frame first in the warp call so its transform applies."""
    frames = [read_frame(sample, position_of(sample, n)) for n in numbers]
    return _warp(frames, alignment, size, not colour, box_enlarge)


def flow_onset_apex(sample: dict[str, Any], params: dict[str, Any], alignment: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """TV-L1 (or Farneback) flow onset -> apex on the aligned grey face, with optical strain."""
    onset_img, apex_img = _grey_pair(sample, [sample["onset"], sample["apex"]], alignment, int(params["size"]),
                                     float(params["box_enlarge"]))
    flow = compute_flow(onset_img, apex_img, params["method"], **dict(params.get("flow_params") or {}))
    return {"flow": np.dstack([flow, optical_strain(flow)]).astype(np.float16)}


def samer_inputs(sample: dict[str, Any], params: dict[str, Any], alignment: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """SAMER's composite: grey magnified apex, On-A and Off-A flow-magnitude maps (onset/offset -> target)."""
    onset_img, apex_img, offset_img = _grey_pair(
        sample, [sample["onset"], sample["apex"], sample["offset"]], alignment, int(params["size"]),
        float(params["box_enlarge"]), colour=True,
    )
    magnify = get_magnifier(params["magnifier"], **dict(params.get("magnifier_params") or {}))
    magnified = magnify(onset_img, apex_img)
    target = magnified if params.get("flow_target") == "magnified_apex" else apex_img
    maps = samer_on_off_apex(to_grey(onset_img), to_grey(target), to_grey(offset_img),
                             **dict(params.get("flow_params") or {}))
    return {"composite": samer_composite(magnified, maps)}


def interval_pairs(n_frames: int, clip_length: int) -> list[tuple[int, int]]:
    """MOL's sampling: interval = n // clip_length; sub-clip j takes frames i*interval + j; flow between neighbours."""
    interval = n_frames // clip_length
    if interval < 1:
        return []
    return [(i * interval + j, (i + 1) * interval + j) for j in range(interval) for i in range(clip_length - 1)]


def mol_clips(sample: dict[str, Any], params: dict[str, Any], alignment: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Grey aligned clip (MOL: 144 px), per-frame landmarks in aligned coordinates, TV-L1 targets of sampled pairs."""
    n = len(sample["frame_paths"])
    clip_length = int(params["clip_length"])
    if n < clip_length:
        raise FeatureExclusion(
            f"sample {sample['sample_id']}: {n} frames, fewer than MOL's clip length {clip_length}"
        )
    frames = [read_frame(sample, i) for i in range(n)]
    onset_pos = position_of(sample, sample["onset"])
    detector = detector_from(params)
    found = {i: detector(frames[i]) for i in range(n)}
    found[onset_pos] = alignment["onset_landmarks"]
    aligned = align_frames(frames, found, {"out": (int(params["size"]), True)}, mode="onset", onset_index=onset_pos,
                           box_enlarge=float(params["box_enlarge"]))
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


def attr_clips(sample: dict[str, Any], params: dict[str, Any], alignment: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Aligned RGB clip temporally interpolated to N frames (TIM or uniform) and Farneback flow between them."""
    n = len(sample["frame_paths"])
    frames = [read_frame(sample, i) for i in range(n)]
    onset_pos = position_of(sample, sample["onset"])
    order = [onset_pos] + [i for i in range(n) if i != onset_pos]
    warped = _warp([frames[i] for i in order], alignment, int(params["size"]), False, float(params["box_enlarge"]))
    clip = np.empty_like(warped)
    clip[order] = warped
    interpolate = tim_interpolate if params["interpolation"] == "tim" else uniform_resample
    rgb = interpolate(clip, int(params["n_frames"]))
    rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8) if rgb.dtype != np.uint8 else rgb
    flow = np.stack([
        compute_flow(rgb[i], rgb[i + 1], "farneback", **dict(params.get("flow_params") or {}))
        for i in range(len(rgb) - 1)
    ]).astype(np.float16)
    return {"rgb": rgb, "flow": flow}


def with_alignment(feature: str, sample: dict[str, Any], params: dict[str, Any], blob_dir: str,
                   align_key: str) -> dict[str, np.ndarray]:
    """Job entry point of every feature built on the alignment: load the clip's alignment arrays, run the recipe."""
    return RECIPES[feature](sample, params, read_blob(Path(blob_dir), align_key))


def excluded_upstream(reason: str) -> dict[str, np.ndarray]:
    """Job for a clip whose alignment failed: propagate the reason instead of computing anything."""
    raise FeatureExclusion(reason)


RECIPES = {
    "face_alignment": face_alignment,
    "key_frames": key_frames,
    "flow_onset_apex": flow_onset_apex,
    "samer_inputs": samer_inputs,
    "mol_clips": mol_clips,
    "attr_clips": attr_clips,
}
