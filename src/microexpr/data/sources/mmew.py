"""MMEW: ``MMEW_Micro_Exp.xlsx`` + ``Micro_Expression/<emotion>/<Filename>/<n>.jpg`` folders.

Layout under the raw root (docs/datasets.md): ``Micro_Expression/happiness/S01-01-001/1.jpg ...`` (frames numbered
from 1: clips are pre-cut, OnsetFrame is always 1); ``Macro_Expression/`` next to it is not read.

Quirks handled: the clip folder is found by ``Filename`` under any emotion folder (the folder name is the emotion in
lower case, but the sheet's spelling may differ), preferring the folder of the row's emotion when a name occurs
twice; ``Subject`` int 1 -> ``S01`` (the prefix of ``Filename`` ``S01-01-001``); AU cells with laterality as
suffix (``12L``, ``4R``) are kept raw for the AU parser; the ``remarks`` cell goes to the notes; ``others`` is kept
as ``others`` (never renamed to ``repression`` as MEB does).
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from microexpr.data.records import Candidate, Exclusion, Snapshot, resolve_clip_dir
from microexpr.data.sources import _common as c

ANNOTATION_PREFERENCE: tuple[str, ...] = ("MMEW_Micro_Exp.xlsx",)
FRAMES_DIR_PREFERENCE: tuple[str, ...] = ("Micro_Expression",)
CLIP_PATTERN = re.compile(r"[^/]+/[^/]+")
DEFAULT_FPS = 90.0
READER_OPTIONS = frozenset({"annotation_file", "frames_dir", "fps"})
FIELDS = {**c.COMMON_FIELDS, "remarks": ("remarks", "remark")}
HEADER_LABELS = {"onset": "OnsetFrame", "apex": "ApexFrame", "offset": "OffsetFrame"}


def canonical_subject(text: str | None) -> str | None:
    """``1``, ``"01"``, ``"S1"``, ``"S01"`` -> ``"S01"``; anything else -> None."""
    return c.numbered_id(text, r"s?0*(\d+)", "S{:02d}")


def micro_frames_dir(snapshot: Snapshot, requested: str | None) -> str | None:
    """``Micro_Expression`` (or ``frames_dir``), never ``Macro_Expression``."""
    if requested is not None:
        return c.choose_frames_dir(snapshot, CLIP_PATTERN, 2, FRAMES_DIR_PREFERENCE, requested)
    for d in snapshot.dirs:
        prefix = c.split_prefix(d, CLIP_PATTERN, 2)
        if prefix is not None and posixpath.basename(prefix).lower() == "micro_expression":
            return prefix
    return None


def find_clip_dir(
    snapshot: Snapshot,
    by_name: Mapping[str, list[str]],
    frames_dir: str | None,
    clip: str,
    emotion: str | None,
) -> c.ClipLocation:
    """The folder named ``clip`` under any emotion folder, the row's emotion folder winning a tie; when none is
    listed, the problem names the folder expected under the row's emotion."""
    problem = c.unsafe_component(clip)
    if problem is not None:
        return None, problem
    found = by_name.get(clip, [])
    same_emotion = [d for d in found if d.split("/")[-2].lower() == (emotion or "").lower()]
    if len(found) == 1 or len(same_emotion) == 1:
        return (same_emotion or found)[0], None
    if len(found) > 1:
        return None, f"clip folder {clip!r} found under several emotion folders: {', '.join(found)}"
    expected = c.join_dir(frames_dir or "Micro_Expression", (emotion or "<emotion>").lower(), clip)
    return resolve_clip_dir(snapshot, *expected)


def row_notes(row: c.SheetRow, clip_dir: str | None) -> list[str]:
    """The ``remarks`` cell, and a note when the clip folder sits under another emotion than the sheet's."""
    notes: list[str] = []
    remark = row.text("remarks")
    if remark:
        notes.append(f"annotation remark: {remark}")
    emotion = row.text("emotion")
    if clip_dir is not None and emotion and clip_dir.split("/")[-2].lower() != emotion.lower():
        notes.append(f"clip folder is under {clip_dir.split('/')[-2]!r} but the sheet says {emotion!r}")
    return notes


def folder_key(path: str) -> tuple[str, str]:
    """``.../happiness/S01-01-001`` -> ``("S01", "S01-01-001")``: the subject is the Filename's prefix."""
    clip_name = posixpath.basename(path)
    return canonical_subject(clip_name.split("-")[0]) or "", clip_name


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates from the MMEW sheet, plus exclusions for unusable rows and unannotated folders."""
    sheet = c.open_sheet(snapshot, options, READER_OPTIONS, ANNOTATION_PREFERENCE, DEFAULT_FPS, FIELDS)
    frames_dir = micro_frames_dir(snapshot, options.get("frames_dir"))
    on_disk = c.clip_dirs_under(snapshot, frames_dir, CLIP_PATTERN, 2)
    by_name: dict[str, list[str]] = defaultdict(list)
    for d in on_disk:
        by_name[posixpath.basename(d)].append(d)

    rows, exclusions = c.split_rows(c.sheet_rows(snapshot, sheet, canonical_subject))
    candidates: list[Candidate] = []
    for row in rows:
        location = find_clip_dir(snapshot, by_name, frames_dir, row.filename, row.text("emotion"))
        notes = row_notes(row, location[0])
        candidates.append(
            c.sheet_candidate(
                snapshot,
                sheet,
                row,
                location=location,
                labels=HEADER_LABELS,
                objective_class=row.text("objective_class"),
                notes_after=notes,
            )
        )

    exclusions += c.folders_without_rows(snapshot, sheet, on_disk, candidates, folder_key)
    return candidates, exclusions
