"""The sample-index builder: golden counts per fixture, one outcome per raw sample, policies, corrections, parquet."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro_datasets.pandas import CSVDataset

from microexpr.data.index import (
    INDEX_COLUMNS,
    CorruptFrameError,
    apply_corrections,
    build_sample_index,
    resolve_options,
)
from microexpr.data.records import EXCLUSION_COLUMNS, FrameFile, Snapshot
from microexpr.data.sources import get_source
from microexpr.datasets.raw_source import RawDatasetSource, read_snapshot
from tests.data import fixtures as fx

PROJECT = Path(__file__).resolve().parents[2]
LABELS = yaml.safe_load((PROJECT / "conf/base/labels.yml").read_text())
CORRECTIONS_CSV = PROJECT / "conf/base/annotation_corrections.csv"


def project_corrections() -> pd.DataFrame:
    """The corrections table as the catalog loads it (pandas.CSVDataset, every cell as text)."""
    return CSVDataset(
        filepath=str(CORRECTIONS_CSV), load_args={"dtype": str, "keep_default_na": False}
    ).load()


def build(name: str, root: Path, label_set: str, corrections=None, **options):
    return build_sample_index(read_snapshot(get_source(name), root), LABELS, label_set, corrections, options)


def keys(frame: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(zip(frame["dataset"], frame["subject"], frame["clip"], strict=True))


def assert_each_raw_sample_once(index: pd.DataFrame, exclusions: pd.DataFrame, raw_keys: set) -> None:
    """Index and exclusions together hold every raw sample of the fixture exactly once."""
    found = keys(index) + [k for k in keys(exclusions) if k[0] != "megc2019"]  # megc2019 rows are GT rows
    assert len(found) == len(set(found)), Counter(found).most_common(3)
    assert set(found) == raw_keys


# Golden outcomes, derived by hand from the fixture tables in tests/data/fixtures.py (see the comment on each row).
GOLDEN = [
    # CASME II, emotion5, defaults: kept EP02_01f x2 + EP06_02_01; missing apex EP19_05f ("/") + EP01_2 (blank);
    # truncated img3 of EP09f; EP03_01 has no folder; ../../etc; fear dropped; EP99_99 folder has no row.
    pytest.param(
        "casme2", lambda p: fx.make_casme2(p), "emotion5", {}, 3,
        {"missing_apex": 2, "corrupt_frame": 1, "clip_dir_missing": 1, "path_escapes_root": 1, "label_dropped": 1,
         "no_annotation_row": 1},
        id="casme2",
    ),
    # same with midpoint apexes: EP19_05f and EP01_2 are kept too
    pytest.param(
        "casme2", lambda p: fx.make_casme2(p, "updated"), "emotion5", {"missing_apex": "midpoint"}, 5,
        {"corrupt_frame": 1, "clip_dir_missing": 1, "path_escapes_root": 1, "label_dropped": 1, "no_annotation_row": 1},
        id="casme2-midpoint",
    ),
    # missing_frames: exclude drops EP06_02_01 (img13 missing)
    pytest.param(
        "casme2", lambda p: fx.make_casme2(p), "emotion5", {"missing_frames": "exclude"}, 2,
        {"missing_apex": 2, "corrupt_frame": 1, "clip_dir_missing": 1, "path_escapes_root": 1, "label_dropped": 1,
         "no_annotation_row": 1, "missing_frames": 1},
        id="casme2-missing-frames-exclude",
    ),
    # SAMM, emotion5, no corrections: 006_2_1 and 028_4_1 have no apex; Disgust is dropped by emotion5
    pytest.param(
        "samm", lambda p: fx.make_samm(p), "emotion5", {}, 3, {"missing_apex": 2, "label_dropped": 1}, id="samm",
    ),
    # SAMM, megc3: the two "Other" rows are dropped (label checked before apex), 028_4_1 has no apex, Disgust kept
    pytest.param(
        "samm", lambda p: fx.make_samm(p, preamble=1), "megc3", {}, 3, {"label_dropped": 2, "missing_apex": 1},
        id="samm-megc3",
    ),
    # SMIC-HS, megc3: 3 micro clips kept with midpoint apexes; the non_micro folder excluded
    pytest.param("smic_hs", lambda p: fx.make_smic(p), "megc3", {}, 3, {"not_micro": 1}, id="smic_hs"),
    # SMIC-HS with the per-dataset midpoint override removed: no apex anywhere -> all 3 excluded
    pytest.param(
        "smic_hs", lambda p: fx.make_smic(p), "megc3", {"missing_apex_by_dataset": {}}, 0,
        {"missing_apex": 3, "not_micro": 1},
        id="smic_hs-no-override",
    ),
    # MMEW, mmew4: anger dropped
    pytest.param("mmew", lambda p: fx.make_mmew(p), "mmew4", {}, 3, {"label_dropped": 1}, id="mmew"),
    # CAS(ME)^3 A full release, casme3_7: spNO.2/a apex before onset; recording spNO.2/c has no row
    pytest.param(
        "casme3_a", lambda p: fx.make_casme3(p, "full"), "casme3_7", {}, 4,
        {"apex_outside_range": 1, "no_annotation_row": 1},
        id="casme3-full",
    ),
    # CAS(ME)^3 A ME-only copy: same rows, no unannotated recording folder
    pytest.param(
        "casme3_a", lambda p: fx.make_casme3(p, "me_only"), "casme3_7", {}, 4, {"apex_outside_range": 1},
        id="casme3-me-only",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "label_set", "options", "kept", "reasons"), GOLDEN)
def test_golden_counts(tmp_path, name, make, label_set, options, kept, reasons):
    fixture = make(tmp_path)
    index, exclusions = build(name, tmp_path, label_set, **options)
    assert len(index) == kept
    assert Counter(exclusions["reason_code"]) == Counter(reasons)
    assert_each_raw_sample_once(index, exclusions, fixture.raw_keys)
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert list(exclusions.columns) == list(EXCLUSION_COLUMNS)


@pytest.mark.parametrize("blank_lines", [False, True])
def test_golden_counts_megc2019(tmp_path, blank_lines):
    """No label set given: the composite's default (megc3); 8 kept; exclusions as listed under MEGC_GT."""
    roots, raw_keys = fx.make_megc2019(tmp_path, blank_lines)
    snapshot = RawDatasetSource(source="megc2019", roots={k: str(v) for k, v in roots.items()}).load()
    index, exclusions = build_sample_index(snapshot, LABELS, None, None, {})
    assert len(index) == 8 and set(index["label_set"]) == {"megc3"}
    assert Counter(exclusions["reason_code"]) == Counter(
        {
            "not_in_ground_truth": 9,
            "no_annotation_row": 1,
            "not_micro": 1,
            "gt_row_unmatched": 1,
            "clip_dir_missing": 1,
        }
    )
    assert_each_raw_sample_once(index, exclusions, raw_keys)
    rows = index.set_index("sample_id")
    assert rows.loc["casme2/sub01/EP02_01f", "label"] == "positive"
    assert rows.loc["samm/006/006_1_2", "fold_subject"] == "samm/006"
    assert rows.loc["smic_hs/s01/s1_ne_01", "root"] == str(roots["smic_hs"].resolve())
    assert rows.loc["smic_hs/s02/s2_sur_01", "apex_source"] == "midpoint"
    # the GT keeps as surprise a clip whose emotion cell (fear) megc3's CASME II rule drops; the note says so
    assert rows.loc["casme2/sub02/EP13_04", "label"] == "surprise"
    assert any("'fear'" in note and "label_dropped" in note for note in rows.loc["casme2/sub02/EP13_04", "notes"])


