"""Ingest stage: raw dataset folder -> versioned ``sample_index`` + ``sample_exclusions``.

For ``dataset: synthetic`` the first node writes the synthetic set (CASME II layout) into its raw root; for any
other dataset that node yields nothing to write and the real raw folder is read as it is. The node's face input
is a loader (catalog ``face_photos``: ``FacePhotoLoader``) called only for the synthetic set, so a real-data ingest
never decodes the photos or warns about them. ``label_set`` null means the dataset's default label set
(conf/base/labels.yml ``defaults``); the resolved name is the index's ``label_set`` column.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline

from microexpr.data.index import build_sample_index
from microexpr.data.records import Snapshot
from microexpr.data.synthetic import FacePhotos, SyntheticChunk, generate_synthetic_dataset

logger = logging.getLogger(__name__)


class ConfigurationMismatch(ValueError):
    """The ``dataset`` parameter and the raw source the catalog reads disagree."""


_NOT_LOADED = FacePhotos(images={}, provenance="not read: the selected dataset is not synthetic")


def write_synthetic_dataset(
    dataset: str, synthetic: dict[str, Any], face_photos: Callable[[], FacePhotos] | FacePhotos
) -> Iterator[SyntheticChunk]:
    """Node (generator): the synthetic set's chunks for ``dataset == "synthetic"``, else one SyntheticSkipped.

    ``face_photos`` is called (read) only for the synthetic set; an already-read FacePhotos (a catalog entry of
    type FacePhotoFolder) is used as it is.
    """
    if dataset != "synthetic":
        yield from generate_synthetic_dataset(dataset, synthetic, _NOT_LOADED)
        return
    photos = face_photos() if callable(face_photos) else face_photos
    yield from generate_synthetic_dataset(dataset, synthetic, photos)


def check_source(snapshot: Snapshot, dataset: str) -> None:
    """Refuse to index a raw folder other than the one the ``dataset`` parameter names."""
    if snapshot.dataset != dataset:
        raise ConfigurationMismatch(
            f"parameter dataset={dataset!r} but the catalog's raw_dataset reads {snapshot.dataset!r}. Set the "
            f"dataset in conf/<env>/globals.yml (`dataset: {dataset}`) or pass it on the command line "
            f"(`kedro run --params dataset={dataset}`); both feed the parameter and the catalog."
        )
    if not snapshot.root_exists:
        raise FileNotFoundError(
            f"raw folder of dataset {dataset!r} not found: {snapshot.root}. Point raw_roots.{dataset} to your copy "
            f"in conf/local/globals.yml (see docs/datasets.md)."
        )


def check_synthetic_manifest(snapshot: Snapshot, manifest: dict[str, Any]) -> None:
    """For the synthetic set, every clip the generator wrote must be on disk (catches a wrong raw root)."""
    if snapshot.dataset != "synthetic":
        return
    if not manifest.get("generated", True):
        raise ConfigurationMismatch(
            f"dataset is 'synthetic' but no synthetic set was generated in {snapshot.root}"
        )
    on_disk = set(snapshot.dirs)
    missing = [
        f"{c['subject']}/{c['clip']}"
        for c in manifest.get("clips", [])
        if f"CASME2_RAW_selected/{c['subject']}/{c['clip']}" not in on_disk
    ]
    if missing:
        raise ConfigurationMismatch(
            f"synthetic manifest lists {len(missing)} clip(s) missing under {snapshot.root}, e.g. {missing[:3]}"
        )


def frame_fingerprints(snapshot: Snapshot) -> dict[str, dict[str, str]]:
    """Content digest of every listed frame (its size when the listing read no bytes), per dataset (composites
    carry their parts)."""
    def of(part: Snapshot) -> dict[str, str]:
        return {f.relpath: f.digest or f"size:{f.size}" for files in part.dirs.values() for f in files}

    fingerprints = {snapshot.dataset: of(snapshot)}
    for name, part in snapshot.parts.items():
        fingerprints[name] = of(part)
    return fingerprints


def content_hashes(index: pd.DataFrame, fingerprints: dict[str, dict[str, str]]) -> list[str]:
    """Per-sample fingerprint of what feature extraction reads: frame contents and the annotation.

    Features are cached under keys derived from it, so editing an annotation or replacing a frame (even by one of
    the same size) recomputes exactly the affected clips. Paths enter relative to the dataset root and the root
    itself does not enter, so moving or re-mounting the data folder keeps every key.
    """
    hashes = []
    for row in index.itertuples(index=False):
        member = row.dataset if row.dataset in fingerprints else next(iter(fingerprints))
        files = [(p, fingerprints[member].get(p, "missing")) for p in row.frame_paths]
        payload = json.dumps(["content-v2", files, int(row.onset), int(row.apex), int(row.offset)], default=str)
        hashes.append(hashlib.sha256(payload.encode()).hexdigest()[:24])
    return hashes


def index_raw_dataset(
    raw_dataset: Snapshot,
    synthetic_manifest: dict[str, Any],
    label_maps: dict[str, Any],
    annotation_corrections: pd.DataFrame,
    dataset: str,
    label_set: str | None,
    ingest: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Node: build the sample index and the exclusions table of the selected raw dataset (``label_set`` None:
    the dataset's default)."""
    check_source(raw_dataset, dataset)
    check_synthetic_manifest(raw_dataset, synthetic_manifest)
    index, exclusions = build_sample_index(raw_dataset, label_maps, label_set, annotation_corrections, ingest)
    if index.empty:
        reasons = Counter(exclusions["reason_code"]).most_common(3)
        raise ValueError(
            f"no sample of dataset {dataset!r} survived ingest ({len(exclusions)} excluded; most common reasons "
            f"{reasons}); see sample_exclusions and docs/datasets.md"
        )
    index = index.assign(content_hash=content_hashes(index, frame_fingerprints(raw_dataset)))
    return index, exclusions


