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
    if text is None:
        return None
    match = re.fullmatch(r"s?0*(\d+)", text.strip(), re.IGNORECASE)
    return f"S{int(match.group(1)):02d}" if match else None


def micro_frames_dir(snapshot: Snapshot, requested: str | None) -> str | None:
    """``Micro_Expression`` (or ``frames_dir``), never ``Macro_Expression``."""
    if requested is not None:
        return c.choose_frames_dir(snapshot, CLIP_PATTERN, 2, FRAMES_DIR_PREFERENCE, requested)
    for d in snapshot.dirs:
        prefix = c.split_prefix(d, CLIP_PATTERN, 2)
        if prefix is not None and posixpath.basename(prefix).lower() == "micro_expression":
            return prefix
    return None


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates from the MMEW sheet, plus exclusions for unusable rows and unannotated folders."""
    dataset = snapshot.dataset
    c.check_options(options, READER_OPTIONS, dataset)
    fps = float(options.get("fps") or DEFAULT_FPS)
    name, header = c.select_annotation(
        snapshot, ANNOTATION_PREFERENCE, options.get("annotation_file"), FIELDS
    )
    table = snapshot.tables[name]
    frames_dir = micro_frames_dir(snapshot, options.get("frames_dir"))
    on_disk = c.clip_dirs_under(snapshot, frames_dir, CLIP_PATTERN, 2)
    by_name: dict[str, list[str]] = defaultdict(list)
    for d in on_disk:
        by_name[posixpath.basename(d)].append(d)

    candidates: list[Candidate] = []
    exclusions: list[Exclusion] = []
    referenced: set[str] = set()
    for i, cells in c.iter_rows(table, header):
        row = c.excel_row(i)
        source = f"{name} row {row}"
        subject_text = c.cell_text(cells["subject"])
        clip = c.cell_text(cells["filename"])
        subject = canonical_subject(subject_text)
        if subject is None or clip is None:
            exclusions.append(
                c.invalid_row(dataset, source, subject or subject_text, clip, "no usable Subject/Filename")
            )
            continue
        notes: list[str] = []
        frames = c.frame_cells(cells, HEADER_LABELS, notes)
        emotion = c.cell_text(cells.get("emotion"))
        remark = c.cell_text(cells.get("remarks"))
        if remark:
            notes.append(f"annotation remark: {remark}")
        clip_dir, problem = None, c.unsafe_component(clip)
        if problem is None:
            found = by_name.get(clip, [])
            same_emotion = [d for d in found if d.split("/")[-2].lower() == (emotion or "").lower()]
            if len(found) == 1 or len(same_emotion) == 1:
                clip_dir = (same_emotion or found)[0]
            elif len(found) > 1:
                problem = f"clip folder {clip!r} found under several emotion folders: {', '.join(found)}"
            else:
                expected = c.join_dir(
                    frames_dir or "Micro_Expression", (emotion or "<emotion>").lower(), clip
                )
                clip_dir, problem = resolve_clip_dir(snapshot, *expected)
        if clip_dir is not None:
            referenced.add(clip_dir)
            if emotion and clip_dir.split("/")[-2].lower() != emotion.lower():
                notes.append(
                    f"clip folder is under {clip_dir.split('/')[-2]!r} but the sheet says {emotion!r}"
                )
        candidates.append(
            Candidate(
                dataset=dataset,
                subject=subject,
                clip=clip,
                fold_subject=f"{dataset}/{subject}",
                clip_dir=clip_dir,
                frames=c.frames_of(snapshot, clip_dir, notes),
                onset=frames["onset"],
                apex=frames["apex"],
                offset=frames["offset"],
                fps=fps,
                au_raw=c.cell_text(cells.get("au")),
                emotion_raw=emotion,
                source=source,
                objective_class=c.cell_text(cells.get("objective_class")),
                notes=notes,
                annotation_file=name,
                annotation_row=row,
                clip_dir_problem=problem,
            )
        )

    def key_of(path: str) -> tuple[str, str]:
        clip_name = posixpath.basename(path)
        return canonical_subject(clip_name.split("-")[0]) or "", clip_name

    exclusions += c.unreferenced_folders(dataset, on_disk, referenced, name, key_of)
    c.log_unread_folders(snapshot, set(on_disk) | referenced)
    return candidates, exclusions