def test_index_row_contents(tmp_path):
    fx.make_casme2(tmp_path)
    index, _ = build("casme2", tmp_path, "emotion5")
    row = index.set_index("sample_id").loc["casme2/sub01/EP02_01f"]
    assert row["root"] == str(tmp_path.resolve())
    assert list(row["frame_numbers"]) == [8, 9, 10, 11, 12]
    assert list(row["frame_paths"])[0] == "CASME2_RAW_selected/sub01/EP02_01f/img8.jpg"
    assert (row["onset"], row["apex"], row["offset"], row["apex_source"]) == (8, 10, 12, "annotated")
    assert (row["au_raw"], list(row["au_codes"]), row["label"], row["label_id"]) == ("4", [4], "happiness", 0)
    assert (row["annotation_file"], row["annotation_row"]) == ("CASME2-coding-20140508.xlsx", 2)
    assert row["fold_subject"] == "casme2/sub01" and row["fps"] == 200.0


def test_frame_missing_in_range_is_kept_and_listed(tmp_path):
    fx.make_casme2(tmp_path)
    index, _ = build("casme2", tmp_path, "emotion5")
    row = index.set_index("sample_id").loc["casme2/sub02/EP06_02_01"]
    assert list(row["missing_frames"]) == [13]
    assert list(row["frame_numbers"]) == [10, 11, 12, 14, 15] and row["n_frames"] == 5


