"""Dataset-provided face crops: which crop file stands for each frame of a clip (pure, from the raw Snapshot).

Some datasets ship every frame already cut to the face (CASME II ``Cropped/subXX/<clip>/reg_img<N>.jpg``); the
MMNet reference code trains on those, resized, instead of a dlib warp. A feature with ``alignment:
dataset_crops`` (docs/preprocessing.md) reads them through two steps:

* :func:`locate_provided_crops` (a node): for every index row, the crop files of its clip in each crop folder
  the dataset's layout knows (paths, sizes and content digests as the I/O layer listed them, with its integrity verdict), or why
  the dataset offers none;
* :func:`resolve_crops` (called by the planner): the files of the frames one feature needs, with a fingerprint
  (paths and content digests, like ingest's ``content_hash``) for the cache key, or the reason they cannot be used: a
  *dataset* problem (no crops at all) or a *clip* problem (a needed crop file missing or damaged).

Layouts are dataset quirks and live in the dataset's parser module (``data/sources/casme2.py``); this module only
maps parser modules to them.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from microexpr.data.records import FrameFile, Snapshot
from microexpr.data.sources import SOURCES, casme2, get_source
from microexpr.data.sources._common import numbered_frames


@dataclass(frozen=True)
class CropLayout:
    """How a dataset stores its crops: the crop folders under a root (preferred first), a clip's crop folder from
    its index ``clip_dir``, and a description for messages."""

    find_dirs: Callable[[Snapshot], list[str]]
    clip_dir: Callable[[str, str], str]
    description: str


#: Parser module -> crop layout. The synthetic set is read by the CASME II parser, so it shares the layout.
CROP_LAYOUTS: dict[str, CropLayout] = {
    "casme2": CropLayout(casme2.provided_crop_dirs, casme2.crop_clip_dir, casme2.CROPS_LAYOUT),
}


def datasets_with_crop_layout() -> list[str]:
    """``dataset`` values whose parser knows a provided-crop layout (for error messages)."""
    return sorted(name for name, spec in SOURCES.items() if spec.module in CROP_LAYOUTS)


@dataclass(frozen=True)
class DatasetCrops:
    """The crop folders of one dataset in the run, preferred first, or why it has none (``problem``)."""

    dataset: str
    root: str
    folders: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True)
class ClipCrops:
    """One clip's crop folder (relative to the root) and its image files by frame number."""

    folder: str
    files: dict[int, FrameFile]


@dataclass
class ProvidedCrops:
    """What :func:`locate_provided_crops` found: per dataset, and per sample and crop folder."""

    datasets: dict[str, DatasetCrops] = field(default_factory=dict)
    clips: dict[str, dict[str, ClipCrops]] = field(default_factory=dict)


@dataclass(frozen=True)
class CropFiles:
    """The crop file of every needed frame: ``paths`` frame number -> path relative to ``root``."""

    root: str
    paths: dict[int, str]
    fingerprint: tuple[tuple[str, int | str], ...]  # (relpath, content digest; the size if none was read)


@dataclass(frozen=True)
class CropProblem:
    """Why a clip's needed crops cannot be used; ``level`` says whether the whole dataset lacks crops."""

    level: Literal["dataset", "clip"]
    reason: str


def _member(snapshot: Snapshot, dataset: str) -> Snapshot | None:
    """The snapshot a dataset's clips were read from (a composite's member, or the snapshot itself)."""
    if dataset in snapshot.parts:
        return snapshot.parts[dataset]
    return snapshot if snapshot.dataset == dataset else None


def dataset_crops(snapshot: Snapshot, dataset: str, index_roots: Sequence[str]) -> DatasetCrops:
    """Crop folders of one dataset of the index, or the problem: wrong or missing raw folder, unknown layout, none."""
    member = _member(snapshot, dataset)
    roots = sorted(set(index_roots))
    if member is None:
        return DatasetCrops(dataset, roots[0] if roots else "", problem=(
            f"the sample index holds dataset {dataset!r} but raw_dataset reads {snapshot.dataset!r}; run preprocess "
            f"with the dataset it was ingested with (--params dataset={dataset})"))
    if not member.root_exists:
        return DatasetCrops(dataset, member.root, problem=f"raw folder {member.root} not found")
    if roots != [member.root]:
        return DatasetCrops(dataset, member.root, problem=(
            f"the sample index was built from {', '.join(roots)} but raw_dataset reads {member.root}; rerun ingest"))
    layout = CROP_LAYOUTS.get(get_source(dataset).module)
    if layout is None:
        return DatasetCrops(dataset, member.root, problem=(
            f"no provided-crop layout is known for dataset {dataset!r} (known for: "
            f"{', '.join(datasets_with_crop_layout())})"))
    folders = tuple(layout.find_dirs(member))
    if not folders:
        return DatasetCrops(dataset, member.root, problem=(
            f"no provided crops under {member.root} (expected {layout.description})"))
    return DatasetCrops(dataset, member.root, folders)


