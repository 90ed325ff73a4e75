"""Helpers shared by the dataset parsers: header detection, cell coercion, frame numbering, frame-folder discovery.

Everything here is pure (works on a :class:`Snapshot`), so each parser stays a short list of dataset quirks.
"""

from __future__ import annotations

import logging
import math
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from microexpr.data.records import Candidate, Exclusion, FrameFile, RawDataError, Snapshot, resolve_clip_dir

logger = logging.getLogger(__name__)

Frames = list[tuple[int, FrameFile]]
# ``(clip_dir, notes) -> frames``: how a parser lists a clip folder (CAS(ME)^3 caches whole recordings).
FrameLister = Callable[[str | None, list[str]], Frames]
# ``(clip_dir, problem)`` as returned by :func:`resolve_clip_dir`.
ClipLocation = tuple[str | None, str | None]
SubjectCanon = Callable[[str | None], str | None]

# Cell texts that mean "not annotated" in the released sheets (CASME II uses "/" and "-" for a missing apex).
MISSING_MARKERS: frozenset[str] = frozenset(
    {"", "/", "-", "--", "\u2014", "nan", "none", "n/a", "na", "null", "?"}
)

# Normalised header names (see ``normalise_header``) accepted for each field, across every dataset and version.
COMMON_FIELDS: dict[str, tuple[str, ...]] = {
    "subject": ("subject", "sub", "subjectid", "subid"),
    "filename": ("filename", "material", "foldname", "clip"),
    "onset": ("onsetframe", "onset", "onsetf"),
    "apex": ("apexframe", "apex", "apexf", "apexf1"),
    "offset": ("offsetframe", "offset", "offsetf"),
    "au": ("actionunits", "actionunit", "au", "aus"),
    "emotion": ("estimatedemotion", "emotion"),
    "objective_class": ("objectiveclass", "objectiveclasses"),
}
REQUIRED_FIELDS: tuple[str, ...] = ("subject", "filename", "onset", "offset")
HEADER_SEARCH_ROWS: int | None = None  # None: every row (a preamble of any length; the header must name all fields)


def is_blank(cell: object) -> bool:
    """True for None, NaN and whitespace-only strings."""
    if cell is None:
        return True
    if isinstance(cell, float) and math.isnan(cell):
        return True
    return isinstance(cell, str) and not cell.strip()


def normalise_header(cell: object) -> str:
    """Header text compared case-, space- and punctuation-insensitively: ``"Onset Frame"`` -> ``"onsetframe"``."""
    if is_blank(cell):
        return ""
    return re.sub(r"[^0-9a-z]", "", str(cell).lower())


def cell_text(cell: object) -> str | None:
    """A cell as stripped text; integral floats lose their ``.0`` (Excel stores ``4`` as ``4.0``); blank -> None."""
    if is_blank(cell):
        return None
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def cell_int(cell: object) -> tuple[int | None, str | None]:
    """A frame-number cell as ``(value, problem)``: missing markers give ``(None, None)``, junk gives a problem."""
    if is_blank(cell):
        return None, None
    if isinstance(cell, bool):
        return None, f"{cell!r} is not a frame number"
    if isinstance(cell, int):
        return int(cell), None
    if isinstance(cell, float):
        if cell.is_integer():
            return int(cell), None
        return None, f"{cell!r} is not a whole frame number"
    text = str(cell).strip()
    if text.lower() in MISSING_MARKERS:
        return None, None
    match = re.fullmatch(r"\+?(\d+)(?:\.0+)?", text)
    if match:
        return int(match.group(1)), None
    return None, f"{text!r} is not a frame number"


def numbered_id(text: str | None, pattern: str, template: str) -> str | None:
    """A subject id in its dataset's spelling: ``text`` must fully match ``pattern`` (case-insensitive, one group
    of digits), whose number is written with ``template`` (``"sub{:02d}"``: ``"1"`` -> ``"sub01"``); else None."""
    if text is None:
        return None
    match = re.fullmatch(pattern, text.strip(), re.IGNORECASE)
    return template.format(int(match.group(1))) if match else None