def test_frames_sliced_to_onset_offset(tmp_path):
    fx.make_casme3(tmp_path, "full")
    index, _ = build("casme3_a", tmp_path, "casme3_7")
    row = index.set_index("sample_id").loc["casme3_a/spNO.1/a3"]
    assert list(row["frame_numbers"]) == [20, 21, 22, 24, 25] and list(row["missing_frames"]) == [23]
    assert list(row["frame_paths"])[-1] == "part_A/spNO.1/a/color/25.jpg"


def test_corrupt_frame_error_names_sample_and_file(tmp_path):
    fx.make_casme2(tmp_path)
    with pytest.raises(CorruptFrameError) as err:
        build("casme2", tmp_path, "emotion5", on_corrupt_frame="error")
    message = str(err.value)
    assert "casme2/sub01/EP09f" in message
    assert str(tmp_path.resolve() / "CASME2_RAW_selected/sub01/EP09f/img3.jpg") in message
    assert "truncated JPEG" in message


def test_corrupt_frame_and_path_escape_exclusions_explain(tmp_path):
    fx.make_casme2(tmp_path)
    _, exclusions = build("casme2", tmp_path, "emotion5")
    reasons = exclusions.set_index("clip")
    assert "EP09f/img3.jpg" in reasons.loc["EP09f", "reason"]
    assert reasons.loc["../../etc", "reason_code"] == "path_escapes_root"
    assert "'../../etc'" in reasons.loc["../../etc", "reason"]
    assert reasons.loc["EP19_05f", "reason"].endswith("need it (missing_apex: exclude)")


def test_parquet_round_trip(tmp_path):
    fx.make_casme2(tmp_path / "raw")
    fx.make_smic(
        tmp_path / "smic"
    )  # every list column of this index is empty in some column (au, corrections)
    for name, root in (("casme2", tmp_path / "raw"), ("smic_hs", tmp_path / "smic")):
        index, exclusions = build(name, root, "emotion5" if name == "casme2" else "megc3")
        index.to_parquet(tmp_path / f"{name}.parquet")
        exclusions.to_parquet(tmp_path / f"{name}_x.parquet")
        back = pd.read_parquet(tmp_path / f"{name}.parquet")
        assert list(back.columns) == list(INDEX_COLUMNS)
        for col in INDEX_COLUMNS:
            assert [
                list(v) if hasattr(v, "__len__") and not isinstance(v, str) else v for v in back[col]
            ] == [list(v) if isinstance(v, list) else v for v in index[col]], col
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}_x.parquet"), exclusions)


def test_deterministic_order(tmp_path):
    fx.make_casme2(tmp_path)
    first, first_x = build("casme2", tmp_path, "emotion5")
    second, second_x = build("casme2", tmp_path, "emotion5")
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(first_x, second_x)
    assert keys(first) == sorted(keys(first), key=lambda k: (k[0], f"{k[0]}/{k[1]}", k[2]))


