"""Preprocess stage: sample index -> per-clip features in content-addressed stores (computed once, reused).

Each node only *plans* the work of one feature (a :class:`FeatureJobs` list with a content key per clip); the
``FeatureStore`` dataset runs the jobs whose key is new. A clip's key hashes its raw frames and annotation
(``content_hash`` from ingest), the key of the alignment it depends on, the feature's parameters and the recipe
version, so an unchanged rerun computes nothing and a changed parameter recomputes only what depends on it.

A face feature (``recipes.FACE_RECIPES``) cuts faces either with the dlib warp (``alignment: dlib``, the default)
or from the dataset's own crops (``alignment: dataset_crops``): then ``locate_provided_crops`` lists the crop files
from the raw folder and a clip's key hashes the paths and contents of the crops it reads instead of its alignment.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline

from microexpr.datasets.feature_store import FeatureJob, FeatureJobs, FeatureTable
from microexpr.features import recipes
from microexpr.features.crops import (
    CropFiles,
    CropProblem,
    ProvidedCrops,
    locate_provided_crops,
    resolve_crops,
)
from microexpr.hashing import content_key

logger = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("face_alignment", "key_frames", "flow_onset_apex", "samer_inputs", "mol_clips",
                             "attr_clips")
DEPENDENT_FEATURES: tuple[str, ...] = FEATURES[1:]
#: Features that may take their faces from the dataset's provided crops (``alignment: dataset_crops``).
CROP_FEATURES: tuple[str, ...] = tuple(f for f in DEPENDENT_FEATURES if f in recipes.FACE_RECIPES)
ALIGNMENTS: tuple[str, ...] = ("dlib", "dataset_crops")
#: Settings read only under ``alignment: dataset_crops``, with their defaults and accepted values.
CROP_SETTINGS: dict[str, Any] = {"crops_dir": None, "crops_absent": "error", "crop_missing": "exclude"}
_CROP_CHOICES: dict[str, tuple[str, ...]] = {"crops_absent": ("error", "dlib"), "crop_missing": ("exclude", "dlib")}


def _workers(params: dict[str, Any]) -> int:
    return int(params.get("workers") or 1)


def feature_config(feature: str, params: dict[str, Any]) -> dict[str, Any]:
    """The settings that define a feature's result (recipe settings and cache key): all but ``workers``.

    Under ``alignment: dlib`` (the default) the alignment and crop settings are left out, so the keys are those
    of runs made before the option existed; under ``dataset_crops`` they enter with their defaults filled in.
    Unknown values, and ``dataset_crops`` for a feature that needs landmarks (``mol_clips``), raise naming them.
    """
    cfg = {k: v for k, v in params.items() if k != "workers"}
    check_fractions(feature, cfg)
    alignment = cfg.get("alignment", "dlib")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"preprocess.{feature}.alignment={alignment!r} is not one of {', '.join(ALIGNMENTS)}")
    if alignment == "dlib":
        return dlib_config(cfg)
    if feature not in CROP_FEATURES:
        raise ValueError(
            f"preprocess.{feature}.alignment=dataset_crops is not supported: {feature} needs dlib landmarks; "
            f"features that can use provided crops: {', '.join(CROP_FEATURES)}"
        )
    cfg = {**CROP_SETTINGS, **cfg}
    for key, choices in _CROP_CHOICES.items():
        if cfg[key] not in choices:
            raise ValueError(f"preprocess.{feature}.{key}={cfg[key]!r} is not one of {', '.join(choices)}")
    return cfg


def check_fractions(feature: str, cfg: dict[str, Any]) -> None:
    """``<count>_fraction`` settings (stored frames that grow with the rise) must name a count setting of the
    feature and be a non-negative number; raises naming the setting."""
    for key, value in cfg.items():
        if not key.endswith("_fraction"):
            continue
        if feature != "key_frames" or key.removesuffix("_fraction") not in ("onset_after", "apex_before", "apex_after"):
            raise ValueError(f"preprocess.{feature}.{key} is not a setting; key_frames accepts onset_after_fraction, "
                             "apex_before_fraction and apex_after_fraction")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"preprocess.{feature}.{key} must be a non-negative number, got {value!r}")


def dlib_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A feature's settings as under ``alignment: dlib`` (what a clip that falls back to dlib is keyed by)."""
    return {k: v for k, v in cfg.items() if k != "alignment" and k not in CROP_SETTINGS}


