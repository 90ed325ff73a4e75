"""SAMM: FACS coding sheet with a preamble + ``<subject>/<Filename>/<subject>_<frame>.jpg`` folders.

Layout under the raw root (docs/datasets.md): ``SAMM/006/006_1_2/006_05562.jpg`` or ``006/006_1_2/...`` directly
(also ``SAMM_CROP/...``; reader option ``frames_dir`` picks one). Annotation: ``SAMM_Micro_FACS_Codes_v2.xlsx``
(header on spreadsheet row 14 after 13 preamble rows) or ``SAMM_20181215_..._v2.xlsx`` (one preamble row).

Quirks handled: the header row is detected by its column names; ``Subject`` is text ``006`` but may arrive as the
int 6 -> zero-padded to 3 digits; apex missing or unreadable -> None with a note (the index builder applies the
missing-apex policy, the corrections table can supply a value); emotion written ``Other``/``Others`` is kept raw
(label maps normalise case); AU strings with ``or``/``ref()``/free text are kept raw for the AU parser; the
``Notes`` cell is copied into the sample's notes.
"""

from __future__ import annotations

import re
from typing import Any

from microexpr.data.records import Candidate, Exclusion, Snapshot
from microexpr.data.sources import _common as c

ANNOTATION_PREFERENCE: tuple[str, ...] = ("SAMM_Micro_FACS_Codes_v2.xlsx",)
FRAMES_DIR_PREFERENCE: tuple[str, ...] = ("SAMM", "SAMM_CROP")
CLIP_PATTERN = re.compile(r"\d+/[^/]+")
DEFAULT_FPS = 200.0
READER_OPTIONS = frozenset({"annotation_file", "frames_dir", "fps"})
FIELDS = {**c.COMMON_FIELDS, "notes": ("notes",)}
HEADER_LABELS = {"onset": "Onset Frame", "apex": "Apex Frame", "offset": "Offset Frame"}


def canonical_subject(text: str | None) -> str | None:
    """``6``, ``"6"``, ``"006"`` -> ``"006"``; anything else -> None."""
    return c.numbered_id(text, r"0*(\d+)", "{:03d}")


def subject_note(row: c.SheetRow) -> list[str]:
    """A note when the Subject cell is not written as the canonical id (``6`` read as ``006``)."""
    if row.subject_text != row.subject:
        return [f"Subject cell {row.subject_text!r} read as {row.subject!r}"]
    return []


def annotation_note(row: c.SheetRow) -> list[str]:
    """The sheet's ``Notes`` cell, copied into the sample's notes."""
    remark = row.text("notes")
    return [f"annotation note: {remark}"] if remark else []


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates from the chosen SAMM sheet, plus exclusions for unusable rows and unannotated folders."""
    sheet = c.open_sheet(snapshot, options, READER_OPTIONS, ANNOTATION_PREFERENCE, DEFAULT_FPS, FIELDS)
    frames_dir = c.choose_frames_dir(
        snapshot, CLIP_PATTERN, 2, FRAMES_DIR_PREFERENCE, options.get("frames_dir")
    )

    rows, exclusions = c.split_rows(c.sheet_rows(snapshot, sheet, canonical_subject))
    candidates = [
        c.subject_clip_candidate(
            snapshot,
            sheet,
            frames_dir,
            row,
            labels=HEADER_LABELS,
            objective_class=row.text("objective_class"),
            notes_before=subject_note(row),
            notes_after=annotation_note(row),
        )
        for row in rows
    ]

    exclusions += c.subject_folders_without_rows(
        snapshot, sheet, frames_dir, CLIP_PATTERN, 2, canonical_subject, candidates
    )
    return candidates, exclusions
