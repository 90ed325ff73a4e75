"""Input bundles: features + sample index -> the arrays one model trains and predicts on (all folds, one file).

The model's task (microexpr.training.task) names the features it reads and turns one sample's index row and
feature arrays into its bundle arrays (``Task.sample_arrays``); this module does the rest for every model: the
class list, skipping (and listing, with the reason) samples a feature could not be computed for, stacking the
per-sample arrays (padding those whose first axis varies with the task's pad value), and the fingerprint that
keys training results. Samples left out are in the bundle's metadata, never silently dropped: the report and the
MLflow run show them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from microexpr.data.labels import load_label_sets
from microexpr.datasets.feature_store import FeatureTable
from microexpr.hashing import content_key
from microexpr.training.task import Task

logger = logging.getLogger(__name__)

PAD_OFFSET = np.iinfo(np.int16).min  # marks padding in the offset arrays
BUNDLE_VERSION = 2


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


def stack_arrays(name: str, arrays: list[np.ndarray], pad_value: float | None) -> np.ndarray:
    """One (N, ...) array from per-sample arrays; a varying first axis is padded with ``pad_value`` at the end."""
    shapes = {a.shape for a in arrays}
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1:
        raise ValueError(f"bundle array {name!r} has mixed dtypes across samples: {sorted(map(str, dtypes))}")
    if len(shapes) == 1:
        return np.stack(arrays)
    trailing = {a.shape[1:] for a in arrays}
    if pad_value is None or len(trailing) != 1 or any(a.ndim == 0 for a in arrays):
        raise ValueError(
            f"bundle array {name!r} has shapes {sorted(shapes)[:4]} across samples; only the first axis may vary, "
            "and only for arrays the task gives a pad value in Task.padding"
        )
    width = max(a.shape[0] for a in arrays)
    out = np.full((len(arrays), width, *next(iter(trailing))), pad_value, dtype=arrays[0].dtype)
    for i, array in enumerate(arrays):
        out[i, : array.shape[0]] = array
    return out


def _unavailable(sample_id: str, status: Mapping[str, pd.DataFrame]) -> str | None:
    """Why a sample has no usable features (first failing feature), or None; KeyError if a store is stale."""
    for name, table in status.items():
        if sample_id not in table.index:
            raise KeyError(f"sample {sample_id} is missing from the {name} feature: rerun the preprocess stage")
        if table.at[sample_id, "status"] != "ok":
            return f"{name}: {table.at[sample_id, 'reason']}"
    return None


def build_task_inputs(
    task: Task, sample_index: pd.DataFrame, features: Mapping[str, FeatureTable], label_maps: dict[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The bundle of ``task`` over every usable sample of the index, and its metadata.

    Arrays (N usable samples, index order): the meta arrays sample_id, dataset, subject, fold_subject (str), y
    (int64), classes (C,), plus every array the task declares. Metadata: kind (the model), classes, counts, the
    fingerprint that keys training results, and the samples excluded with their reasons.
    """
    missing = sorted(set(task.features) - set(features))
    if missing:
        raise ValueError(f"{task.name}: the input builder needs features {missing} (got {sorted(features)})")
    classes = class_names(sample_index, label_maps)
    declared = task.declared_arrays()
    per_array: dict[str, list[np.ndarray]] = {name: [] for name in declared}
    status = {name: features[name].manifest.set_index("sample_id") for name in task.features}
    rows, excluded = [], []
    for _, row in sample_index.iterrows():
        sid = str(row["sample_id"])
        reason = _unavailable(sid, status)
        if reason is not None:
            excluded.append({"sample_id": sid, "reason": reason})
            continue
        arrays = task.sample_arrays(row, {name: features[name].get(sid) for name in task.features})
        unknown = sorted(set(arrays) ^ set(declared))
        if unknown:
            raise ValueError(f"{task.name}: sample_arrays of {sid} gave {sorted(arrays)}, the task declares {list(declared)}")
        for name in declared:
            per_array[name].append(np.asarray(arrays[name]))
        rows.append(row)
    if not rows:
        raise ValueError(f"{task.name}: no sample has all of {list(task.features)} ({len(excluded)} excluded, "
                         f"e.g. {excluded[:1]})")
    used = pd.DataFrame(rows)
    bundle = {
        "sample_id": used["sample_id"].astype(str).to_numpy(dtype=str),
        "dataset": used["dataset"].astype(str).to_numpy(dtype=str),
        "subject": used["subject"].astype(str).to_numpy(dtype=str),
        "fold_subject": used["fold_subject"].astype(str).to_numpy(dtype=str),
        "y": used["label_id"].astype(np.int64).to_numpy(),
        "classes": np.array(classes, dtype=str),
    }
    for name in declared:
        bundle[name] = stack_arrays(name, per_array[name], task.padding.get(name))
    feature_keys = {name: [features[name].key_of(str(s)) for s in used["sample_id"]] for name in task.features}
    meta = {
        "kind": task.name,
        "classes": classes,
        "n_samples": len(used),
        "n_subjects": int(used["fold_subject"].nunique()),
        "datasets": sorted(used["dataset"].astype(str).unique().tolist()),
        "label_set": str(used["label_set"].iloc[0]),
        "excluded": excluded,
        "fingerprint": content_key(
            "task_input", BUNDLE_VERSION, task.name, bundle["sample_id"].tolist(), bundle["y"].tolist(),
            feature_keys, task.bundle_settings(),
        ),
    }
    if excluded:
        logger.warning("%s: %d sample(s) lack a feature and are left out of training, e.g. %s", task.name,
                       len(excluded), excluded[0])
    for message in task.bundle_warnings(bundle):
        logger.warning("%s: %s", task.name, message)
    return bundle, meta


TRAINING_META = ("sample_id", "y", "classes")  # the meta arrays training reads (the others are for reports)


def check_bundle(task: Task, bundle: Mapping[str, np.ndarray]) -> None:
    """Sample ids, labels, classes and every declared array present, one row per sample (errors name the array)."""
    needed = [*TRAINING_META, *task.declared_arrays()]
    for name in needed:
        if name not in bundle:
            raise KeyError(f"{task.name}: model inputs lack {name!r} (have {sorted(bundle)})")
    n = np.asarray(bundle["sample_id"]).shape[0]
    for name in needed:
        if name != "classes" and np.asarray(bundle[name]).shape[:1] != (n,):
            raise ValueError(f"{task.name}: array {name!r} must have one row per sample ({n}), got {bundle[name].shape}")
