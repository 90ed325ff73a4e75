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

from microexpr.data.records import Candidate, Exclusion, Snapshot, resolve_clip_dir
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
    if text is None:
        return None
    match = re.fullmatch(r"(?:spno\.?)?0*(\d+)", text.strip(), re.IGNORECASE)
    return f"spNO.{int(match.group(1))}" if match else None


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


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates from the part A sheet (unique clip ids), plus exclusions for unusable rows and stray folders."""
    dataset = snapshot.dataset
    c.check_options(options, READER_OPTIONS, dataset)
    fps = float(options.get("fps") or DEFAULT_FPS)
    name, header = c.select_annotation(
        snapshot, ANNOTATION_PREFERENCE, options.get("annotation_file"), FIELDS
    )
    table = snapshot.tables[name]
    frames_dir = c.choose_frames_dir(
        snapshot, CLIP_PATTERN, 3, FRAMES_DIR_PREFERENCE, options.get("frames_dir")
    )
    layout = choose_layout(frames_dir, options.get("layout"))

    sorted_frames: dict[str, list] = {}

    def recording_frames(clip_dir: str | None, notes: list[str]) -> list:
        """Sorted frames of a folder, computed once per recording (full-release recordings hold thousands)."""
        if clip_dir is None:
            return []
        if clip_dir not in sorted_frames:
            sorted_frames[clip_dir] = c.frames_of(snapshot, clip_dir, notes)
        return sorted_frames[clip_dir]

    candidates: list[Candidate] = []
    exclusions: list[Exclusion] = []
    referenced: set[str] = set()
    seen: Counter[tuple[str, str]] = Counter()
    for i, cells in c.iter_rows(table, header):
        row = c.excel_row(i)
        source = f"{name} row {row}"
        subject_text = c.cell_text(cells["subject"])
        letter = c.cell_text(cells["filename"])
        subject = canonical_subject(subject_text)
        if subject is None or letter is None:
            exclusions.append(
                c.invalid_row(dataset, source, subject or subject_text, letter, "no usable Subject/Filename")
            )
            continue
        expression_type = c.cell_text(cells.get("expression_type"))
        if not is_micro(expression_type):
            exclusions.append(
                Exclusion(
                    dataset,
                    subject,
                    f"{letter}:row{row}",
                    source,
                    "not_micro",
                    f"{source}: expression type {expression_type!r} is not a micro-expression",
                )
            )
            continue
        seen[(subject, letter)] += 1
        k = seen[(subject, letter)]
        clip = letter if k == 1 else f"{letter}{k}"
        notes: list[str] = [f"recording letter {letter!r}, micro-expression {k} of that letter in {name}"]
        frames = c.frame_cells(cells, HEADER_LABELS, notes)
        folder = letter if layout == "full" else clip
        clip_dir, problem = None, c.unsafe_component(folder)
        if problem is None:
            clip_dir, problem = resolve_clip_dir(snapshot, *c.join_dir(frames_dir, subject, folder, "color"))
        if clip_dir is not None:
            referenced.add(clip_dir)
        candidates.append(
            Candidate(
                dataset=dataset,
                subject=subject,
                clip=clip,
                fold_subject=f"{dataset}/{subject}",
                clip_dir=clip_dir,
                frames=list(recording_frames(clip_dir, notes)),
                onset=frames["onset"],
                apex=frames["apex"],
                offset=frames["offset"],
                fps=fps,
                au_raw=c.cell_text(cells.get("au")),
                emotion_raw=c.cell_text(cells.get("emotion")),
                source=source,
                objective_class=objective_class(c.cell_text(cells.get("objective_class"))),
                notes=notes,
                annotation_file=name,
                annotation_row=row,
                clip_dir_problem=problem,
            )
        )

    def key_of(path: str) -> tuple[str, str]:
        subject_dir, clip_name, _ = path.split("/")[-3:]
        return canonical_subject(subject_dir) or subject_dir, clip_name

    on_disk = c.clip_dirs_under(snapshot, frames_dir, CLIP_PATTERN, 3)
    exclusions += c.unreferenced_folders(dataset, on_disk, referenced, name, key_of)
    c.log_unread_folders(snapshot, set(on_disk) | referenced)
    return candidates, exclusions
