"""Input builders: features + sample index -> the arrays a model consumes (one bundle per model, all folds).

A model declares what it consumes (``consumes = ("onset", "apex")`` for key-frame models); the builder for that
kind of input packs every usable sample once, so each training shard reads one file and slices its folds.
Samples the feature could not be computed for are listed in the bundle's metadata with the reason (they are
not silently dropped: the report and the MLflow run show them).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from microexpr.data.labels import load_label_sets
from microexpr.datasets.feature_store import FeatureTable
from microexpr.hashing import content_key

logger = logging.getLogger(__name__)

PAD_OFFSET = np.iinfo(np.int16).min  # marks padding in the offset arrays


def class_names(sample_index: pd.DataFrame, label_maps: dict[str, Any]) -> list[str]:
    """The label set's class list (label-id order) for the index's datasets, checked against the index.

    Taken from the label set, not from the samples, so a class with no sample still has its output and its
    row in every report. Datasets of one run must share the list (e.g. megc3 for composites).
    """
    label_set = str(sample_index["label_set"].iloc[0])
    chosen = load_label_sets(label_maps)[label_set]
    lists = {tuple(chosen.classes_for(str(d))) for d in sample_index["dataset"].unique()}
    if len(lists) != 1:
        raise ValueError(
            f"label set {label_set!r} gives the datasets of this index different class lists {sorted(lists)}; use a "
            f"label set with one shared class list (e.g. megc3) for multi-dataset runs"
        )
    classes = list(next(iter(lists)))
    for label, label_id in sample_index[["label", "label_id"]].drop_duplicates().itertuples(index=False):
        if int(label_id) >= len(classes) or classes[int(label_id)] != str(label):
            raise ValueError(
                f"index label {label!r} has id {label_id}, but label set {label_set!r} lists {classes}"
            )
    return classes


def _pad(stacks: list[np.ndarray], offsets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(o) for o in offsets)
    frame_shape = stacks[0].shape[1:]
    frames = np.zeros((len(stacks), width, *frame_shape), dtype=np.uint8)
    padded = np.full((len(stacks), width), PAD_OFFSET, dtype=np.int16)
    for i, (stack, offs) in enumerate(zip(stacks, offsets, strict=True)):
        frames[i, : len(offs)] = stack
        padded[i, : len(offs)] = offs
    return frames, padded


def build_key_frame_inputs(
    sample_index: pd.DataFrame, key_frames: FeatureTable, label_maps: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Bundle of onset/apex frame windows for models consuming ("onset", "apex"), and its metadata.

    Arrays (N usable samples, index order): sample_id, dataset, subject, fold_subject (str); y (int64);
    onset_frames (N, A, S, S, 3) and apex_frames (N, B, S, S, 3) uint8; onset_offsets / apex_offsets (int16,
    frame offsets from the annotated onset / apex, ``PAD_OFFSET`` for padding); rise = apex - onset and
    fall = offset - apex (int32); classes (C,). Metadata: classes, counts, the fingerprint that keys training
    results, and the samples excluded with their reasons.
    """
    classes = class_names(sample_index, label_maps)
    status = key_frames.manifest.set_index("sample_id")
    rows, excluded = [], []
    on_stacks, on_offsets, ap_stacks, ap_offsets = [], [], [], []
    for _, row in sample_index.iterrows():
        sid = str(row["sample_id"])
        if sid not in status.index:
            raise KeyError(f"sample {sid} is missing from the key_frames feature: rerun the preprocess stage")
        if status.at[sid, "status"] != "ok":
            excluded.append({"sample_id": sid, "reason": str(status.at[sid, "reason"])})
            continue
        arrays = key_frames.get(sid)
        on_stacks.append(arrays["onset_frames"])
        on_offsets.append(arrays["onset_offsets"])
        ap_stacks.append(arrays["apex_frames"])
        ap_offsets.append(arrays["apex_offsets"])
        rows.append(row)
    if not rows:
        raise ValueError(f"no sample has key frames ({len(excluded)} excluded, e.g. {excluded[:1]})")
    used = pd.DataFrame(rows)
    onset_frames, onset_offsets = _pad(on_stacks, on_offsets)
    apex_frames, apex_offsets = _pad(ap_stacks, ap_offsets)
    arrays = {
        "sample_id": used["sample_id"].astype(str).to_numpy(dtype=str),
        "dataset": used["dataset"].astype(str).to_numpy(dtype=str),
        "subject": used["subject"].astype(str).to_numpy(dtype=str),
        "fold_subject": used["fold_subject"].astype(str).to_numpy(dtype=str),
        "y": used["label_id"].astype(np.int64).to_numpy(),
        "onset_frames": onset_frames,
        "onset_offsets": onset_offsets,
        "apex_frames": apex_frames,
        "apex_offsets": apex_offsets,
        "rise": (used["apex"] - used["onset"]).astype(np.int32).to_numpy(),
        "fall": (used["offset"] - used["apex"]).astype(np.int32).to_numpy(),
        "classes": np.array(classes, dtype=str),
    }
    feature_keys = [key_frames.key_of(str(s)) for s in used["sample_id"]]
    meta = {
        "kind": "key_frames",
        "classes": classes,
        "n_samples": len(used),
        "n_subjects": int(used["fold_subject"].nunique()),
        "datasets": sorted(used["dataset"].astype(str).unique().tolist()),
        "label_set": str(used["label_set"].iloc[0]),
        "excluded": excluded,
        "fingerprint": content_key(
            "key_frames_input", arrays["sample_id"].tolist(), arrays["y"].tolist(), feature_keys
        ),
    }
    if excluded:
        logger.warning(
            "%d sample(s) have no key frames and are left out of training, e.g. %s",
            len(excluded),
            excluded[0],
        )
    return arrays, meta


INPUT_BUILDERS = {"key_frames": build_key_frame_inputs}
