"""CAS(ME)^3 part A: micro-expressions annotated inside long recordings ``part_A/<spNO.N>/<letter>/color/``.

Layouts under the raw root (docs/datasets.md):

* full release: ``part_A/spNO.1/a/color/166.jpg`` (frame numbers = the annotation's JPG indices); every
  micro-expression of recording ``a`` reads its onset..offset slice from that one folder;
* ME-only copy (made by MEB's ``tools/extract_casme3_part_a.py``): ``<root>/spNO.1/a2/color/166.jpg``, one folder
  per micro-expression named by the clip id below.

A layout whose frames folder is named ``part_A`` is read as the full release, any other as the ME-only copy; reader
options ``frames_dir`` and ``layout`` (``full`` | ``me_only``) override the detection.

Clip ids: the recording letter repeats within a subject (several micro-expressions in one recording), so within
each subject, in annotation-row order, the k-th row of letter ``a`` gets clip id ``a`` for k = 1 and ``a<k>`` for
k >= 2 (``a``, ``a2``, ``a3``: MEB's names for consecutive repeats, so its ME-only copy is found by clip id); the
original letter is kept in the sample's notes. Objective classes written as Roman numerals (I..VII) are stored as
``1``..``7`` (SAMM's spelling). Mixed-case emotions (``others``/``Others``) are kept raw for the label maps.
Frames dropped inside onset..offset are left to the index builder's missing-frames policy. When the sheet has an
``Expression type`` column (``CAS(ME)3_part_A_v2.xls``), rows that are not micro-expressions are ``not_micro``
exclusions with clip ``<letter>:row<N>`` and do not count towards the clip-id numbering.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from typing import Any

from microexpr.data.records import Candidate, Exclusion, Snapshot
from microexpr.data.sources import _common as c

ANNOTATION_PREFERENCE: tuple[str, ...] = (
    "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
    "CAS(ME)3_part_A_v2.xls",
)
FRAMES_DIR_PREFERENCE: tuple[str, ...] = ("part_A",)
CLIP_PATTERN = re.compile(r"[^/]+/[^/]+/color", re.IGNORECASE)
DEFAULT_FPS = 30.0
READER_OPTIONS = frozenset({"annotation_file", "frames_dir", "layout", "fps"})
FIELDS = {**c.COMMON_FIELDS, "expression_type": ("expressiontype", "type")}
HEADER_LABELS = {"onset": "Onset", "apex": "Apex", "offset": "Offset"}
ROMAN: dict[str, str] = {"I": "1", "II": "2", "III": "3", "IV": "4", "V": "5", "VI": "6", "VII": "7"}


def canonical_subject(text: str | None) -> str | None:
    """``"spNO.1"``, ``"spno1"``, ``1`` -> ``"spNO.1"``; anything else -> None."""
    return c.numbered_id(text, r"(?:spno\.?)?0*(\d+)", "spNO.{}")


def objective_class(text: str | None) -> str | None:
    """Roman numerals I..VII -> ``"1"``..``"7"``; other text unchanged."""
    if text is None:
        return None
    return ROMAN.get(text.strip().upper(), text.strip())


def is_micro(text: str | None) -> bool:
    """``Micro-expression`` (any case/spacing) or blank counts as micro; ``Macro-expression`` does not."""
    return text is None or "micro" in text.lower()


def choose_layout(frames_dir: str | None, requested: str | None) -> str:
    if requested is not None:
        if requested not in ("full", "me_only"):
            raise ValueError(f"casme3_a: reader option layout must be 'full' or 'me_only', not {requested!r}")
        return requested
    return (
        "full" if frames_dir is not None and posixpath.basename(frames_dir).lower() == "part_a" else "me_only"
    )


def micro_only(dataset: str, row: c.SheetRow | Exclusion) -> c.SheetRow | Exclusion:
    """The row, or a ``not_micro`` exclusion (clip ``<letter>:row<N>``) when its ``Expression type`` is not a
    micro-expression; exclusions pass through."""
    if isinstance(row, Exclusion):
        return row
    expression_type = row.text("expression_type")
    if is_micro(expression_type):
        return row
    return Exclusion(
        dataset,
        row.subject,
        f"{row.filename}:row{row.row}",
        row.source,
        "not_micro",
        f"{row.source}: expression type {expression_type!r} is not a micro-expression",
    )


def clip_ids(rows: list[c.SheetRow]) -> list[tuple[str, int]]:
    """``(clip id, k)`` per row: the k-th row of a subject's letter ``a`` is clip ``a`` (k = 1) or ``a<k>``."""
    seen: Counter[tuple[str, str]] = Counter()
    out: list[tuple[str, int]] = []
    for row in rows:
        seen[(row.subject, row.filename)] += 1
        k = seen[(row.subject, row.filename)]
        out.append((row.filename if k == 1 else f"{row.filename}{k}", k))
    return out


def recording_lister(snapshot: Snapshot) -> c.FrameLister:
    """:func:`frames_of` computed once per folder (full-release recordings hold thousands of frames and serve
    every micro-expression of their letter); each call returns its own list."""
    sorted_frames: dict[str, c.Frames] = {}

    def list_frames(clip_dir: str | None, notes: list[str]) -> c.Frames:
        if clip_dir is None:
            return []
        if clip_dir not in sorted_frames:
            sorted_frames[clip_dir] = c.frames_of(snapshot, clip_dir, notes)
        return list(sorted_frames[clip_dir])

    return list_frames


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates from the part A sheet (unique clip ids), plus exclusions for unusable rows and stray folders."""
    sheet = c.open_sheet(snapshot, options, READER_OPTIONS, ANNOTATION_PREFERENCE, DEFAULT_FPS, FIELDS)
    frames_dir = c.choose_frames_dir(
        snapshot, CLIP_PATTERN, 3, FRAMES_DIR_PREFERENCE, options.get("frames_dir")
    )
    layout = choose_layout(frames_dir, options.get("layout"))
    list_frames = recording_lister(snapshot)

    screened = (micro_only(sheet.dataset, row) for row in c.sheet_rows(snapshot, sheet, canonical_subject))
    rows, exclusions = c.split_rows(screened)
    candidates: list[Candidate] = []
    for row, (clip, k) in zip(rows, clip_ids(rows), strict=True):
        folder = row.filename if layout == "full" else clip
        path = c.join_dir(frames_dir, row.subject, folder, "color")
        note = f"recording letter {row.filename!r}, micro-expression {k} of that letter in {sheet.name}"
        candidates.append(
            c.sheet_candidate(
                snapshot,
                sheet,
                row,
                location=c.sheet_clip_dir(snapshot, folder, path),
                labels=HEADER_LABELS,
                objective_class=objective_class(row.text("objective_class")),
                clip=clip,
                notes_before=[note],
                list_frames=list_frames,
            )
        )

    exclusions += c.subject_folders_without_rows(
        snapshot, sheet, frames_dir, CLIP_PATTERN, 3, canonical_subject, candidates
    )
    return candidates, exclusions