def locate_provided_crops(raw_dataset: Snapshot, sample_index: pd.DataFrame) -> ProvidedCrops:
    """Node: every sample's crop files in each crop folder of its dataset (nothing is read but the listing)."""
    found = ProvidedCrops()
    for dataset, rows in sample_index.groupby("dataset", sort=True):
        info = dataset_crops(raw_dataset, str(dataset), [str(r) for r in rows["root"]])
        found.datasets[str(dataset)] = info
        if info.problem is not None:
            continue
        member = _member(raw_dataset, str(dataset))
        layout = CROP_LAYOUTS[get_source(str(dataset)).module]
        for sample_id, clip_dir in zip(rows["sample_id"], rows["clip_dir"], strict=True):
            per_folder = {}
            for folder in info.folders:
                crop_dir = layout.clip_dir(folder, str(clip_dir))
                numbered, _ = numbered_frames(member.dirs.get(crop_dir, []))
                files: dict[int, FrameFile] = {}
                for number, file in numbered:
                    files.setdefault(number, file)  # two names for one number: the first by name wins
                per_folder[folder] = ClipCrops(crop_dir, files)
            found.clips[str(sample_id)] = per_folder
    return found


def expected_name(files: dict[int, FrameFile], number: int) -> str:
    """The file name frame ``number`` would have, following its neighbours' naming (``reg_img46.jpg``), else
    ``frame <number>``."""
    if not files:
        return f"frame {number}"
    model = files[min(files, key=lambda n: abs(n - number))].name
    stem, ext = posixpath.splitext(model)
    runs = list(re.finditer(r"\d+", stem))
    last = runs[-1]
    digits = last.group(0)
    width = len(digits) if digits.startswith("0") else 0
    return f"{stem[:last.start()]}{number:0{width}d}{stem[last.end():]}{ext}"


def resolve_crops(
    crops: ProvidedCrops, sample: dict[str, Any], numbers: Sequence[int], crops_dir: str | None = None
) -> CropFiles | CropProblem:
    """The crop files of frames ``numbers`` of one sample (``crops_dir`` picks the crop folder; default: the
    dataset's preferred one, the same for every clip), or why they cannot be used, naming the sample and file."""
    sid, dataset = sample["sample_id"], sample["dataset"]
    info = crops.datasets.get(dataset)
    if info is None:
        return CropProblem("dataset", f"dataset {dataset!r}: sample {sid} was not located (stale crop listing)")
    if info.problem is not None:
        return CropProblem("dataset", f"dataset {dataset!r}: {info.problem}")
    folder = info.folders[0] if crops_dir is None else posixpath.normpath(str(crops_dir).strip().strip("/"))
    if folder not in info.folders:
        return CropProblem("dataset", (
            f"dataset {dataset!r}: crops_dir {crops_dir!r} holds no crop folders under {info.root}; "
            f"folders that do: {', '.join(info.folders)}"))
    clip = crops.clips.get(sid, {}).get(folder)
    if clip is None:
        return CropProblem("dataset", f"dataset {dataset!r}: sample {sid} was not located (stale crop listing)")
    where = f"{info.root}/{clip.folder}"
    if not clip.files:
        return CropProblem("clip", f"sample {sid}: no provided crops: folder {where} is missing or holds no images")
    missing = [n for n in numbers if n not in clip.files]
    if missing:
        more = f" ({len(missing)} of {len(numbers)} needed frames missing: {missing[:10]})" if len(missing) > 1 else ""
        return CropProblem("clip", (
            f"sample {sid}: no provided crop for frame {missing[0]}: {where}/{expected_name(clip.files, missing[0])} "
            f"not found{more}"))
    damaged = [clip.files[n] for n in numbers if clip.files[n].problem]
    if damaged:
        return CropProblem("clip", (
            f"sample {sid}: provided crop {info.root}/{damaged[0].relpath} is unusable: {damaged[0].problem}"))
    ordered = sorted(set(numbers))
    return CropFiles(
        root=info.root,
        paths={n: clip.files[n].relpath for n in ordered},
        fingerprint=tuple((clip.files[n].relpath, clip.files[n].digest or int(clip.files[n].size))
                          for n in ordered),
    )
