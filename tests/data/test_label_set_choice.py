"""Which label set an ingest uses, and what it excludes: defaults, composites, mismatch errors, the warning, and
subjects left out on purpose (ingest option exclude_subjects)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader

from microexpr.data.index import build_sample_index, label_exclusion_warning
from microexpr.data.labels import LABEL_REASON_CODES, LabelSetMismatch
from microexpr.data.records import FrameFile, Snapshot
from microexpr.data.sources import get_source
from microexpr.datasets.raw_source import RawDatasetSource, read_snapshot
from microexpr.settings import CONFIG_LOADER_ARGS
from tests.data import fixtures as fx

PROJECT = Path(__file__).resolve().parents[2]
LABELS = yaml.safe_load((PROJECT / "conf/base/labels.yml").read_text())
GT_CLASSES = {0: "negative", 1: "positive", 2: "surprise"}  # combined_3class_gt.csv codes (MEGC2019 README)


def megc2019_snapshot(base: Path) -> Snapshot:
    roots, _ = fx.make_megc2019(base)
    return RawDatasetSource(source="megc2019", roots={k: str(v) for k, v in roots.items()}).load()


def build(name: str, root: Path, label_set: str | None, **options) -> tuple[pd.DataFrame, pd.DataFrame]:
    return build_sample_index(read_snapshot(get_source(name), root), LABELS, label_set, None, options)


# ------------------------------------------------------------------------------------------------------ composite
def test_composite_keeps_every_ground_truth_sample_without_a_label_set(tmp_path: Path) -> None:
    """Every GT row of the fixture is kept with its GT class, except the two the fixture breaks on disk."""
    index, exclusions = build_sample_index(megc2019_snapshot(tmp_path), LABELS, None, None, {})
    usable = [row for row in fx.MEGC_GT if (row[1], row[2]) not in fx.MEGC_GT_NOT_KEPT]
    assert len(index) == len(usable) == 8
    assert set(index["label_set"]) == {"megc3"}
    assert Counter(index["label"]) == Counter(GT_CLASSES[label] for *_, label in usable)
    member = {"casme2": "casme2", "samm": "samm", "smic": "smic_hs"}  # GT db -> index dataset
    assert Counter(index["dataset"]) == Counter(member[db] for db, *_ in usable)
    assert not set(exclusions["reason_code"]) & set(LABEL_REASON_CODES)
    broken = exclusions[exclusions["clip"].isin([clip for _, clip in fx.MEGC_GT_NOT_KEPT])]
    assert sorted(broken["reason_code"]) == sorted(fx.MEGC_GT_NOT_KEPT.values())


def test_composite_under_native_uses_the_composite_rule(tmp_path: Path) -> None:
    """native's megc2019 rule is consulted: the same GT samples are kept (before: only SMIC and surprise)."""
    index, exclusions = build_sample_index(megc2019_snapshot(tmp_path), LABELS, "native", None, {})
    assert len(index) == 8 and set(index["label_set"]) == {"native"}
    assert set(index["label"]) == set(GT_CLASSES.values())
    assert not set(exclusions["reason_code"]) & set(LABEL_REASON_CODES)


@pytest.mark.parametrize("label_set", ["emotion5", "mmew4", "casme2_attr5"])
def test_label_set_that_cannot_express_the_ground_truth_is_an_error(tmp_path: Path, label_set: str) -> None:
    snapshot = megc2019_snapshot(tmp_path)
    with pytest.raises(LabelSetMismatch) as error:
        build_sample_index(snapshot, LABELS, label_set, None, {})
    message = str(error.value)
    for part in (f"'{label_set}'", "'megc2019'", "megc3 (default), native"):
        assert part in message, (part, message)


def test_single_dataset_with_a_foreign_label_set_is_an_error(tmp_path: Path) -> None:
    fx.make_smic(tmp_path)
    with pytest.raises(
        LabelSetMismatch, match=r"'emotion5' cannot label dataset 'smic_hs'.*megc3 \(default\)"
    ):
        build("smic_hs", tmp_path, "emotion5")


@pytest.mark.parametrize(
    ("name", "make", "default"),
    [
        ("casme2", fx.make_casme2, "emotion5"),
        ("samm", fx.make_samm, "emotion5"),
        ("smic_hs", fx.make_smic, "megc3"),
        ("mmew", fx.make_mmew, "mmew4"),
        ("casme3_a", fx.make_casme3, "casme3_7"),
    ],
)
def test_default_label_set_lands_in_the_index(tmp_path: Path, name: str, make, default: str) -> None:
    make(tmp_path)
    index, _ = build(name, tmp_path, None)
    assert len(index) > 0 and set(index["label_set"]) == {default}


# ------------------------------------------------------------------------------------------------------ warning
def label_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "warn_label_excluded_fraction" in r.getMessage()
    ]


