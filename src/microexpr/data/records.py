"""Plain records passed between the raw-folder reader (I/O), the per-dataset parsers and the index builder.

The flow is:

    RawDatasetSource.load()  ->  Snapshot            (I/O: annotation sheets as raw cells, image listing)
    sources.<name>.parse()   ->  list[Candidate], list[Exclusion]   (pure: dataset quirks)
    index.build_sample_index ->  sample_index, sample_exclusions     (pure: policies shared by all datasets)

Every raw sample (annotation row, or clip folder for datasets without an annotation file) must end up either as
a Candidate or as an Exclusion; the builder then turns each Candidate into exactly one index row or exclusion.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import pandas as pd

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class FrameFile:
    """One image file found under a raw root.

    ``relpath`` is POSIX and relative to the snapshot root. ``problem`` is None when the cheap integrity
    check passed, otherwise a human-readable reason ("empty file", "truncated JPEG: no end-of-image marker").
    ``digest`` is a BLAKE2b hash of the file's bytes (content keys hash it, so a replaced frame of the same size
    is seen); ``shape`` is (height, width, channels) from the image header, channels 1 for greyscale and 3 for
    colour (None when the header cannot be read or the listing did not read the files).
    """

    relpath: str
    size: int
    problem: str | None = None
    digest: str | None = None
    shape: tuple[int, int, int] | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(self.relpath)


@dataclass
class Snapshot:
    """What the I/O layer read from one raw dataset root; parsers never touch the disk.

    ``tables`` maps the relative path of each annotation file found (``"CASME2-coding-20140508.xlsx"``; a sheet
    other than the first is ``"file.xlsx#Sheet2"``) to its raw cells: ``header=None``, ``dtype=object``, so the
    parser detects the header row itself and sees int-vs-str cells exactly as stored.
    ``dirs`` maps the relative path of every folder that directly holds image files to those files, in the
    (arbitrary) order the file system listed them. ``parts`` holds the member snapshots of a composite
    (``megc2019``: ``casme2``, ``samm``, ``smic_hs``). ``root_exists`` is False when the configured root is
    missing, so the parser can raise an error that names it.
    """

    dataset: str
    root: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    dirs: dict[str, list[FrameFile]] = field(default_factory=dict)
    parts: dict[str, Snapshot] = field(default_factory=dict)
    root_exists: bool = True


@dataclass
class Candidate:
    """One raw sample a dataset parser accepted, before the shared policies (apex, frames, labels) run.

    Frame numbers are the numbers in the file names (``img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562),
    ``frames`` holds every image of the clip folder sorted by that number (not only onset..offset).
    ``fold_subject`` is dataset-namespaced (``casme2/sub01``, ``samm/006``, ``smic_hs/s01``).
    ``label_override`` is set when the label comes from an authority other than the emotion cell (the MEGC2019
    ground-truth CSV). ``source`` names the file and row (or folder) the sample came from, for error messages;
    ``annotation_file``/``annotation_row`` say the same as data (row as Excel shows it, 1-based; None for samples
    derived from folders). ``clip_dir_problem`` says why ``clip_dir`` is None (the text from
    :func:`resolve_clip_dir`), so the index builder can exclude the sample with that reason.
    """

    dataset: str
    subject: str
    clip: str
    fold_subject: str
    clip_dir: str | None
    frames: list[tuple[int, FrameFile]]
    onset: int | None
    apex: int | None
    offset: int | None
    fps: float
    au_raw: str | None
    emotion_raw: str | None
    source: str
    objective_class: str | None = None
    label_override: str | None = None
    notes: list[str] = field(default_factory=list)
    annotation_file: str | None = None
    annotation_row: int | None = None
    clip_dir_problem: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dataset, self.subject, self.clip)


@dataclass(frozen=True)
class Exclusion:
    """A raw sample that is not in the index, with a machine-readable code and a sentence for humans."""

    dataset: str
    subject: str
    clip: str
    source: str
    reason_code: str
    reason: str


EXCLUSION_COLUMNS: tuple[str, ...] = ("dataset", "subject", "clip", "source", "reason_code", "reason")


class RawDataError(ValueError):
    """A raw dataset cannot be read at all (missing root, no annotation file, unknown layout)."""


def resolve_clip_dir(snapshot: Snapshot, *parts: object) -> tuple[str | None, str | None]:
    """Join annotation cells into a folder path relative to the root, refusing paths that leave the root.

    Returns ``(relpath, None)`` when the folder is listed in the snapshot, ``(None, problem)`` otherwise; the
    problem starts with ``"path escapes the dataset root"`` for cells such as ``../../etc`` or absolute paths.
    """
    texts = [str(p).strip() for p in parts]
    joined = posixpath.join(*texts) if texts else ""
    if not joined or posixpath.isabs(joined) or "\\" in joined:
        return None, f"path escapes the dataset root: {joined!r} is absolute or malformed"
    normalised = posixpath.normpath(joined)
    if normalised == ".." or normalised.startswith("../") or any(t in ("..",) for t in normalised.split("/")):
        return None, f"path escapes the dataset root: {joined!r} resolves to {normalised!r}"
    if normalised not in snapshot.dirs:
        return None, f"clip folder {normalised!r} not found under {snapshot.root}"
    return normalised, None
