"""Preprocess stage: sample index -> per-clip features in content-addressed stores (computed once, reused).

Each node only *plans* the work of one feature (a :class:`FeatureJobs` list with a content key per clip); the
``FeatureStore`` dataset runs the jobs whose key is new. A clip's key hashes its raw frames and annotation
(``content_hash`` from ingest), the key of the alignment it depends on, the feature's parameters and the recipe
version, so an unchanged rerun computes nothing and a changed parameter recomputes only what depends on it.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline

from microexpr.datasets.feature_store import FeatureJob, FeatureJobs, FeatureTable
from microexpr.features import recipes
from microexpr.hashing import content_key

logger = logging.getLogger(__name__)

FEATURES: tuple[str, ...] = ("face_alignment", "key_frames", "flow_onset_apex", "samer_inputs", "mol_clips",
                             "attr_clips")
DEPENDENT_FEATURES: tuple[str, ...] = FEATURES[1:]


def _workers(params: dict[str, Any]) -> int:
    return int(params.get("workers") or 1)


def plan_face_alignment(sample_index: pd.DataFrame, params: dict[str, Any]) -> FeatureJobs:
    """Node: one dlib job per clip (onset landmarks); the key ignores ``workers`` (it does not change results)."""
    cfg = {k: v for k, v in params.items() if k != "workers"}
    jobs = []
    for _, row in sample_index.iterrows():
        sample = recipes.sample_record(row)
        key = content_key("face_alignment", recipes.RECIPE_VERSION, sample["content_hash"], cfg)
        jobs.append(FeatureJob(sample["sample_id"], key, recipes.face_alignment, {"sample": sample, "params": cfg}))
    return FeatureJobs("face_alignment", jobs, workers=_workers(params), params=cfg)


def plan_dependent_feature(
    feature: str, sample_index: pd.DataFrame, face_alignment: FeatureTable, params: dict[str, Any]
) -> FeatureJobs:
    """Jobs of a feature that warps frames with the clip's alignment; clips without one carry its reason."""
    cfg = {k: v for k, v in params.items() if k != "workers"}
    status = face_alignment.manifest.set_index("sample_id")
    jobs = []
    for _, row in sample_index.iterrows():
        sample = recipes.sample_record(row)
        sid = sample["sample_id"]
        if sid not in status.index:
            raise KeyError(
                f"sample {sid} has no face_alignment entry: the alignment store is stale; rerun the preprocess stage"
            )
        align_key = str(status.at[sid, "key"])
        key = content_key(feature, recipes.RECIPE_VERSION, sample["content_hash"], align_key, cfg)
        if status.at[sid, "status"] != "ok":
            job = FeatureJob(sid, key, recipes.excluded_upstream, {"reason": str(status.at[sid, "reason"])})
        else:
            job = FeatureJob(sid, key, recipes.with_alignment, {"feature": feature, "sample": sample, "params": cfg,
                                                         "blob_dir": face_alignment.blob_dir, "align_key": align_key})
        jobs.append(job)
    return FeatureJobs(feature, jobs, workers=_workers(params), params=cfg)


def _planner(feature: str):
    def plan(sample_index: pd.DataFrame, face_alignment: FeatureTable, params: dict[str, Any]) -> FeatureJobs:
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
    """The planning nodes of the named features (face_alignment is always included: the others need it)."""
    nodes = [
        Node(plan_face_alignment, ["sample_index", "params:preprocess.face_alignment"], "face_alignment",
             name="plan_face_alignment", tags=["preprocess"])
    ]
    for feature in features:
        if feature == "face_alignment":
            continue
        if feature not in DEPENDENT_FEATURES:
            raise ValueError(f"unknown feature {feature!r}; expected one of {FEATURES}")
        nodes.append(
            Node(_planner(feature), ["sample_index", "face_alignment", f"params:preprocess.{feature}"], feature,
                 name=f"plan_{feature}", tags=["preprocess"])
        )
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
