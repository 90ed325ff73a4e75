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

from microexpr.data.records import Candidate, Exclusion, Snapshot, resolve_clip_dir
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
    if text is None:
        return None
    match = re.fullmatch(r"0*(\d+)", text.strip())
    return f"{int(match.group(1)):03d}" if match else None


def parse(snapshot: Snapshot, options: dict[str, Any]) -> tuple[list[Candidate], list[Exclusion]]:
    """Candidates from the chosen SAMM sheet, plus exclusions for unusable rows and unannotated folders."""
    dataset = snapshot.dataset
    c.check_options(options, READER_OPTIONS, dataset)
    fps = float(options.get("fps") or DEFAULT_FPS)
    name, header = c.select_annotation(
        snapshot, ANNOTATION_PREFERENCE, options.get("annotation_file"), FIELDS
    )
    table = snapshot.tables[name]
    frames_dir = c.choose_frames_dir(
        snapshot, CLIP_PATTERN, 2, FRAMES_DIR_PREFERENCE, options.get("frames_dir")
    )

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
        if subject_text != subject:
            notes.append(f"Subject cell {subject_text!r} read as {subject!r}")
        frames = c.frame_cells(cells, HEADER_LABELS, notes)
        remark = c.cell_text(cells.get("notes"))
        if remark:
            notes.append(f"annotation note: {remark}")
        clip_dir, problem = None, c.unsafe_component(clip)
        if problem is None:
            clip_dir, problem = resolve_clip_dir(snapshot, *c.join_dir(frames_dir, subject, clip))
        if clip_dir is not None:
            referenced.add(clip_dir)
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
                emotion_raw=c.cell_text(cells.get("emotion")),
                source=source,
                objective_class=c.cell_text(cells.get("objective_class")),
                notes=notes,
                annotation_file=name,
                annotation_row=row,
                clip_dir_problem=problem,
            )
        )

    def key_of(path: str) -> tuple[str, str]:
        subject_dir, clip_name = path.split("/")[-2:]
        return canonical_subject(subject_dir) or subject_dir, clip_name

    on_disk = c.clip_dirs_under(snapshot, frames_dir, CLIP_PATTERN, 2)
    exclusions += c.unreferenced_folders(dataset, on_disk, referenced, name, key_of)
    c.log_unread_folders(snapshot, set(on_disk) | referenced)
    return candidates, exclusions
