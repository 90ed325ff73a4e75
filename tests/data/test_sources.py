"""Per-dataset parsers on format-faithful fixtures (tests/data/fixtures.py): layouts, versions and quirks."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from microexpr.data.records import RawDataError, Snapshot
from microexpr.data.sources import get_source
from microexpr.datasets.raw_source import RawDatasetSource, read_snapshot
from tests.data import fixtures as fx


def parse(name: str, root: Path, **options):
    spec = get_source(name)
    return spec.parser()(read_snapshot(spec, root), {**spec.options, **options})


def by_clip(candidates):
    return {(c.subject, c.clip): c for c in candidates}


# ------------------------------------------------------------------------------------------------------ CASME II
@pytest.mark.parametrize(
    ("version", "first_data_row"),
    [("20140508", 2), ("updated", 3), ("20190701", 2)],  # "updated" has a title row above its header
)
def test_casme2_header_found_in_every_version(tmp_path, version, first_data_row):
    fx.make_casme2(tmp_path, version)
    candidates, exclusions = parse("casme2", tmp_path)
    # 9 sheet rows -> 9 candidates; folder sub02/EP99_99 has no row -> 1 exclusion
    assert len(candidates) == 9
    assert [(e.subject, e.clip, e.reason_code) for e in exclusions] == [
        ("sub02", "EP99_99", "no_annotation_row")
    ]
    first = candidates[0]
    assert (first.subject, first.clip, first.annotation_row) == ("sub01", "EP02_01f", first_data_row)
    assert first.annotation_file == fx.CASME2_FILES[version]
    assert first.source == f"{fx.CASME2_FILES[version]} row {first_data_row}"
    # the two unnamed columns (stray "x" and 0 in 20140508/20190701) are never read as a field
    assert (first.onset, first.apex, first.offset, first.au_raw, first.emotion_raw) == (
        8,
        10,
        12,
        "4",
        "happiness",
    )


def test_casme2_cells_missing_apex_and_int_vs_str(tmp_path):
    fx.make_casme2(tmp_path)
    clips = by_clip(parse("casme2", tmp_path)[0])
    assert clips[("sub01", "EP19_05f")].apex is None  # "/"
    assert clips[("sub02", "EP01_2")].apex is None  # blank cell
    assert clips[("sub02", "EP02_01f")].apex == 12  # text "12"
    assert clips[("sub01", "EP02_01f")].au_raw == "4"  # int cell
    assert clips[("sub02", "EP02_01f")].au_raw == "12"  # text cell
    assert clips[("sub01", "EP02_01f")].fold_subject == "casme2/sub01"
    assert clips[("sub01", "EP02_01f")].fps == 200.0


def test_casme2_frames_sorted_by_number_not_name(tmp_path):
    fx.make_casme2(tmp_path)
    clip = by_clip(parse("casme2", tmp_path)[0])[("sub01", "EP02_01f")]
    names = [f.name for _, f in clip.frames]
    assert [n for n, _ in clip.frames] == [8, 9, 10, 11, 12]
    assert names == ["img8.jpg", "img9.jpg", "img10.jpg", "img11.jpg", "img12.jpg"]
    assert sorted(names) != names  # a name sort would be wrong here


def test_casme2_missing_folder_and_path_escape(tmp_path):
    fx.make_casme2(tmp_path)
    clips = by_clip(parse("casme2", tmp_path)[0])
    missing = clips[("sub02", "EP03_01")]
    assert missing.clip_dir is None and "not found" in missing.clip_dir_problem
    escaping = clips[("sub02", "../../etc")]
    assert escaping.clip_dir is None
    assert escaping.clip_dir_problem.startswith("path escapes the dataset root")
    assert escaping.frames == []


def test_casme2_cropped_layout(tmp_path):
    fx.make_casme2(tmp_path, layout="cropped")
    clip = by_clip(parse("casme2", tmp_path)[0])[("sub01", "EP02_01f")]
    assert clip.clip_dir == "Cropped/sub01/EP02_01f"
    assert [f.name for _, f in clip.frames][0] == "reg_img8.jpg"


def test_casme2_raw_preferred_over_cropped_unless_asked(tmp_path, caplog):
    fx.make_casme2(tmp_path, layout="raw")
    fx.make_casme2(tmp_path, layout="cropped")
    with caplog.at_level(logging.WARNING):
        raw = by_clip(parse("casme2", tmp_path)[0])
    assert raw[("sub01", "EP02_01f")].clip_dir.startswith("CASME2_RAW_selected/")
    assert "frames_dir" in caplog.text
    cropped = by_clip(parse("casme2", tmp_path, frames_dir="Cropped")[0])
    assert cropped[("sub01", "EP02_01f")].clip_dir.startswith("Cropped/")


def test_casme2_newest_version_chosen_and_logged(tmp_path, caplog):
    for version in ("20140508", "updated", "20190701"):
        fx.make_casme2(tmp_path, version)
    with caplog.at_level(logging.WARNING):
        candidates, _ = parse("casme2", tmp_path)
    assert {c.annotation_file for c in candidates} == {"CASME2-coding-20190701.xlsx"}
    assert "several annotation versions" in caplog.text
    chosen, _ = parse("casme2", tmp_path, annotation_file="casme2-coding-updated.xlsx")
    assert {c.annotation_file for c in chosen} == {"CASME2-coding-updated.xlsx"}


def _cells(rows: list[list[object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=object)


def test_casme2_xls_version_ranked_in_memory():
    """CASME2_label_Ver_2.xls cannot be written here (no xlwt), so its table is given as raw cells: it must rank
    above 20140508 and below 20190701/-updated, and the option must override the ranking."""
    header = list(fx.CASME2_COLUMNS)
    tables = {
        "CASME2-coding-20140508.xlsx": _cells([header, [1, "EP01", 1, 2, 3, "4", "disgust"]]),
        "CASME2_label_Ver_2.xls": _cells(
            [header, [1, "EP01", 1, 2, 3, "4", "disgust"], [2, "EP02", 1, 2, 3, 4, "others"]]
        ),
    }
    snapshot = Snapshot(dataset="casme2", root="/nowhere", tables=tables)
    candidates, _ = get_source("casme2").parser()(snapshot, {})
    assert [(c.annotation_file, c.subject) for c in candidates] == [
        ("CASME2_label_Ver_2.xls", "sub01"),
        ("CASME2_label_Ver_2.xls", "sub02"),
    ]
    assert all(c.clip_dir is None and "not found" in c.clip_dir_problem for c in candidates)
    older, _ = get_source("casme2").parser()(snapshot, {"annotation_file": "CASME2-coding-20140508.xlsx"})
    assert len(older) == 1


def test_casme2_errors_name_the_problem(tmp_path):
    fx.write_frames(tmp_path / "CASME2_RAW_selected" / "sub01" / "EP01", (1, 2), "img{}.jpg")
    with pytest.raises(RawDataError, match="no annotation file"):
        parse("casme2", tmp_path)
    fx.make_casme2(tmp_path)
    with pytest.raises(RawDataError, match="nope.xlsx"):
        parse("casme2", tmp_path, annotation_file="nope.xlsx")
    with pytest.raises(ValueError, match="annotaton_file"):
        parse("casme2", tmp_path, annotaton_file="x")


def test_synthetic_reads_casme2_layout_under_its_own_name(tmp_path):
    fx.make_casme2(tmp_path)
    candidates, exclusions = parse("synthetic", tmp_path)
    assert {c.dataset for c in candidates} == {"synthetic"}
    assert candidates[0].fold_subject == "synthetic/sub01"
    assert {e.dataset for e in exclusions} == {"synthetic"}


# ------------------------------------------------------------------------------------------------------ SAMM
@pytest.mark.parametrize(("preamble", "first_data_row"), [(13, 15), (1, 3)])
def test_samm_preamble_detected(tmp_path, preamble, first_data_row):
    fx.make_samm(tmp_path, preamble)
    candidates, exclusions = parse("samm", tmp_path)
    assert exclusions == []
    assert [(c.subject, c.clip) for c in candidates] == [
        ("006", "006_1_2"), ("006", "006_1_3"), ("006", "006_2_1"), ("028", "028_4_1"), ("007", "007_3_1"),
        ("007", "007_6_1"),
    ]  # fmt: skip
    assert candidates[0].annotation_row == first_data_row
    int_subject = candidates[1]  # Subject stored as the int 6
    assert int_subject.clip_dir == "SAMM/006/006_1_3" and int_subject.fold_subject == "samm/006"
    assert [n for n, _ in int_subject.frames] == [200, 201, 202, 203]
    assert candidates[2].apex is None and candidates[2].emotion_raw == "Other"
    assert candidates[1].au_raw == "(R6 or R12)+R15"
    assert candidates[0].objective_class == "7"


# ------------------------------------------------------------------------------------------------------ SMIC
def test_smic_hs_folders_give_samples(tmp_path):
    fx.make_smic(tmp_path)
    candidates, exclusions = parse("smic_hs", tmp_path)
    assert [(c.subject, c.clip, c.emotion_raw, c.onset, c.apex, c.offset) for c in candidates] == [
        ("s01", "s1_ne_01", "negative", 46531, None, 46535),
        ("s01", "s1_po_01", "positive", 1201, None, 1204),
        ("s02", "s2_sur_01", "surprise", 7, None, 12),
    ]
    assert {c.fold_subject for c in candidates} == {"smic_hs/s01", "smic_hs/s02"}
    assert {c.fps for c in candidates} == {100.0}
    assert candidates[0].frames[0][1].name == "image046531.bmp"
    assert [(e.subject, e.clip, e.reason_code) for e in exclusions] == [("s01", "s1_ne_09", "not_micro")]


def test_smic_vis_jpg_and_root_at_variant_folder(tmp_path):
    fx.make_smic(tmp_path, variant="VIS", ext=".jpg")
    candidates, _ = parse("smic_vis", tmp_path)
    assert {c.fps for c in candidates} == {25.0} and {c.dataset for c in candidates} == {"smic_vis"}
    at_variant, _ = parse("smic_vis", tmp_path / "VIS")
    assert [c.clip_dir for c in at_variant][0] == "s1/micro/negative/s1_ne_01"
    with pytest.raises(RawDataError, match="NIR"):
        parse("smic_nir", tmp_path)


# ------------------------------------------------------------------------------------------------------ MMEW
def test_mmew_sheet_and_emotion_folders(tmp_path):
    fx.make_mmew(tmp_path)
    candidates, exclusions = parse("mmew", tmp_path)
    assert exclusions == []  # Macro_Expression is not read, so its folder is not reported either
    assert [(c.subject, c.clip, c.clip_dir) for c in candidates][0] == (
        "S01", "S01-01-001", "Micro_Expression/happiness/S01-01-001",
    )  # fmt: skip
    assert [c.au_raw for c in candidates] == ["12L", "4R+7", "L10", "7"]
    assert {c.fps for c in candidates} == {90.0} and {c.onset for c in candidates} == {1}
    assert "annotation remark: eye blink" in candidates[2].notes


# ------------------------------------------------------------------------------------------------------ CAS(ME)^3
def test_casme3_full_layout_unique_clip_ids(tmp_path):
    fx.make_casme3(tmp_path, "full")
    candidates, exclusions = parse("casme3_a", tmp_path)
    assert [(c.subject, c.clip) for c in candidates] == [(r[0], r[8]) for r in fx.CASME3_ROWS]
    assert {c.clip_dir for c in candidates if c.subject == "spNO.1" and c.clip.startswith("a")} == {
        "part_A/spNO.1/a/color"
    }
    assert [c.objective_class for c in candidates] == ["3", "7", "1", "7", "3"]
    assert "recording letter 'a', micro-expression 2" in candidates[1].notes[0]
    assert [(e.subject, e.clip, e.reason_code) for e in exclusions] == [("spNO.2", "c", "no_annotation_row")]
    assert {c.fps for c in candidates} == {30.0}


def test_casme3_me_only_copy(tmp_path):
    fx.make_casme3(tmp_path, "me_only")
    candidates, exclusions = parse("casme3_a", tmp_path)
    assert exclusions == []
    assert [c.clip_dir for c in candidates][:3] == [
        "ME_A/spNO.1/a/color",
        "ME_A/spNO.1/a2/color",
        "ME_A/spNO.1/a3/color",
    ]
    assert [n for n, _ in candidates[2].frames] == [20, 21, 22, 24, 25]  # frame 23 dropped


def test_casme3_macro_rows_do_not_shift_clip_ids():
    header = [
        "Subject",
        "Filename",
        "Onset",
        "Apex",
        "Offset",
        "AU",
        "Objective class",
        "emotion",
        "Expression type",
    ]
    rows = [
        header,
        ["spNO.1", "a", 1, 2, 3, "4", "III", "disgust", "Micro-expression"],
        ["spNO.1", "a", 10, 20, 30, "12", "I", "happy", "Macro-expression"],
        ["spNO.1", "a", 40, 41, 42, "4", "III", "disgust", "Micro-expression"],
    ]
    snapshot = Snapshot(dataset="casme3_a", root="/nowhere", tables={"CAS(ME)3_part_A_v2.xls": _cells(rows)})
    candidates, exclusions = get_source("casme3_a").parser()(snapshot, {})
    assert [c.clip for c in candidates] == ["a", "a2"]
    assert [(e.clip, e.reason_code) for e in exclusions] == [("a:row3", "not_micro")]


# ------------------------------------------------------------------------------------------------------ MEGC2019
def load_megc(roots: dict[str, Path]) -> Snapshot:
    return RawDatasetSource(source="megc2019", roots={k: str(v) for k, v in roots.items()}).load()


def test_megc2019_reconciles_names_and_labels(tmp_path, caplog):
    roots, _ = fx.make_megc2019(tmp_path)
    snapshot = load_megc(roots)
    with caplog.at_level(logging.WARNING):
        candidates, exclusions = get_source("megc2019").parser()(snapshot, {})
    labels = {(c.dataset, c.subject, c.clip): c.label_override for c in candidates}
    assert labels == {
        ("casme2", "sub01", "EP02_01f"): "positive",
        ("casme2", "sub02", "EP06_02_01"): "negative",
        ("casme2", "sub02", "EP03_01"): "surprise",
        ("casme2", "sub02", "EP13_04"): "surprise",
        ("samm", "006", "006_1_2"): "negative",
        ("samm", "006", "006_1_3"): "positive",
        ("smic_hs", "s01", "s1_ne_01"): "negative",
        ("smic_hs", "s01", "s1_po_01"): "positive",
        ("smic_hs", "s02", "s2_sur_01"): "surprise",
    }
    # casme2: 9 sheet rows - 4 in GT = 5; samm: 6 - 2 = 4 -> 9 not_in_ground_truth; members' own exclusions kept
    assert Counter(e.reason_code for e in exclusions) == Counter(
        {"not_in_ground_truth": 9, "no_annotation_row": 1, "not_micro": 1, "gt_row_unmatched": 1}
    )
    unmatched = next(e for e in exclusions if e.reason_code == "gt_row_unmatched")
    assert (unmatched.dataset, unmatched.subject, unmatched.clip) == ("megc2019", "casme2/sub02", "EP77_01")
    assert unmatched.source == "combined_3class_gt.csv line 4"
    assert "442" in caplog.text  # count check against the official file, warning only


def test_megc2019_blank_line_variant_reads_the_same(tmp_path):
    plain, _ = fx.make_megc2019(tmp_path / "a")
    blank, _ = fx.make_megc2019(tmp_path / "b", blank_lines=True)
    parse_megc = get_source("megc2019").parser()
    first, _ = parse_megc(load_megc(plain), {})
    second, excl = parse_megc(load_megc(blank), {})
    assert [(c.key, c.label_override) for c in first] == [(c.key, c.label_override) for c in second]
    unmatched = next(e for e in excl if e.reason_code == "gt_row_unmatched")
    assert unmatched.source == "combined_3class_gt-2.csv line 7"  # blank lines count in line numbers


def test_megc2019_bad_and_repeated_gt_rows(tmp_path):
    roots, _ = fx.make_megc2019(tmp_path)
    gt = roots["megc2019"] / "combined_3class_gt.csv"
    gt.write_text(gt.read_text() + "casme2,sub01,EP02_01f,1\nsmic,s01,s01_ne_01,7\nmystery,1,x,0\n")
    _, exclusions = get_source("megc2019").parser()(load_megc(roots), {})
    codes = Counter(e.reason_code for e in exclusions)
    assert codes["gt_row_duplicate"] == 1 and codes["gt_row_invalid"] == 2


def test_megc2019_without_gt_file_says_where_to_get_it(tmp_path):
    roots, _ = fx.make_megc2019(tmp_path)
    (roots["megc2019"] / "combined_3class_gt.csv").unlink()
    with pytest.raises(RawDataError, match="Facial-Micro-ExpressionGC/MEGC2019"):
        get_source("megc2019").parser()(load_megc(roots), {})