def excel_row(index: int) -> int:
    """Row number as a spreadsheet program shows it, for a raw-cell row index (tables are read with header=None)."""
    return index + 1


@dataclass(frozen=True)
class HeaderMatch:
    """Where the header of an annotation table is and which column holds each field."""

    row: int
    columns: dict[str, int]


def find_header(
    table: pd.DataFrame,
    fields: Mapping[str, tuple[str, ...]] = COMMON_FIELDS,
    required: tuple[str, ...] = REQUIRED_FIELDS,
    max_rows: int | None = HEADER_SEARCH_ROWS,
) -> HeaderMatch | None:
    """First row (of the first ``max_rows``; None: of all rows) naming every required field; blank/unnamed columns are skipped.

    Detecting the header instead of trusting a row number is what lets one reader handle SAMM's 13-row and
    1-row preambles and CASME II's versions with or without the two unnamed columns.
    """
    for i in range(len(table) if max_rows is None else min(len(table), max_rows)):
        names = [normalise_header(c) for c in table.iloc[i].tolist()]
        columns: dict[str, int] = {}
        for name_field, aliases in fields.items():
            for j, name in enumerate(names):
                if name and name in aliases and j not in columns.values():
                    columns[name_field] = j
                    break
        if all(r in columns for r in required):
            return HeaderMatch(row=i, columns=columns)
    return None


def row_cells(table: pd.DataFrame, i: int, header: HeaderMatch) -> dict[str, Any]:
    """The cells of row ``i`` keyed by field name."""
    values = table.iloc[i].tolist()
    return {name: values[j] if j < len(values) else None for name, j in header.columns.items()}


def row_is_blank(table: pd.DataFrame, i: int) -> bool:
    return all(is_blank(c) for c in table.iloc[i].tolist())


def table_basename(name: str) -> str:
    """``"sub/CASME2.xlsx#Sheet2"`` -> ``"casme2.xlsx"`` (lower case, no folder, no sheet)."""
    return posixpath.basename(name.split("#", 1)[0]).lower()


def select_annotation(
    snapshot: Snapshot,
    preference: tuple[str, ...],
    requested: str | None,
    fields: Mapping[str, tuple[str, ...]] = COMMON_FIELDS,
    required: tuple[str, ...] = REQUIRED_FIELDS,
) -> tuple[str, HeaderMatch]:
    """Pick the annotation table to read and find its header.

    ``requested`` (reader option ``annotation_file``: a relative path or a file name, case-insensitive) wins;
    otherwise the tables whose header is detected are ranked by ``preference`` (file names, best first), then
    by name. The choice is logged, and a warning lists the other versions found, so a user always knows which
    version produced the index.
    """
    if not snapshot.root_exists:
        raise RawDataError(
            f"{snapshot.dataset}: raw root {snapshot.root} does not exist (set raw_roots.{snapshot.dataset})"
        )
    headers = {name: find_header(table, fields, required) for name, table in snapshot.tables.items()}
    usable = {name: h for name, h in headers.items() if h is not None}
    wanted = ", ".join(required)
    if requested:
        key = requested.strip().lower()
        matches = [n for n in snapshot.tables if n.lower() == key or table_basename(n) == key]
        if not matches:
            raise RawDataError(
                f"{snapshot.dataset}: annotation_file {requested!r} not found under {snapshot.root}; "
                f"annotation files found: {sorted(snapshot.tables) or 'none'}"
            )
        name = matches[0]
        if usable.get(name) is None:
            raise RawDataError(
                f"{snapshot.dataset}: no header row with columns {wanted} in any row "
                f"of {snapshot.root}/{name}"
            )
        logger.info(
            "%s: reading annotation file %s (chosen by option annotation_file)", snapshot.dataset, name
        )
        return name, usable[name]
    if not usable:
        raise RawDataError(
            f"{snapshot.dataset}: no annotation file with columns {wanted} under {snapshot.root}; "
            f"tables found: {sorted(snapshot.tables) or 'none'}"
        )
    rank = {p.lower(): k for k, p in enumerate(preference)}
    ordered = sorted(usable, key=lambda n: (rank.get(table_basename(n), len(rank)), n))
    chosen = ordered[0]
    if len(ordered) > 1:
        logger.warning(
            "%s: several annotation versions found (%s); reading %s (preference order: %s; set the reader option "
            "annotation_file to choose another)",
            snapshot.dataset,
            ", ".join(ordered),
            chosen,
            ", ".join(preference),
        )
    else:
        logger.info("%s: reading annotation file %s", snapshot.dataset, chosen)
    return chosen, usable[chosen]


