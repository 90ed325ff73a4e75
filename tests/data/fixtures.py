"""Format-faithful fixture datasets, written into a given folder in each real on-disk layout, with the quirks.

Plain functions (no pytest magic) so any test can build a dataset in ``tmp_path``. Frames are tiny 16x16 images
(JPEG via OpenCV, BMP for SMIC); annotation sheets are real .xlsx files written with openpyxl, cell types as the
releases store them (int Subject, int-or-text AU cells, "/" for a missing apex, blank unnamed columns). Each
builder returns the raw root and the (dataset, subject, clip) key of every raw sample it wrote, derived from
the fixture tables below (never from the code under test), so tests can check that each one is accounted for.

``.xls`` (CASME2_label_Ver_2.xls, CAS(ME)3_part_A_v2.xls) cannot be written with the installed packages (xlrd only
reads, xlwt is not installed); version selection for it is tested with an in-memory Snapshot instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import openpyxl

Key = tuple[str, str, str]


@dataclass(frozen=True)
class Clip:
    """One annotated sample of a fixture: sheet cells as written, and what lies on disk.

    ``frames`` None = no folder on disk; ``corrupt`` frame numbers are written truncated; ``sheet`` False = folder
    on disk with no annotation row.
    """

    subject: object
    filename: str
    onset: object
    apex: object
    offset: object
    au: object
    emotion: str
    frames: tuple[int, ...] | None
    corrupt: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)
    sheet: bool = True


@dataclass
class Fixture:
    root: Path
    raw_keys: set[Key]


def _image(seed: int, ext: str) -> bytes:
    value = 40 + (seed * 37) % 180
    image = np.full((16, 16, 3), value, dtype=np.uint8)
    image[4:12, 4:12] = 255 - value
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def write_frames(
    folder: Path, numbers: tuple[int, ...], name: str, corrupt: tuple[int, ...] = (), seed_offset: int = 0
) -> None:
    """Write one tiny image per frame number, named ``name.format(n)``, in shuffled order (listing order is
    arbitrary on real file systems); frames in ``corrupt`` are cut in half (truncated JPEG/BMP). ``seed_offset``
    gives a second set of the same frames other pixels (a dataset's provided crops beside its raw frames)."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(numbers)
    random.Random(len(order)).shuffle(order)
    for n in order:
        data = _image(n + seed_offset, Path(name).suffix)
        if n in corrupt:
            data = data[: len(data) // 2]
        (folder / name.format(n)).write_bytes(data)


def write_xlsx(path: Path, rows: list[list[object]]) -> None:
    """A one-sheet workbook; ``None`` cells stay empty, ints stay ints, strings stay strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)


# ------------------------------------------------------------------------------------------------------ CASME II
# Under label set emotion5 with default options (missing_apex: exclude), outcome in the comment.
CASME2_CLIPS: tuple[Clip, ...] = (
    # kept: int AU cell; frames img8..img12 (lexicographic order img10, img11, img12, img8, img9)
    Clip(1, "EP02_01f", 8, 10, 12, 4, "happiness", tuple(range(8, 13))),
    # missing_apex: apex written "/"
    Clip(1, "EP19_05f", 3, "/", 7, "1+L2", "disgust", tuple(range(3, 8))),
    # corrupt_frame: img3.jpg truncated
    Clip(1, "EP09f", 1, 3, 5, "R4+R10", "disgust", tuple(range(1, 6)), corrupt=(3,)),
    # kept with missing_frames [13]: img13 absent inside onset..offset
    Clip(2, "EP06_02_01", 10, 12, 15, "4+9+L10+14", "repression", (10, 11, 12, 14, 15)),
    # clip_dir_missing: no folder on disk
    Clip(2, "EP03_01", 2, 3, 4, "1+2", "surprise", None),
    # path_escapes_root: Filename leaves the subject folder
    Clip(2, "../../etc", 1, 2, 3, "4", "others", None),
    # missing_apex: apex cell blank (NaN)
    Clip(2, "EP01_2", 2, None, 6, "L2+26+38", "others", tuple(range(2, 7))),
    # label_dropped: fear is dropped by emotion5
    Clip(2, "EP13_04", 1, 2, 3, "4+5", "fear", (1, 2, 3)),
    # kept: apex and AU stored as text
    Clip(2, "EP02_01f", 11, "12", 14, "12", "surprise", tuple(range(11, 15))),
    # no_annotation_row: folder on disk, no row in the sheet
    Clip(2, "EP99_99", 1, 2, 3, "", "", (1, 2, 3), sheet=False),
)
CASME2_FILES = {
    "20140508": "CASME2-coding-20140508.xlsx",
    "updated": "CASME2-coding-updated.xlsx",
    "20190701": "CASME2-coding-20190701.xlsx",
}


# The 7 named columns of a CASME II coding sheet, in order (in-memory sheets of the index and parser tests).
CASME2_COLUMNS: tuple[str, ...] = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)


def casme2_sheet(version: str) -> list[list[object]]:
    """Rows of a CASME II coding sheet.

    ``20140508`` / ``20190701``: 9 columns with two unnamed (blank-headed) ones holding stray values, header on
    row 1. ``updated``: 7 columns, a title row above the header, and header names spelt with spaces and other case
    (``Onset Frame``, ``action units``) to exercise name matching.
    """
    rows: list[list[object]] = []
    if version == "updated":
        rows.append(["CASME II coding (updated)"])
        rows.append(
            [
                "Subject",
                "Filename",
                "Onset Frame",
                "Apex Frame",
                "Offset Frame",
                "action units",
                "Estimated emotion",
            ]
        )
        for c in CASME2_CLIPS:
            if c.sheet:
                rows.append([c.subject, c.filename, c.onset, c.apex, c.offset, c.au, c.emotion])
        return rows
    rows.append(
        [
            "Subject",
            "Filename",
            None,
            "OnsetFrame",
            "ApexFrame",
            "OffsetFrame",
            None,
            "Action Units",
            "Estimated Emotion",
        ]
    )
    for c in CASME2_CLIPS:
        if c.sheet:
            rows.append([c.subject, c.filename, "x", c.onset, c.apex, c.offset, 0, c.au, c.emotion])
    return rows


CROPS_SEED_OFFSET = 1000  # provided crops differ in pixels from the raw frame of the same number


def make_casme2(
    root: Path, version: str = "20140508", layout: str = "raw", crops_folder: str = "Cropped"
) -> Fixture:
    """CASME II under ``root``: ``CASME2_RAW_selected/subXX/<Filename>/img<N>.jpg`` (``layout="raw"``),
    ``<crops_folder>/subXX/<Filename>/reg_img<N>.jpg`` (``layout="cropped"``), or both as a full copy holds them
    (``layout="raw+cropped"``: the provided crops, other pixels, beside the raw frames), plus one coding sheet."""
    if layout not in ("raw", "cropped", "raw+cropped"):
        raise ValueError(f"layout must be raw, cropped or raw+cropped, not {layout!r}")
    for c in CASME2_CLIPS:
        if c.frames is None:
            continue
        clip = Path(f"sub{c.subject:02d}") / c.filename
        if layout != "cropped":
            write_frames(root / "CASME2_RAW_selected" / clip, c.frames, "img{}.jpg", c.corrupt)
        if layout != "raw":
            offset = CROPS_SEED_OFFSET if layout == "raw+cropped" else 0
            write_frames(root / crops_folder / clip, c.frames, "reg_img{}.jpg", c.corrupt, seed_offset=offset)
    write_xlsx(root / CASME2_FILES[version], casme2_sheet(version))
    return Fixture(root, {("casme2", f"sub{c.subject:02d}", c.filename) for c in CASME2_CLIPS})


# ------------------------------------------------------------------------------------------------------ SAMM
# Under label set emotion5, default options, without corrections (with the project's corrections table 028_4_1
# gets apex 1105 and is kept, apex_source "corrected").
SAMM_CLIPS: tuple[Clip, ...] = (
    Clip("006", "006_1_2", 100, 102, 104, "4+7", "Anger", tuple(range(100, 105))),  # kept
    Clip(
        6, "006_1_3", 200, 201, 203, "(R6 or R12)+R15", "Happiness", tuple(range(200, 204))
    ),  # kept; int subject
    Clip(
        "006", "006_2_1", 300, None, 303, "R14A or 17A or 24A", "Other", tuple(range(300, 304))
    ),  # missing_apex
    Clip("028", "028_4_1", 1100, None, 1110, "14", "Contempt", tuple(range(1100, 1111))),  # missing_apex
    Clip("007", "007_3_1", 50, 52, 54, "9+10", "Disgust", tuple(range(50, 55))),  # label_dropped (emotion5)
    Clip("007", "007_6_1", 60, 61, 62, "12 ", "Other", (60, 61, 62)),  # kept; "Other" -> others
)
SAMM_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Type",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
]


def samm_sheet(preamble: int) -> list[list[object]]:
    """SAMM sheet with ``preamble`` rows above the header (13 in SAMM_Micro_FACS_Codes_v2, 1 in the 2018 file)."""
    rows: list[list[object]] = [["SAMM micro-movement dataset: FACS codes"]]
    for k in range(1, preamble):
        rows.append([] if k % 3 == 0 else [f"note {k}: see Davison et al. for the coding procedure"])
    rows.append(list(SAMM_HEADER))
    for c in SAMM_CLIPS:
        duration = c.offset - c.onset + 1
        rows.append(
            [
                c.subject,
                c.filename,
                1,
                c.onset,
                c.apex,
                c.offset,
                duration,
                "Micro - 1/2",
                c.au,
                c.emotion,
                7,
                None,
            ]
        )
    return rows


def make_samm(root: Path, preamble: int = 13) -> Fixture:
    """SAMM under ``root``: ``SAMM/<subject>/<Filename>/<subject>_<NNNNN>.jpg`` plus the sheet."""
    for c in SAMM_CLIPS:
        subject = f"{int(c.subject):03d}"
        write_frames(root / "SAMM" / subject / c.filename, c.frames, f"{subject}_{{:05d}}.jpg")
    name = "SAMM_Micro_FACS_Codes_v2.xlsx" if preamble == 13 else "SAMM_20181215_Micro_FACS_Codes_v2.xlsx"
    write_xlsx(root / name, samm_sheet(preamble))
    return Fixture(root, {("samm", f"{int(c.subject):03d}", c.filename) for c in SAMM_CLIPS})


# ------------------------------------------------------------------------------------------------------ SMIC
# (disk subject folder, emotion folder, clip folder, frame numbers). Under label set megc3: 3 kept, 1 not_micro.
SMIC_CLIPS: tuple[tuple[str, str, str, tuple[int, ...]], ...] = (
    ("s1", "micro/negative", "s1_ne_01", tuple(range(46531, 46536))),  # kept, apex = midpoint 46533
    ("s1", "micro/positive", "s1_po_01", tuple(range(1201, 1205))),  # kept, apex = midpoint 1202
    ("s2", "micro/surprise", "s2_sur_01", tuple(range(7, 13))),  # kept, apex = midpoint 9
    ("s1", "non_micro/negative", "s1_ne_09", (1, 2, 3)),  # not_micro
)


def make_smic(root: Path, variant: str = "HS", ext: str = ".bmp") -> Fixture:
    """SMIC under ``root``: ``<variant>/s1/micro/<emotion>/s1_ne_01/image<6 digits><ext>`` (no annotation file)."""
    dataset = f"smic_{variant.lower()}"
    for subject, kind, clip, frames in SMIC_CLIPS:
        write_frames(root / variant / subject / kind / clip, frames, "image{:06d}" + ext)
    return Fixture(root, {(dataset, f"s{int(s[1:]):02d}", clip) for s, _, clip, _ in SMIC_CLIPS})


# ------------------------------------------------------------------------------------------------------ MMEW
# Under label set mmew4 (happiness, surprise, disgust, others; anger dropped): 3 kept, 1 label_dropped.
MMEW_CLIPS: tuple[Clip, ...] = (
    Clip(1, "S01-01-001", 1, 3, 5, "12L", "happiness", tuple(range(1, 6))),  # kept; suffix laterality
    Clip(1, "S01-02-001", 1, 2, 4, "4R+7", "surprise", tuple(range(1, 5))),  # kept
    Clip(
        2, "S02-04-001", 1, 3, 6, "L10", "others", tuple(range(1, 7)), extra={"remarks": "eye blink"}
    ),  # kept
    Clip(2, "S02-07-001", 1, 2, 3, 7, "anger", (1, 2, 3)),  # label_dropped (mmew4)
)


def make_mmew(root: Path) -> Fixture:
    """MMEW under ``root``: ``Micro_Expression/<emotion>/<Filename>/<n>.jpg``, a ``Macro_Expression`` folder that
    must be ignored, and ``MMEW_Micro_Exp.xlsx``."""
    rows: list[list[object]] = [
        [
            "Subject",
            "Filename",
            "OnsetFrame",
            "ApexFrame",
            "OffsetFrame",
            "Action Units",
            "Estimated Emotion",
            "remarks",
        ]
    ]
    for c in MMEW_CLIPS:
        write_frames(root / "Micro_Expression" / c.emotion / c.filename, c.frames, "{}.jpg")
        rows.append(
            [c.subject, c.filename, c.onset, c.apex, c.offset, c.au, c.emotion, c.extra.get("remarks")]
        )
    write_frames(root / "Macro_Expression" / "happiness" / "S01-01-001", (1, 2, 3), "{}.jpg")
    write_xlsx(root / "MMEW_Micro_Exp.xlsx", rows)
    return Fixture(root, {("mmew", f"S{c.subject:02d}", c.filename) for c in MMEW_CLIPS})


# ------------------------------------------------------------------------------------------------------ CAS(ME)^3 A
# Rows of cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx with the clip id the parser must give, and the frames of
# each recording folder. Under label set casme3_7: 4 kept, 1 apex_outside_range, plus 1 no_annotation_row
# (recording spNO.2/c has no micro-expression row; full layout only).
CASME3_ROWS: tuple[tuple[str, str, int, int, int, object, str, str, str], ...] = (
    # subject, letter, onset, apex, offset, AU, objective class, emotion, expected clip id
    ("spNO.1", "a", 2, 4, 6, 4, "III", "disgust", "a"),  # kept
    ("spNO.1", "a", 10, 12, 15, "L2", "VII", "Surprise", "a2"),  # kept
    ("spNO.1", "a", 20, 22, 25, 12, "I", "happy", "a3"),  # kept, frame 23 dropped -> missing_frames [23]
    ("spNO.1", "b", 3, 5, 8, 14, "VII", "Others", "b"),  # kept
    ("spNO.2", "a", 5, 3, 9, 4, "III", "disgust", "a"),  # apex_outside_range (apex before onset)
)
CASME3_RECORDINGS: dict[tuple[str, str], tuple[int, ...]] = {
    ("spNO.1", "a"): tuple(n for n in range(1, 31) if n != 23),
    ("spNO.1", "b"): tuple(range(1, 11)),
    ("spNO.2", "a"): tuple(range(1, 11)),
    ("spNO.2", "c"): tuple(range(1, 6)),
}
CASME3_FILE = "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"


def make_casme3(root: Path, layout: str = "full") -> Fixture:
    """CAS(ME)^3 part A under ``root``: ``part_A/<spNO.N>/<letter>/color/<n>.jpg`` (+ ``depth/`` PNGs that
    must be ignored) for ``layout="full"``; MEB's ME-only copy ``ME_A/<spNO.N>/<clip id>/color/<n>.jpg`` (onset..
    offset only, dropped frames kept dropped) for ``layout="me_only"``."""
    rows: list[list[object]] = [
        ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]
    ]
    for subject, letter, onset, apex, offset, au, objective, emotion, _ in CASME3_ROWS:
        rows.append([subject, letter, onset, apex, offset, au, objective, emotion])
    write_xlsx(root / CASME3_FILE, rows)
    keys = {("casme3_a", r[0], r[8]) for r in CASME3_ROWS}
    if layout == "full":
        for (subject, letter), frames in CASME3_RECORDINGS.items():
            write_frames(root / "part_A" / subject / letter / "color", frames, "{}.jpg")
            write_frames(root / "part_A" / subject / letter / "depth", frames[:2], "{}.png")
        keys.add(("casme3_a", "spNO.2", "c"))
    else:
        for subject, letter, onset, _, offset, *_, clip in CASME3_ROWS:
            recording = CASME3_RECORDINGS[(subject, letter)]
            frames = tuple(n for n in recording if onset <= n <= offset)
            write_frames(root / "ME_A" / subject / clip / "color", frames, "{}.jpg")
    return Fixture(root, keys)


# ------------------------------------------------------------------------------------------------------ MEGC2019
# Ground-truth rows (db, subject, filename, label) over the CASME II, SAMM and SMIC-HS fixtures above.
MEGC_GT: tuple[tuple[str, str, str, int], ...] = (
    ("casme2", "sub01", "EP02_01f", 1),  # kept (positive)
    ("casme2", "sub02", "EP06_02_01", 0),  # kept (negative), missing_frames [13]
    ("casme2", "sub02", "EP03_01", 2),  # matched, but no folder on disk -> clip_dir_missing
    ("casme2", "sub02", "EP77_01", 0),  # nothing on disk or in the sheet -> gt_row_unmatched
    ("casme2", "sub02", "EP13_04", 2),  # kept (surprise) although its emotion cell (fear) is dropped by megc3
    ("samm", "6", "006_1_2", 0),  # kept; GT writes SAMM subject 006 as 6
    ("samm", "6", "006_1_3", 1),  # kept
    ("smic", "s01", "s01_ne_01", 0),  # kept; disk s1/.../s1_ne_01
    ("smic", "s01", "s01_po_01", 1),  # kept
    ("smic", "s02", "s02_sur_01", 2),  # kept
)
# Outcome under label set megc3 (the default) with default options: 8 kept (negative 3, positive 3, surprise 2);
# exclusions: not_in_ground_truth 9 (casme2 5 of its 9 sheet rows, samm 4 of 6), no_annotation_row 1 (casme2
# EP99_99), not_micro 1 (smic), gt_row_unmatched 1 (EP77_01), clip_dir_missing 1 (EP03_01).
MEGC_GT_NOT_KEPT: dict[tuple[str, str], str] = {
    ("sub02", "EP03_01"): "clip_dir_missing",
    ("sub02", "EP77_01"): "gt_row_unmatched",
}


def make_megc2019(base: Path, blank_lines: bool = False) -> tuple[dict[str, Path], set[Key]]:
    """Four raw roots under ``base`` (``megc2019`` with the GT CSV, plus ``casme2``, ``samm``, ``smic_hs``) and
    the raw-sample keys of the three members; ``blank_lines`` writes the ``combined_3class_gt-2.csv`` form with
    ``,,,`` lines between rows."""
    roots = {name: base / name for name in ("megc2019", "casme2", "samm", "smic_hs")}
    keys = make_casme2(roots["casme2"]).raw_keys | make_samm(roots["samm"]).raw_keys
    keys |= make_smic(roots["smic_hs"]).raw_keys
    lines = []
    for db, subject, filename, label in MEGC_GT:
        lines.append(f"{db},{subject},{filename},{label}")
        if blank_lines:
            lines.append(",,,")
    name = "combined_3class_gt-2.csv" if blank_lines else "combined_3class_gt.csv"
    roots["megc2019"].mkdir(parents=True)
    (roots["megc2019"] / name).write_text("\n".join(lines) + "\n")
    return roots, keys
