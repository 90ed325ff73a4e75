"""CASME II (and the bundled synthetic set, written in the same layout): coding sheet + ``subXX/<Filename>/`` folders.

Layout under the raw root (docs/datasets.md): ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` (preferred),
else ``CASME2-RAW/...`` (full clips; the index keeps onset..offset) or ``Cropped/sub01/EP02_01f/reg_img46.jpg``,
or the ``subXX`` folders directly under the root; reader option ``frames_dir`` picks one explicitly.

Provided face crops (used by preprocessing when a feature sets ``alignment: dataset_crops``, never by ingest):
``Cropped/subXX/<Filename>/reg_img<N>.jpg``, in some copies ``Cropped-updated/Cropped`` (what MMNet's reference
code reads) or ``Cropped_original``; :func:`provided_crop_dirs` finds them, :func:`crop_clip_dir` maps a clip to its
crop folder.

Quirks handled: four annotation versions (chosen by ``annotation_file`` or by ``ANNOTATION_PREFERENCE``); header row
found by its column names, not by position (the two unnamed columns of ``-20140508`` are simply skipped);
``Subject`` 1 -> folder ``sub01``; AU cells stored as int (``4``) or text (``1+L2``) both become text; apex
written as blank, ``/`` or ``-`` -> None (the index builder applies the missing-apex policy); frame files sorted
by number; folders with images but no annotation row are reported.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from typing import Any

from microexpr.data.records import Candidate, Exclusion, Snapshot
from microexpr.data.sources import _common as c

# Newest release first: the 2019 re-release, the "updated" sheet MEB uses, the Ver_2 label sheet, the 2014 original.
ANNOTATION_PREFERENCE: tuple[str, ...] = (
    "CASME2-coding-20190701.xlsx",
    "CASME2-coding-updated.xlsx",
    "CASME2_label_Ver_2.xls",
    "CASME2-coding-20140508.xlsx",
)
FRAMES_DIR_PREFERENCE: tuple[str, ...] = ("CASME2_RAW_selected", "CASME2-RAW", "Cropped")
CLIP_PATTERN = re.compile(r"sub\d+/[^/]+", re.IGNORECASE)
DEFAULT_FPS = 200.0
READER_OPTIONS = frozenset({"dataset", "annotation_file", "frames_dir", "fps"})
HEADER_LABELS = {"onset": "OnsetFrame", "apex": "ApexFrame", "offset": "OffsetFrame"}
# Provided-crop folders, preferred first; any other folder named ``Cropped*`` that holds subXX/<clip> folders follows.
CROPS_DIR_PREFERENCE: tuple[str, ...] = ("Cropped-updated/Cropped", "Cropped", "Cropped_original")
CROPS_DIR_NAME = re.compile(r"cropped[^/]*", re.IGNORECASE)
CROPS_LAYOUT = "Cropped/subXX/<Filename>/reg_img<N>.jpg (or Cropped-updated/Cropped, Cropped_original)"


def canonical_subject(text: str | None) -> str | None:
    """``1``, ``"01"``, ``"sub1"``, ``"sub01"`` -> ``"sub01"``; anything else -> None."""
    return c.numbered_id(text, r"(?:sub)?0*(\d+)", "sub{:02d}")


def provided_crop_dirs(snapshot: Snapshot) -> list[str]:
    """Folders under the root that hold provided face crops as ``<folder>/subXX/<clip>/``, preferred first.

    A folder counts when its last component is named ``Cropped*``; ``CROPS_DIR_PREFERENCE`` ranks the usual names,
    then more clip folders first, then by name (deterministic when a copy holds several versions).
    """
    counts: Counter[str] = Counter()
    for folder in snapshot.dirs:
        prefix = c.split_prefix(folder, CLIP_PATTERN, 2)
        if prefix and CROPS_DIR_NAME.fullmatch(posixpath.basename(prefix)):
            counts[prefix] += 1
    rank = {p.lower(): k for k, p in enumerate(CROPS_DIR_PREFERENCE)}
    return sorted(counts, key=lambda p: (rank.get(p.lower(), len(rank)), -counts[p], p))


def crop_clip_dir(crops_dir: str, clip_dir: str) -> str:
    """The crop folder of a clip: ``<crops_dir>/subXX/<clip>`` for an index ``clip_dir`` ending in ``subXX/<clip>``."""
    return posixpath.join(crops_dir, *clip_dir.split("/")[-2:])


def objective_classes(snapshot: Snapshot) -> dict[tuple[str, str], str]:
    """``(subject, filename) -> objective class`` from ``CASME2-ObjectiveClasses.xlsx`` when it is present."""
    fields = {k: c.COMMON_FIELDS[k] for k in ("subject", "filename", "objective_class", "onset")}
    out: dict[tuple[str, str], str] = {}
    for table in snapshot.tables.values():
        header = c.find_header(table, fields, ("subject", "filename", "objective_class"))
        if header is None or "onset" in header.columns:
            continue
        for _, cells in c.iter_rows(table, header):
            subject = canonical_subject(c.cell_text(cells["subject"]))
            clip = c.cell_text(cells["filename"])
            value = c.cell_text(cells["objective_class"])
            if subject and clip and value:
                out[(subject, clip)] = value
    return out


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates from the chosen coding sheet, plus exclusions for unusable rows and unannotated folders."""
    sheet = c.open_sheet(snapshot, options, READER_OPTIONS, ANNOTATION_PREFERENCE, DEFAULT_FPS)
    frames_dir = c.choose_frames_dir(
        snapshot, CLIP_PATTERN, 2, FRAMES_DIR_PREFERENCE, options.get("frames_dir")
    )
    objective = objective_classes(snapshot)

    rows, exclusions = c.split_rows(c.sheet_rows(snapshot, sheet, canonical_subject))
    candidates = [
        c.subject_clip_candidate(
            snapshot,
            sheet,
            frames_dir,
            row,
            labels=HEADER_LABELS,
            objective_class=row.text("objective_class") or objective.get((row.subject, row.filename)),
        )
        for row in rows
    ]

    exclusions += c.subject_folders_without_rows(
        snapshot, sheet, frames_dir, CLIP_PATTERN, 2, canonical_subject, candidates
    )
    return candidates, exclusions