def frame_number(name: str) -> int | None:
    """The frame number in a file name: the last run of digits of the stem (``reg_img46.jpg`` -> 46,
    ``006_05562.jpg`` -> 5562, ``image046536.bmp`` -> 46536); None when there are no digits."""
    runs = re.findall(r"\d+", posixpath.splitext(name)[0])
    return int(runs[-1]) if runs else None


def numbered_frames(files: Iterable[FrameFile]) -> tuple[list[tuple[int, FrameFile]], list[str]]:
    """Frames sorted by number (file systems list in arbitrary order; names are not zero-padded), plus the names
    that carry no number (reported in the sample's notes, never silently used)."""
    numbered: list[tuple[int, FrameFile]] = []
    unnumbered: list[str] = []
    for f in files:
        n = frame_number(f.name)
        if n is None:
            unnumbered.append(f.name)
        else:
            numbered.append((n, f))
    numbered.sort(key=lambda item: (item[0], item[1].name))
    return numbered, sorted(unnumbered)


def frames_of(snapshot: Snapshot, clip_dir: str | None, notes: list[str]) -> list[tuple[int, FrameFile]]:
    """Numbered frames of a listed clip folder (empty when the folder is missing); unnumbered files go to notes."""
    if clip_dir is None:
        return []
    frames, unnumbered = numbered_frames(snapshot.dirs.get(clip_dir, []))
    if unnumbered:
        notes.append(
            f"ignored {len(unnumbered)} image file(s) without a frame number: {', '.join(unnumbered[:5])}"
        )
    return frames


def split_prefix(path: str, pattern: re.Pattern[str], depth: int) -> str | None:
    """If the last ``depth`` components of ``path`` match ``pattern``, return the components before them."""
    parts = path.split("/")
    if path in ("", ".") or len(parts) < depth:
        return None
    tail = "/".join(parts[-depth:])
    if not pattern.fullmatch(tail):
        return None
    return "/".join(parts[:-depth])


def choose_frames_dir(
    snapshot: Snapshot,
    pattern: re.Pattern[str],
    depth: int,
    preference: tuple[str, ...],
    requested: str | None,
) -> str | None:
    """The folder (relative to the root, ``""`` = the root itself) under which clip folders are looked up.

    Clip folders are recognised by the last ``depth`` path components matching ``pattern`` (e.g.
    ``sub\\d+/[^/]+`` for CASME II). ``requested`` (reader option ``frames_dir``) wins; else the candidate
    folders are ranked by ``preference`` (matched against their last component, case-insensitively), then by how
    many clip folders they hold. Returns None when no clip folder is found at all.
    """
    counts: Counter[str] = Counter()
    for d in snapshot.dirs:
        prefix = split_prefix(d, pattern, depth)
        if prefix is not None:
            counts[prefix] += 1
    if requested is not None:
        wanted = posixpath.normpath(requested.strip().strip("/")) if requested.strip().strip("/") else ""
        if wanted == ".":
            wanted = ""
        if wanted not in counts:
            raise RawDataError(
                f"{snapshot.dataset}: frames_dir {requested!r} holds no clip folders under {snapshot.root}; "
                f"folders that do: {sorted(counts) or 'none'}"
            )
        return wanted
    if not counts:
        return None
    rank = {p.lower(): k for k, p in enumerate(preference)}
    ordered = sorted(
        counts, key=lambda p: (rank.get(posixpath.basename(p).lower(), len(rank)), -counts[p], p)
    )
    if len(ordered) > 1:
        logger.warning(
            "%s: clip folders found under several folders (%s); reading %s (set the reader option frames_dir to "
            "choose another)",
            snapshot.dataset,
            ", ".join(f"{p or '.'} ({counts[p]})" for p in ordered),
            ordered[0] or ".",
        )
    return ordered[0]