def plan_face_alignment(sample_index: pd.DataFrame, params: dict[str, Any]) -> FeatureJobs:
    """Node: one dlib job per clip (onset landmarks); the key ignores ``workers`` (it does not change results)."""
    cfg = {k: v for k, v in params.items() if k != "workers"}
    jobs = []
    for _, row in sample_index.iterrows():
        sample = recipes.sample_record(row)
        key = content_key("face_alignment", recipes.RECIPE_VERSION, sample["content_hash"], cfg)
        jobs.append(FeatureJob(sample["sample_id"], key, recipes.face_alignment, {"sample": sample, "params": cfg}))
    return FeatureJobs("face_alignment", jobs, workers=_workers(params), params=cfg)


def dlib_job(feature: str, sample: dict[str, Any], status: pd.DataFrame, blob_dir: str, cfg: dict[str, Any]
             ) -> FeatureJob:
    """A clip's job on the dlib alignment (``status``: the face_alignment manifest by sample id); a clip whose
    alignment failed carries that reason instead."""
    sid = sample["sample_id"]
    if sid not in status.index:
        raise KeyError(
            f"sample {sid} has no face_alignment entry: the alignment store is stale; rerun the preprocess stage"
        )
    align_key = str(status.at[sid, "key"])
    key = content_key(feature, recipes.RECIPE_VERSION, sample["content_hash"], align_key, cfg)
    if status.at[sid, "status"] != "ok":
        return FeatureJob(sid, key, recipes.excluded_upstream, {"reason": str(status.at[sid, "reason"])})
    return FeatureJob(sid, key, recipes.with_alignment, {"feature": feature, "sample": sample, "params": cfg,
                                                        "blob_dir": blob_dir, "align_key": align_key})


def crop_job(feature: str, sample: dict[str, Any], crops: ProvidedCrops, cfg: dict[str, Any]
             ) -> FeatureJob | CropProblem:
    """A clip's job on the provided crops, keyed by the paths and contents of the crops it reads; an exclusion job
    naming the missing file when a needed crop is missing and ``crop_missing: exclude``; otherwise the problem,
    for the caller to fall back to dlib or stop."""
    found = resolve_crops(crops, sample, recipes.needed_frames(feature, sample, cfg), cfg["crops_dir"])
    sid, base = sample["sample_id"], (feature, recipes.RECIPE_VERSION, sample["content_hash"], "dataset_crops")
    if isinstance(found, CropFiles):
        return FeatureJob(sid, content_key(*base, found.fingerprint, cfg), recipes.with_provided_crops,
                          {"feature": feature, "sample": sample, "params": cfg, "root": found.root,
                           "paths": found.paths})
    if found.level == "clip" and cfg["crop_missing"] == "exclude":
        return FeatureJob(sid, content_key(*base, found.reason, cfg), recipes.excluded_upstream,
                          {"reason": found.reason})
    return found


def plan_dependent_feature(
    feature: str,
    sample_index: pd.DataFrame,
    face_alignment: FeatureTable,
    params: dict[str, Any],
    provided_crops: ProvidedCrops | None = None,
) -> FeatureJobs:
    """Jobs of a feature built on the clip's face: the dlib warp of its alignment, or (``alignment:
    dataset_crops``) the dataset's provided crops. Clips without a face carry the reason.

    Under ``dataset_crops`` a dataset without crops stops the run naming it (``crops_absent: error``) or uses dlib
    for all its clips (``crops_absent: dlib``, a warning); a clip missing a needed crop is excluded naming the file
    (``crop_missing: exclude``) or uses dlib (``crop_missing: dlib``, a warning). A clip on dlib gets exactly the
    key a dlib run gives it, so either run reuses the other's result.
    """
    cfg = feature_config(feature, params)
    crops_mode = cfg.get("alignment") == "dataset_crops"
    if crops_mode and provided_crops is None:
        raise ValueError(f"preprocess.{feature}.alignment=dataset_crops needs the provided-crop listing (a node input)")
    status = face_alignment.manifest.set_index("sample_id")
    jobs: list[FeatureJob] = []
    absent: dict[str, str] = {}
    fallbacks: list[str] = []
    for _, row in sample_index.iterrows():
        sample = recipes.sample_record(row)
        if crops_mode:
            job = crop_job(feature, sample, provided_crops, cfg)
            if isinstance(job, FeatureJob):
                jobs.append(job)
                continue
            if job.level == "dataset" and cfg["crops_absent"] == "error":
                absent.setdefault(sample["dataset"], job.reason)
                continue
            fallbacks.append(job.reason)
        jobs.append(dlib_job(feature, sample, status, face_alignment.blob_dir, dlib_config(cfg)))
    if absent:
        raise ValueError(
            f"preprocess.{feature}.alignment is dataset_crops but " + "; ".join(absent.values()) + ". Point the "
            f"raw root to a copy with the crops, set preprocess.{feature}.alignment: dlib, or set "
            f"preprocess.{feature}.crops_absent: dlib to use dlib for such a dataset (docs/preprocessing.md)"
        )
    if fallbacks:
        logger.warning(
            "%s: %d clip(s) use the dlib alignment instead of provided crops (crops_absent/crop_missing: dlib), "
            "e.g. %s", feature, len(fallbacks), fallbacks[0],
        )
    return FeatureJobs(feature, jobs, workers=_workers(params), params=cfg)