# ------------------------------------------------------------------------------------------------------ corrections
def test_project_corrections_fix_samm_apex(tmp_path):
    fx.make_samm(tmp_path)
    index, exclusions = build("samm", tmp_path, "emotion5", project_corrections())
    # golden: the corrected 028_4_1 is kept -> 4 kept, 006_2_1 still has no apex, Disgust dropped
    assert len(index) == 4
    assert Counter(exclusions["reason_code"]) == Counter({"missing_apex": 1, "label_dropped": 1})
    row = index.set_index("sample_id").loc["samm/028/028_4_1"]
    assert (row["apex"], row["apex_source"]) == (1105, "corrected")
    assert (
        len(row["corrections"]) == 1 and "apex: None -> 1105 (source: tvaranka/meb" in row["corrections"][0]
    )


def test_correction_matching_nothing_warns(tmp_path, caplog):
    fx.make_samm(tmp_path)
    corrections = pd.DataFrame(
        [
            ["samm", "006", "006_9_9", "apex", "3", "test", ""],  # no such sample: warned
            ["casme2", "sub01", "EP01", "apex", "3", "test", ""],  # another dataset: not warned
        ],
        columns=["dataset", "subject", "clip", "field", "value", "source", "note"],
    )
    with caplog.at_level(logging.WARNING):
        build("samm", tmp_path, "emotion5", corrections)
    assert "006_9_9" in caplog.text and "matches no sample" in caplog.text
    assert "EP01" not in caplog.text


def test_corrections_match_numeric_subject_and_change_labels(tmp_path):
    fx.make_samm(tmp_path)
    corrections = pd.DataFrame(
        {"dataset": ["samm"], "subject": [7], "clip": ["007_3_1"], "field": ["emotion"], "value": ["Anger"],
         "source": ["test"], "note": [None]}
    )  # fmt: skip
    index, _ = build("samm", tmp_path, "emotion5", corrections)
    row = index.set_index("sample_id").loc["samm/007/007_3_1"]
    assert (row["emotion_raw"], row["label"]) == ("Anger", "anger")
    assert list(row["corrections"]) == ["emotion: 'Disgust' -> 'Anger' (source: test)"]


def test_bad_corrections_are_refused():
    bad = pd.DataFrame(
        [
            ["samm", "006", "006_1_2", "frame", "3", "x", ""],
            ["samm", "006", "006_1_2", "apex", "late", "", ""],
        ],
        columns=["dataset", "subject", "clip", "field", "value", "source", "note"],
    )
    with pytest.raises(ValueError, match=r"line 2: field 'frame'.*line 3: apex value 'late'.*line 3: source"):
        apply_corrections([], bad)
    with pytest.raises(ValueError, match="lacks column"):
        apply_corrections([], pd.DataFrame({"dataset": []}))


# ------------------------------------------------------------------------------------------------------ policies
HEADER = list(fx.CASME2_COLUMNS)


def sheet_snapshot(rows: list[list[object]], folders: dict[str, list[str]]) -> Snapshot:
    """A CASME II snapshot in memory (the builder never reads files): sheet rows + ``sub01/<clip>`` file names."""
    dirs = {
        f"CASME2_RAW_selected/sub01/{clip}": [
            FrameFile(f"CASME2_RAW_selected/sub01/{clip}/{n}", 10) for n in names
        ]
        for clip, names in folders.items()
    }
    table = pd.DataFrame([HEADER, *rows], dtype=object)
    return Snapshot("casme2", "/data/casme2", tables={"CASME2-coding-20140508.xlsx": table}, dirs=dirs)


def imgs(*numbers: int) -> list[str]:
    return [f"img{n}.jpg" for n in numbers]