def clip_dirs_under(
    snapshot: Snapshot, frames_dir: str | None, pattern: re.Pattern[str], depth: int
) -> list[str]:
    """Every clip folder (pattern match) directly under ``frames_dir``, sorted."""
    if frames_dir is None:
        return []
    return sorted(d for d in snapshot.dirs if split_prefix(d, pattern, depth) == frames_dir)


def join_dir(frames_dir: str | None, *parts: str) -> tuple[str, ...]:
    """Path parts for :func:`resolve_clip_dir`, with the frames folder first when there is one."""
    return tuple(p for p in ((frames_dir or ""), *parts) if p != "") or ("",)


def unreferenced_folders(
    dataset: str,
    clip_dirs: Iterable[str],
    referenced: set[str],
    annotation_file: str,
    subject_and_clip: Any,
) -> list[Exclusion]:
    """Clip folders on disk that no annotation row names: one ``no_annotation_row`` exclusion each.

    ``subject_and_clip(path) -> (subject, clip)`` turns a folder into the sample's key.
    """
    out = []
    for d in clip_dirs:
        if d in referenced:
            continue
        subject, clip = subject_and_clip(d)
        out.append(
            Exclusion(
                dataset=dataset,
                subject=subject,
                clip=clip,
                source=d,
                reason_code="no_annotation_row",
                reason=f"clip folder {d} has images but no row in {annotation_file}",
            )
        )
    return out


def invalid_row(dataset: str, source: str, subject: str | None, clip: str | None, what: str) -> Exclusion:
    """An annotation row that names no usable sample (no subject or no file name)."""
    return Exclusion(
        dataset=dataset,
        subject=subject or "",
        clip=clip or "",
        source=source,
        reason_code="invalid_row",
        reason=f"{source}: {what}",
    )


def frame_cells(
    cells: Mapping[str, Any], labels: Mapping[str, str], notes: list[str]
) -> dict[str, int | None]:
    """Onset/apex/offset cells as ints; unreadable cells become None with a note naming the column and value."""
    out: dict[str, int | None] = {}
    for name in ("onset", "apex", "offset"):
        value, problem = cell_int(cells.get(name))
        if problem:
            notes.append(f"{labels.get(name, name)} cell: {problem}")
        out[name] = value
    return out


def log_unread_folders(snapshot: Snapshot, accounted: set[str]) -> None:
    """Log (info) the image folders neither read nor reported (another copy such as ``Cropped/``, depth maps),
    so a user can see that they were skipped on purpose."""
    unread = sorted(d for d in snapshot.dirs if d not in accounted)
    if unread:
        logger.info(
            "%s: %d image folder(s) not part of the layout that was read were skipped (e.g. %s)",
            snapshot.dataset,
            len(unread),
            ", ".join(unread[:3]),
        )


def unsafe_component(text: str) -> str | None:
    """Why an annotation cell cannot be used as one folder name (``../../etc``, ``a/b``, absolute), else None.

    Checked before joining cells into a path, so a cell can never point outside its clip's parent folder even
    when the joined path would still land inside the dataset root.
    """
    if text in (".", "..") or "/" in text or "\\" in text or text.startswith("~"):
        return f"path escapes the dataset root: {text!r} is not a plain folder name"
    return None