def _planner(feature: str):
    if feature in CROP_FEATURES:
        def plan(sample_index: pd.DataFrame, face_alignment: FeatureTable, provided_crops: ProvidedCrops,
                 params: dict[str, Any]) -> FeatureJobs:
            return plan_dependent_feature(feature, sample_index, face_alignment, params, provided_crops)
    else:
        def plan(sample_index: pd.DataFrame, face_alignment: FeatureTable,  # type: ignore[misc]
                 params: dict[str, Any]) -> FeatureJobs:
            return plan_dependent_feature(feature, sample_index, face_alignment, params)

    plan.__name__ = f"plan_{feature}"
    plan.__doc__ = f"Node: plan the {feature} jobs (see microexpr.features.recipes.{feature})."
    return plan


def preprocess_exclusions(sample_index: pd.DataFrame, **tables: FeatureTable) -> pd.DataFrame:
    """Node: every clip a feature could not be computed for, with the reason (one row per clip and feature)."""
    rows = []
    for feature, table in sorted(tables.items()):
        for _, item in table.exclusions().iterrows():
            rows.append({"sample_id": item["sample_id"], "feature": feature, "reason": item["reason"]})
    frame = pd.DataFrame(rows, columns=["sample_id", "feature", "reason"])
    known = set(sample_index["sample_id"])
    unknown = sorted(set(frame["sample_id"]) - known)
    if unknown:
        raise ValueError(f"feature stores list samples missing from the index, e.g. {unknown[:3]}")
    return frame


def preprocess_summary(**tables: FeatureTable) -> dict[str, Any]:
    """Node: per feature, clips ok / excluded / reused and compute seconds (the reuse measurement reads this)."""
    summary = {}
    for feature, table in sorted(tables.items()):
        m = table.manifest
        summary[feature] = {
            "ok": int((m["status"] == "ok").sum()),
            "excluded": int((m["status"] != "ok").sum()),
            "reused": int(m["reused"].sum()),
            "computed": int((~m["reused"]).sum()),
            "compute_seconds": round(float(m["seconds"].sum()), 3),
        }
    return summary


def feature_nodes(features: tuple[str, ...]) -> list[Node]:
    """The planning nodes of the named features (face_alignment is always included: the others need it; the
    provided-crop listing when a face feature is planned)."""
    nodes = [
        Node(plan_face_alignment, ["sample_index", "params:preprocess.face_alignment"], "face_alignment",
             name="plan_face_alignment", tags=["preprocess"])
    ]
    for feature in features:
        if feature == "face_alignment":
            continue
        if feature not in DEPENDENT_FEATURES:
            raise ValueError(f"unknown feature {feature!r}; expected one of {FEATURES}")
        crops = ["provided_crops"] if feature in CROP_FEATURES else []
        nodes.append(
            Node(_planner(feature), ["sample_index", "face_alignment", *crops, f"params:preprocess.{feature}"],
                 feature, name=f"plan_{feature}", tags=["preprocess"])
        )
    if any(f in CROP_FEATURES for f in features):
        nodes.append(Node(locate_provided_crops, ["raw_dataset", "sample_index"], "provided_crops",
                          name="locate_provided_crops", tags=["preprocess"]))
    return nodes


def create_preprocess_pipeline(features: tuple[str, ...] = FEATURES) -> Pipeline:
    """Features for the named models (all by default), plus the exclusions and summary tables."""
    return Pipeline(feature_nodes(features))


def create_preprocess_reporting() -> Pipeline:
    """Exclusions and summary over every feature (only in the full ``preprocess`` pipeline)."""
    inputs = {f: f for f in FEATURES}
    return Pipeline([
        Node(preprocess_exclusions, {"sample_index": "sample_index", **inputs}, "preprocess_exclusions",
             name="preprocess_exclusions", tags=["preprocess"]),
        Node(preprocess_summary, inputs, "preprocess_summary", name="preprocess_summary", tags=["preprocess"]),
    ])