def summarise_index(sample_index: pd.DataFrame, sample_exclusions: pd.DataFrame) -> dict[str, Any]:
    """Node: counts per class, subject and exclusion reason (a small JSON next to the index)."""
    return {
        "n_samples": int(len(sample_index)),
        "n_subjects": int(sample_index["fold_subject"].nunique()),
        "datasets": sorted(sample_index["dataset"].unique().tolist()),
        "label_set": str(sample_index["label_set"].iloc[0]) if len(sample_index) else None,
        "per_class": {str(k): int(v) for k, v in sample_index["label"].value_counts().sort_index().items()},
        "per_subject": {
            str(k): int(v) for k, v in sample_index["fold_subject"].value_counts().sort_index().items()
        },
        "n_excluded": int(len(sample_exclusions)),
        "excluded_by_reason": {
            str(k): int(v) for k, v in sample_exclusions["reason_code"].value_counts().sort_index().items()
        },
    }


def create_ingest_pipeline() -> Pipeline:
    """Raw folder (or the generated synthetic set) -> sample index, exclusions and a summary."""
    return Pipeline(
        [
            Node(
                write_synthetic_dataset,
                inputs=["params:dataset", "params:synthetic", "face_photos"],
                outputs="synthetic_raw",
                name="generate_synthetic_dataset",
                tags=["ingest"],
            ),
            Node(
                index_raw_dataset,
                inputs=[
                    "raw_dataset",
                    "synthetic_raw",
                    "label_maps",
                    "annotation_corrections",
                    "params:dataset",
                    "params:label_set",
                    "params:ingest",
                ],
                outputs=["sample_index", "sample_exclusions"],
                name="index_raw_dataset",
                tags=["ingest"],
            ),
            Node(
                summarise_index,
                inputs=["sample_index", "sample_exclusions"],
                outputs="ingest_summary",
                name="summarise_index",
                tags=["ingest"],
            ),
        ]
    )