def iter_rows(table: pd.DataFrame, header: HeaderMatch) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(raw row index, cells by field)`` for every non-blank row below the header."""
    for i in range(header.row + 1, len(table)):
        if not row_is_blank(table, i):
            yield i, row_cells(table, i, header)


def check_options(options: Mapping[str, Any], accepted: frozenset[str], dataset: str) -> None:
    """Refuse misspelt reader options instead of silently ignoring them."""
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"{dataset}: unknown reader option(s) {unknown}; accepted: {sorted(accepted)}")


# ---------------------------------------------------------------------------------------- sheet-driven parsers
# CASME II, SAMM, MMEW and CAS(ME)^3 read one row per sample from a coding sheet; the functions below are the
# steps they share, so each parser keeps only its quirks (subject spelling, folder layout, extra columns).


@dataclass(frozen=True)
class Sheet:
    """The annotation sheet a parser reads, and the settings every row of it shares."""

    dataset: str
    name: str
    header: HeaderMatch
    fps: float


@dataclass(frozen=True)
class SheetRow:
    """One annotation row that names a sample: Subject as written and canonicalised, Filename, all cells."""

    row: int
    source: str
    cells: Mapping[str, Any]
    subject_text: str
    subject: str
    filename: str

    def text(self, name: str) -> str | None:
        """The cell of field ``name`` as text (None when blank or when the sheet has no such column)."""
        return cell_text(self.cells.get(name))


def open_sheet(
    snapshot: Snapshot,
    options: Mapping[str, Any],
    accepted: frozenset[str],
    preference: tuple[str, ...],
    default_fps: float,
    fields: Mapping[str, tuple[str, ...]] = COMMON_FIELDS,
) -> Sheet:
    """Check the reader options, then choose the annotation sheet and find its header (:func:`select_annotation`).

    A ``dataset`` option, where ``accepted`` has one (the synthetic set read as CASME II), renames the samples;
    ``fps`` overrides the dataset's frame rate.
    """
    dataset = (options.get("dataset") if "dataset" in accepted else None) or snapshot.dataset
    check_options(options, accepted, dataset)
    fps = float(options.get("fps") or default_fps)
    name, header = select_annotation(snapshot, preference, options.get("annotation_file"), fields)
    return Sheet(dataset=dataset, name=name, header=header, fps=fps)


def sheet_rows(
    snapshot: Snapshot, sheet: Sheet, canonical_subject: SubjectCanon
) -> Iterator[SheetRow | Exclusion]:
    """Every non-blank row below the header: a :class:`SheetRow`, or an ``invalid_row`` exclusion when its
    Subject cannot be canonicalised or its Filename is blank."""
    for i, cells in iter_rows(snapshot.tables[sheet.name], sheet.header):
        row = excel_row(i)
        source = f"{sheet.name} row {row}"
        subject_text = cell_text(cells["subject"])
        filename = cell_text(cells["filename"])
        subject = canonical_subject(subject_text)
        if subject_text is None or subject is None or filename is None:
            yield invalid_row(
                sheet.dataset, source, subject or subject_text, filename, "no usable Subject/Filename"
            )
        else:
            yield SheetRow(row, source, cells, subject_text, subject, filename)


def split_rows(rows: Iterable[SheetRow | Exclusion]) -> tuple[list[SheetRow], list[Exclusion]]:
    """The rows that name a sample, and the exclusions, each in sheet order."""
    kept: list[SheetRow] = []
    excluded: list[Exclusion] = []
    for row in rows:
        if isinstance(row, Exclusion):
            excluded.append(row)
        else:
            kept.append(row)
    return kept, excluded


def sheet_clip_dir(snapshot: Snapshot, folder: str, parts: tuple[str, ...]) -> ClipLocation:
    """The clip folder joined from ``parts`` (see :func:`join_dir`), refusing first an annotation cell
    (``folder``) that is not one plain folder name."""
    problem = unsafe_component(folder)
    if problem is not None:
        return None, problem
    return resolve_clip_dir(snapshot, *parts)


def subject_clip_dir(snapshot: Snapshot, frames_dir: str | None, row: SheetRow) -> ClipLocation:
    """The clip folder ``<frames_dir>/<subject>/<Filename>`` (the CASME II and SAMM layout)."""
    return sheet_clip_dir(snapshot, row.filename, join_dir(frames_dir, row.subject, row.filename))


def sheet_candidate(
    snapshot: Snapshot,
    sheet: Sheet,
    row: SheetRow,
    *,
    location: ClipLocation,
    labels: Mapping[str, str],
    objective_class: str | None,
    clip: str | None = None,
    notes_before: Iterable[str] = (),
    notes_after: Iterable[str] = (),
    list_frames: FrameLister | None = None,
) -> Candidate:
    """The Candidate of one sheet row whose clip folder was looked up (``location``).

    ``clip`` defaults to the Filename cell. Notes come in reading order: ``notes_before``, unreadable
    onset/apex/offset cells (named by their ``labels``), ``notes_after``, then image files without a frame
    number. ``list_frames`` defaults to :func:`frames_of`.
    """
    clip_dir, problem = location
    notes = list(notes_before)
    frames = frame_cells(row.cells, labels, notes)
    notes += notes_after
    listed = list_frames(clip_dir, notes) if list_frames else frames_of(snapshot, clip_dir, notes)
    return Candidate(
        dataset=sheet.dataset,
        subject=row.subject,
        clip=row.filename if clip is None else clip,
        fold_subject=f"{sheet.dataset}/{row.subject}",
        clip_dir=clip_dir,
        frames=listed,
        onset=frames["onset"],
        apex=frames["apex"],
        offset=frames["offset"],
        fps=sheet.fps,
        au_raw=row.text("au"),
        emotion_raw=row.text("emotion"),
        source=row.source,
        objective_class=objective_class,
        notes=notes,
        annotation_file=sheet.name,
        annotation_row=row.row,
        clip_dir_problem=problem,
    )


def subject_folder_key(canonical_subject: SubjectCanon, depth: int) -> Callable[[str], tuple[str, str]]:
    """``path -> (subject, clip)`` for clip folders whose last ``depth`` components start ``<subject>/<clip>``
    (a subject folder that cannot be canonicalised is kept as written)."""

    def key(path: str) -> tuple[str, str]:
        subject_dir, clip = path.split("/")[-depth:][:2]
        return canonical_subject(subject_dir) or subject_dir, clip

    return key


def subject_clip_candidate(
    snapshot: Snapshot, sheet: Sheet, frames_dir: str | None, row: SheetRow, **fields: Any
) -> Candidate:
    """:func:`sheet_candidate` for a row whose clip lives at ``<frames_dir>/<subject>/<Filename>`` (CASME II, SAMM);
    ``fields`` are sheet_candidate's keyword arguments other than ``location``."""
    return sheet_candidate(snapshot, sheet, row, location=subject_clip_dir(snapshot, frames_dir, row), **fields)