def test_label_exclusion_warning_fires_above_the_threshold(tmp_path: Path, caplog) -> None:
    """CASME II fixture: 7 rows reach the label check (3 stop earlier: no folder, path escape, no sheet row).
    megc3 drops others (EP01_2) and fear (EP13_04): 2/7 = 29 % > 25 %; emotion5 drops only fear: 14 %."""
    fx.make_casme2(tmp_path)
    with caplog.at_level(logging.WARNING, logger="microexpr.data.index"):
        build("casme2", tmp_path, "megc3")
    (warning,) = label_warnings(caplog)
    assert "label set megc3 excluded 2 of the 7 casme2 samples" in warning
    assert "label_dropped 2" in warning and "fear 1" in warning and "others 1" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="microexpr.data.index"):
        build("casme2", tmp_path, "emotion5")
        build("casme2", tmp_path, "megc3", warn_label_excluded_fraction=0.3)
    assert label_warnings(caplog) == []


def test_label_exclusion_warning_text() -> None:
    counts = {"dataset_not_in_label_set": 164, "unknown_ground_truth": 238}
    text = label_exclusion_warning(counts, {}, 442, 0.25, "megc2019", "emotion5")
    assert text is not None and "402 of the 442" in text and "91%" in text
    assert text.index("unknown_ground_truth 238") < text.index("dataset_not_in_label_set 164")
    assert label_exclusion_warning(counts, {}, 442, 0.95, "megc2019", "emotion5") is None
    assert label_exclusion_warning({}, {}, 0, 0.0, "casme2", "emotion5") is None


# ------------------------------------------------------------------------------------------------------ subjects
def test_excluded_subject_is_recorded_with_its_reason(tmp_path: Path, caplog) -> None:
    fixture = fx.make_casme2(tmp_path)
    sub01 = {clip for dataset, subject, clip in fixture.raw_keys if subject == "sub01"}
    why = "left out by the reference code"
    with caplog.at_level(logging.WARNING, logger="microexpr.data.index"):
        index, exclusions = build(
            "casme2", tmp_path, None, exclude_subjects={"casme2/sub1": why, "casme2/sub09": "typo"}
        )
    assert "sub01" not in set(index["subject"])
    dropped = exclusions[exclusions["reason_code"] == "subject_excluded"]
    assert set(dropped["clip"]) == sub01 - {"EP99_99"} and set(dropped["subject"]) == {"sub01"}
    assert (
        dropped["reason"]
        .str.contains(f"subject casme2/sub1 is excluded by ingest option exclude_subjects: {why}")
        .all()
    )
    found = list(zip(index["subject"], index["clip"])) + list(zip(exclusions["subject"], exclusions["clip"]))
    assert sorted(found) == sorted((s, c) for _, s, c in fixture.raw_keys)
    unused = [m for m in caplog.messages if "matches no sample" in m]
    assert len(unused) == 1 and "casme2/sub09" in unused[0]


def test_excluded_subject_of_a_composite_member(tmp_path: Path) -> None:
    index, exclusions = build_sample_index(
        megc2019_snapshot(tmp_path), LABELS, None, None, {"exclude_subjects": {"samm/006": "test"}}
    )
    assert "samm" not in set(index["dataset"])
    assert set(exclusions.loc[exclusions["reason_code"] == "subject_excluded", "subject"]) == {"006"}


def casme2_snapshot(rows: list[tuple[int, str, str]]) -> Snapshot:
    """In-memory CASME II sheet and folders: (subject, clip, emotion), frames img1..img3, apex 2."""
    header = list(fx.CASME2_COLUMNS)
    table = pd.DataFrame([header, *[[s, c, 1, 2, 3, "4", e] for s, c, e in rows]], dtype=object)
    dirs = {
        f"CASME2_RAW_selected/sub{s:02d}/{c}": [
            FrameFile(f"CASME2_RAW_selected/sub{s:02d}/{c}/img{n}.jpg", 10) for n in (1, 2, 3)
        ]
        for s, c, _ in rows
    }
    return Snapshot("casme2", "/data/casme2", tables={"CASME2-coding-20140508.xlsx": table}, dirs=dirs)


def test_mmnet_reference_3class_env_uses_the_reference_labels_and_leaves_out_sub18(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("MICROEXPR_DATA_ROOT", str(tmp_path))
    params = OmegaConfigLoader(str(PROJECT / "conf"), env="mmnet_reference_3class", **CONFIG_LOADER_ARGS)[
        "parameters"
    ]
    assert params["label_set"] == "mmnet_ref3"
    snapshot = casme2_snapshot(
        [(17, "EP01", "sadness"), (17, "EP02", "fear"), (17, "EP03", "others"), (18, "EP01", "happiness")]
    )
    index, exclusions = build_sample_index(snapshot, LABELS, params["label_set"], None, params["ingest"])
    assert dict(zip(index["clip"], index["label"], strict=True)) == {"EP01": "negative", "EP02": "negative"}
    assert set(index["subject"]) == {"sub17"}
    reasons = dict(
        zip(exclusions["subject"] + "/" + exclusions["clip"], exclusions["reason_code"], strict=True)
    )
    assert reasons == {"sub17/EP03": "label_dropped", "sub18/EP01": "subject_excluded"}
    assert "MMNet" in exclusions.loc[exclusions["subject"] == "sub18", "reason"].iloc[0]