def test_policies_on_edge_cases(caplog):
    snapshot = sheet_snapshot(
        [
            [1, "A", 1, 2, 4, "4", "disgust"],  # onset frame 1 missing on disk -> onset_frame_missing
            [1, "B", 1, 3, 4, "4", "disgust"],  # apex frame 3 missing -> apex_frame_missing
            [1, "C", 5, 6, 2, "4", "disgust"],  # onset after offset
            [1, "D", None, 6, 9, "4", "disgust"],  # no onset
            [1, "E", 1, 2, 3, "4", "disgust"],  # img2.jpg and img02.jpg -> duplicate_frame_number
            [1, "F", 1, 2, 3, "4", "bewildered"],  # unknown_emotion (from the label set)
            [1, "G", 1, 2, 3, "R14+17+soft focus", "disgust"],  # kept, AU free text kept as unparsed
            [1, "G", 1, 2, 3, "4", "disgust"],  # same sample id again -> duplicate
            [1, "H", 50, 60, 70, "4", "disgust"],  # folder frames 1..3 only -> no_frames_in_range
            [1, "I", 1, "later", 5, "4", "disgust"],  # unreadable apex -> missing apex, with midpoint 3 missing -> 2
        ],
        {
            "A": imgs(2, 3, 4), "B": imgs(1, 2, 4), "C": imgs(1), "D": imgs(6), "E": ["img1.jpg", "img2.jpg",
            "img02.jpg", "img3.jpg"], "F": imgs(1, 2, 3), "G": imgs(1, 2, 3), "H": imgs(1, 2, 3), "I": imgs(1, 2, 4, 5),
        },
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        index, exclusions = build_sample_index(
            snapshot, LABELS, "emotion5", None, {"missing_apex": "midpoint"}
        )
    reasons = dict(zip(exclusions["clip"], exclusions["reason_code"], strict=True))
    assert reasons == {
        "A": "onset_frame_missing", "B": "apex_frame_missing", "C": "onset_after_offset", "D": "missing_onset_offset",
        "E": "duplicate_frame_number", "F": "unknown_emotion", "G": "duplicate", "H": "no_frames_in_range",
    }  # fmt: skip
    kept = index.set_index("clip")
    assert list(kept.index) == ["G", "I"]
    assert list(kept.loc["G", "au_unparsed"]) and "unparsed" in caplog.text.lower()
    assert (kept.loc["I", "apex"], kept.loc["I", "apex_source"], list(kept.loc["I", "missing_frames"])) == (
        2, "midpoint", [3],
    )  # fmt: skip
    assert any("not a frame number" in n for n in kept.loc["I", "notes"])
    assert pd.isna(kept.loc["G", "objective_class"])


def test_options_are_validated():
    assert resolve_options(None)["missing_apex_by_dataset"]["smic_hs"] == "midpoint"
    with pytest.raises(ValueError, match="missing_apexx"):
        resolve_options({"missing_apexx": "exclude"})
    with pytest.raises(ValueError, match="on_corrupt_frame"):
        resolve_options({"on_corrupt_frame": "ignore"})
    with pytest.raises(ValueError, match="missing_apex_by_dataset.samm"):
        resolve_options({"missing_apex_by_dataset": {"samm": "guess"}})
    with pytest.raises(ValueError, match="'sub18' is not '<dataset>/<subject>'"):
        resolve_options({"exclude_subjects": {"sub18": "reference"}})
    with pytest.raises(ValueError, match="casme2/sub18: give the reason"):
        resolve_options({"exclude_subjects": {"casme2/sub18": " "}})
    with pytest.raises(ValueError, match="must map fold subjects"):
        resolve_options({"exclude_subjects": ["casme2/sub18"]})
    with pytest.raises(ValueError, match="warn_label_excluded_fraction"):
        resolve_options({"warn_label_excluded_fraction": 25})


def test_unknown_label_set_and_reader_options(tmp_path):
    fx.make_casme2(tmp_path)
    with pytest.raises(ValueError, match="unknown label set 'emotion9'.*for dataset 'casme2' use emotion5 \\(default\\)"):
        build("casme2", tmp_path, "emotion9")
    with pytest.raises(ValueError, match="frame_dir"):
        build("casme2", tmp_path, "emotion5", reader={"frame_dir": "x"})
    index, _ = build(
        "casme2", tmp_path, "emotion5", reader={"annotation_file": "CASME2-coding-20140508.xlsx"}
    )
    assert len(index) == 3