def subject_folders_without_rows(
    snapshot: Snapshot,
    sheet: Sheet,
    frames_dir: str | None,
    clip_pattern: re.Pattern[str],
    depth: int,
    canonical_subject: SubjectCanon,
    candidates: Iterable[Candidate],
) -> list[Exclusion]:
    """:func:`folders_without_rows` for the ``<subject>/<clip>…`` folders ``depth`` levels under ``frames_dir``
    (CASME II, SAMM, CAS(ME)^3), subjects read with ``canonical_subject``."""
    on_disk = clip_dirs_under(snapshot, frames_dir, clip_pattern, depth)
    key_of = subject_folder_key(canonical_subject, depth)
    return folders_without_rows(snapshot, sheet, on_disk, candidates, key_of)


def folders_without_rows(
    snapshot: Snapshot,
    sheet: Sheet,
    on_disk: list[str],
    candidates: Iterable[Candidate],
    subject_and_clip: Callable[[str], tuple[str, str]],
) -> list[Exclusion]:
    """``no_annotation_row`` exclusions for the clip folders in ``on_disk`` that no candidate uses; the other
    image folders (neither clip folders nor used) are logged by :func:`log_unread_folders`."""
    referenced = {cand.clip_dir for cand in candidates if cand.clip_dir is not None}
    exclusions = unreferenced_folders(sheet.dataset, on_disk, referenced, sheet.name, subject_and_clip)
    log_unread_folders(snapshot, set(on_disk) | referenced)
    return exclusions
