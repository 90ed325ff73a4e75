"""Label maps: the real conf/base/labels.yml against the class counts of peers_and_datasets.md §2.9."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from microexpr.data.labels import (
    LABEL_REASON_CODES,
    REASON_DATASET_NOT_IN_LABEL_SET,
    REASON_LABEL_DROPPED,
    REASON_MISSING_EMOTION,
    REASON_MISSING_GROUND_TRUTH,
    REASON_UNKNOWN_EMOTION,
    REASON_UNKNOWN_GROUND_TRUTH,
    LabelConfigError,
    LabelSet,
    LabelSetMismatch,
    applicable_label_sets,
    default_label_sets,
    load_label_sets,
    normalise_emotion,
    resolve_label_set,
)
from microexpr.data.sources import SOURCES

LABELS_YML = Path(__file__).resolve().parents[2] / "conf" / "base" / "labels.yml"
KNOWN_DATASETS = {
    "synthetic",
    "casme2",
    "samm",
    "smic_hs",
    "smic_vis",
    "smic_nir",
    "mmew",
    "casme3_a",
    "megc2019",
}

# Raw emotion counts as spelled in the sheets (peers_and_datasets.md §2.1, §2.2, §2.4, §2.5, §2.9).
CASME2_RAW = {
    "happiness": 32,
    "disgust": 63,
    "repression": 27,
    "surprise": 25,
    "others": 99,
    "fear": 2,
    "sadness": 4,
}
SAMM_RAW = {
    "Anger": 57,
    "Contempt": 12,
    "Disgust": 9,
    "Fear": 8,
    "Happiness": 26,
    "Other": 26,
    "Sadness": 6,
    "Surprise": 15,
}
MMEW_RAW = {
    "happiness": 36,
    "surprise": 89,
    "anger": 8,
    "disgust": 72,
    "fear": 16,
    "sadness": 13,
    "others": 66,
}
CASME3_RAW = {"disgust": 247, "surprise": 184, "fear": 83, "anger": 64, "sad": 55, "happy": 54, "Others": 173}
SMIC_RAW = {"negative": 70, "positive": 51, "surprise": 43}
# CASME II's 255-row sheet as the MOL paper splits it (reference_models.md: surprise 28, sadness 4).
CASME2_255 = {**CASME2_RAW, "surprise": 28}


@pytest.fixture(scope="module")
def raw_config() -> dict:
    return yaml.safe_load(LABELS_YML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def label_sets(raw_config: dict) -> dict[str, LabelSet]:
    return load_label_sets(raw_config)


def _counts(label_set: LabelSet, dataset: str, raw: dict[str, int]) -> Counter:
    counts: Counter = Counter()
    for emotion, n in raw.items():
        assignment = label_set.assign(dataset, emotion)
        counts[assignment.label if assignment.ok else assignment.reason_code] += n
    return counts


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Others", "others"),
        ("other", "others"),
        ("Other ", "others"),
        ("  HAPPY ", "happiness"),
        ("sad", "sadness"),
        ("Surprised", "surprise"),
        ("disgusted", "disgust"),
        ("Angry", "anger"),
        ("repressed", "repression"),
        ("negative", "negative"),
        ("tense", "tense"),  # unknown words are only cleaned, never guessed
        (None, ""),
        (float("nan"), ""),
    ],
)
def test_normalise_emotion(raw: object, expected: str) -> None:
    assert normalise_emotion(raw) == expected


def test_required_sets_and_datasets(label_sets: dict[str, LabelSet]) -> None:
    required = {"emotion5", "megc3", "mmew4", "mmew6", "casme2_attr5", "casme3_7", "casme3_4", "native"}
    assert required <= set(label_sets)
    for label_set in label_sets.values():
        assert set(label_set.datasets) <= KNOWN_DATASETS, label_set.name
        if label_set.supports("casme2"):
            assert label_set.rule("synthetic").alias_of == "casme2"


def test_every_rule_lists_its_dropped_emotions(raw_config: dict) -> None:
    for name, set_cfg in raw_config["label_sets"].items():
        for dataset, rule in set_cfg["datasets"].items():
            if "same_as" not in rule and not rule.get("from_ground_truth"):
                assert "drop" in rule, f"{name}/{dataset}"


def test_emotion5_counts(label_sets: dict[str, LabelSet]) -> None:
    emotion5 = label_sets["emotion5"]
    casme2 = _counts(emotion5, "casme2", CASME2_RAW)
    assert casme2 == {
        "happiness": 32,
        "disgust": 63,
        "repression": 27,
        "surprise": 25,
        "others": 99,
        REASON_LABEL_DROPPED: 6,
    }
    samm = _counts(emotion5, "samm", SAMM_RAW)
    assert samm == {
        "anger": 57,
        "contempt": 12,
        "happiness": 26,
        "surprise": 15,
        "others": 26,
        REASON_LABEL_DROPPED: 23,
    }
    assert len(emotion5.classes_for("casme2")) == len(emotion5.classes_for("samm")) == 5


def test_megc3_counts(label_sets: dict[str, LabelSet]) -> None:
    megc3 = label_sets["megc3"]
    assert megc3.classes == ("negative", "positive", "surprise")
    assert _counts(megc3, "casme2", CASME2_RAW) == {
        "negative": 90,
        "positive": 32,
        "surprise": 25,
        REASON_LABEL_DROPPED: 105,
    }
    assert _counts(megc3, "samm", SAMM_RAW) == {
        "negative": 92,
        "positive": 26,
        "surprise": 15,
        REASON_LABEL_DROPPED: 26,
    }
    assert _counts(megc3, "smic_hs", SMIC_RAW) == SMIC_RAW
    assert _counts(megc3, "smic_nir", SMIC_RAW) == SMIC_RAW
    assert _counts(megc3, "mmew", MMEW_RAW) == {
        "negative": 109,
        "positive": 36,
        "surprise": 89,
        REASON_LABEL_DROPPED: 66,
    }
    assert _counts(megc3, "casme3_a", CASME3_RAW) == {
        "negative": 449,
        "positive": 54,
        "surprise": 184,
        REASON_LABEL_DROPPED: 173,
    }


def test_fear_dropped_in_casme2_and_samm_disgust_differs_between_sets(
    label_sets: dict[str, LabelSet],
) -> None:
    for name in ("emotion5", "megc3"):
        fear = label_sets[name].assign("casme2", "fear")
        assert fear.reason_code == REASON_LABEL_DROPPED
        assert "'fear'" in fear.reason and name in fear.reason and "sadness" in fear.reason
    assert label_sets["megc3"].assign("samm", "Disgust").label == "negative"
    assert label_sets["emotion5"].assign("samm", "Disgust").reason_code == REASON_LABEL_DROPPED


def test_mmew_and_attribute_sets(label_sets: dict[str, LabelSet]) -> None:
    assert sum(_counts(label_sets["mmew4"], "mmew", MMEW_RAW)[c] for c in label_sets["mmew4"].classes) == 263
    mmew6 = _counts(label_sets["mmew6"], "mmew", MMEW_RAW)
    assert sum(mmew6[c] for c in label_sets["mmew6"].classes) == 234  # the non-others subset (HTNet CSV)
    assert mmew6[REASON_LABEL_DROPPED] == 66
    attr5 = label_sets["casme2_attr5"]
    assert attr5.assign("casme2", "sadness").label == "sadness"
    assert attr5.assign("casme2", "others").reason_code == REASON_LABEL_DROPPED


def test_casme3_sets(label_sets: dict[str, LabelSet]) -> None:
    seven = _counts(label_sets["casme3_7"], "casme3_a", CASME3_RAW)
    assert sum(seven.values()) == sum(CASME3_RAW.values()) and len(seven) == 7
    four = _counts(label_sets["casme3_4"], "casme3_a", CASME3_RAW)
    assert four == {"negative": 449, "positive": 54, "surprise": 184, "others": 173}


def test_native_keeps_every_raw_emotion(label_sets: dict[str, LabelSet]) -> None:
    native = label_sets["native"]
    for dataset, raw in (
        ("casme2", CASME2_RAW),
        ("samm", SAMM_RAW),
        ("mmew", MMEW_RAW),
        ("casme3_a", CASME3_RAW),
    ):
        counts = _counts(native, dataset, raw)
        assert len(counts) == len(raw) and REASON_LABEL_DROPPED not in counts, dataset


def test_synthetic_uses_casme2_rule(label_sets: dict[str, LabelSet]) -> None:
    emotion5 = label_sets["emotion5"]
    for emotion in CASME2_RAW:
        real, synthetic = emotion5.assign("casme2", emotion), emotion5.assign("synthetic", emotion)
        assert (real.label, real.label_id, real.reason_code) == (
            synthetic.label,
            synthetic.label_id,
            synthetic.reason_code,
        )
    assert "same as casme2" in emotion5.assign("synthetic", "fear").reason


def test_label_ids_follow_class_order(label_sets: dict[str, LabelSet]) -> None:
    emotion5 = label_sets["emotion5"]
    for dataset in ("casme2", "samm"):
        for label_id, cls in enumerate(emotion5.classes_for(dataset)):
            assignment = emotion5.assign(dataset, cls)
            assert (assignment.label, assignment.label_id) == (cls, label_id)
    with pytest.raises(LabelConfigError, match="classes_for"):
        _ = emotion5.classes


def test_unknown_missing_and_unsupported(label_sets: dict[str, LabelSet]) -> None:
    megc3 = label_sets["megc3"]
    unknown = megc3.assign("casme2", "tense")
    assert (
        unknown.reason_code == REASON_UNKNOWN_EMOTION
        and unknown.label is None
        and "'tense'" in unknown.reason
    )
    assert megc3.assign("casme2", None).reason_code == REASON_MISSING_EMOTION
    outside = label_sets["mmew4"].assign("casme2", "happiness")
    assert outside.reason_code == REASON_DATASET_NOT_IN_LABEL_SET and "mmew4" in outside.reason


def test_megc2019_labels_come_from_ground_truth(label_sets: dict[str, LabelSet]) -> None:
    megc3 = label_sets["megc3"]
    assert [megc3.assign("megc2019", None, ground_truth=code).label for code in (0, 1, 2)] == list(
        megc3.classes
    )
    assert megc3.assign("megc2019", None, ground_truth="2").label == "surprise"
    assert megc3.assign("megc2019", None, ground_truth=1.0).label_id == 1
    assert megc3.assign("megc2019", None, ground_truth="Negative").label_id == 0
    assert megc3.assign("megc2019", "happiness").reason_code == REASON_MISSING_GROUND_TRUTH
    unknown = megc3.assign("megc2019", None, ground_truth=7)
    assert unknown.reason_code == REASON_UNKNOWN_GROUND_TRUTH and "7" in unknown.reason


def test_mmnet_ref3_is_the_reference_mapping(label_sets: dict[str, LabelSet]) -> None:
    """MMNet CASME2_3.py: happiness 0, surprise 1, {repression, disgust, fear, sadness} 2 -> 156 samples."""
    ref3 = label_sets["mmnet_ref3"]
    assert ref3.classes == ("positive", "surprise", "negative")
    counts = _counts(ref3, "casme2", CASME2_255)
    assert counts == {"positive": 32, "surprise": 28, "negative": 96, REASON_LABEL_DROPPED: 99}
    assert sum(counts[c] for c in ref3.classes) == 156
    megc3 = _counts(label_sets["megc3"], "casme2", CASME2_255)
    assert counts["negative"] - megc3["negative"] == CASME2_255["fear"] + CASME2_255["sadness"]
    assert ref3.rule("synthetic").alias_of == "casme2"
    assert [ref3.assign("casme2", e).label_id for e in ("happiness", "surprise", "fear")] == [0, 1, 2]


def test_every_dataset_has_a_default_that_labels_it(
    raw_config: dict, label_sets: dict[str, LabelSet]
) -> None:
    defaults = default_label_sets(raw_config)
    assert set(defaults) == set(SOURCES)
    for dataset, name in defaults.items():
        assert label_sets[name].supports(dataset)
        assert resolve_label_set(raw_config, dataset, None) == name
        assert resolve_label_set(raw_config, dataset, "  ") == name
    assert defaults["megc2019"] == "megc3" and defaults["casme2"] == "emotion5"
    assert {defaults[d] for d in ("smic_hs", "smic_vis", "smic_nir")} == {"megc3"}


def test_composite_takes_only_sets_with_a_rule_for_it(
    raw_config: dict, label_sets: dict[str, LabelSet]
) -> None:
    assert applicable_label_sets(label_sets, "megc2019") == ("megc3", "native")
    assert resolve_label_set(raw_config, "megc2019", "native") == "native"
    with pytest.raises(LabelSetMismatch) as error:
        resolve_label_set(raw_config, "megc2019", "emotion5")
    message = str(error.value)
    for part in (
        "'emotion5'",
        "'megc2019'",
        "ground-truth file: negative, positive, surprise",
        "megc3 (default), native",
    ):
        assert part in message, (part, message)


def test_explicit_set_without_a_rule_for_the_dataset_fails(raw_config: dict) -> None:
    with pytest.raises(
        LabelSetMismatch, match=r"'mmew4' cannot label dataset 'smic_hs'.*megc3 \(default\), native"
    ):
        resolve_label_set(raw_config, "smic_hs", "mmew4")
    with pytest.raises(
        ValueError, match=r"unknown label set 'megc5'.*for dataset 'samm' use emotion5 \(default\)"
    ):
        resolve_label_set(raw_config, "samm", "megc5")
    no_defaults = {"label_sets": raw_config["label_sets"]}
    with pytest.raises(LabelSetMismatch, match=r"'casme2' has no default label set.*emotion5, megc3"):
        resolve_label_set(no_defaults, "casme2", None)


def test_docs_label_set_table_matches_labels_yml(raw_config: dict, label_sets: dict[str, LabelSet]) -> None:
    """docs/datasets.md#label-sets: every dataset once, its applicable sets and its default as labels.yml says."""
    text = (LABELS_YML.parents[2] / "docs" / "datasets.md").read_text(encoding="utf-8")
    table = text.split("| dataset | label sets that apply | default |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|")[1:4] for line in table.strip().splitlines()[1:]]
    defaults = default_label_sets(raw_config)
    documented: set[str] = set()
    for datasets_cell, sets_cell, default_cell in rows:
        names = re.findall(r"`([a-z0-9_]+)`", sets_cell)
        for dataset in re.findall(r"`([a-z0-9_]+)`", datasets_cell):
            documented.add(dataset)
            assert set(names) == set(applicable_label_sets(label_sets, dataset)), dataset
            assert default_cell.strip() == f"`{defaults[dataset]}`", dataset
    assert documented == set(SOURCES)


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ({"casme2": "emotion7"}, r"defaults, dataset 'casme2': label set 'emotion7' is not defined"),
        (
            {"smic_hs": "emotion5"},
            r"defaults, dataset 'smic_hs': label set 'emotion5' has no rule for 'smic_hs'",
        ),
        (["casme2"], r"'defaults' must be a mapping"),
    ],
)
def test_broken_defaults_are_refused(raw_config: dict, defaults: object, message: str) -> None:
    with pytest.raises(LabelConfigError, match=message):
        load_label_sets({**raw_config, "defaults": defaults})


def test_composite_label_comes_from_its_own_rule(label_sets: dict[str, LabelSet]) -> None:
    """Under emotion5 a member rule cannot express positive/negative; the composite rule of megc3 and native can."""
    assert label_sets["emotion5"].assign("casme2", "happiness", ground_truth=1).reason_code == (
        REASON_UNKNOWN_GROUND_TRUTH
    )
    for name in ("megc3", "native"):
        composite = label_sets[name].assign("megc2019", "happiness", ground_truth=1, compare_with="casme2")
        assert (composite.label, composite.label_id, composite.note) == ("positive", 1, None)
    overruled = label_sets["megc3"].assign("megc2019", "fear", ground_truth=2, compare_with="casme2")
    assert overruled.label == "surprise" and "'fear'" in overruled.note and "casme2" in overruled.note
    # native's CASME II classes differ from the composite's: no comparison, no note
    assert label_sets["native"].assign("megc2019", "fear", ground_truth=2, compare_with="casme2").note is None
    assert REASON_UNKNOWN_GROUND_TRUTH in LABEL_REASON_CODES and REASON_LABEL_DROPPED in LABEL_REASON_CODES


def test_ground_truth_wins_for_member_datasets_and_disagreement_is_noted(
    label_sets: dict[str, LabelSet],
) -> None:
    megc3 = label_sets["megc3"]
    # sub05/EP12_03f-like case: the GT keeps as surprise a sample whose emotion cell the 3-class map drops.
    overruled = megc3.assign("casme2", "fear", ground_truth=2)
    assert (overruled.label, overruled.label_id) == ("surprise", 2)
    assert (
        overruled.note is not None and "'fear'" in overruled.note and REASON_LABEL_DROPPED in overruled.note
    )
    agreeing = megc3.assign("samm", "Anger", ground_truth=0)
    assert agreeing.label == "negative" and agreeing.note is None
    assert megc3.assign("casme2", "fear").reason_code == REASON_LABEL_DROPPED  # no GT: emotion rule applies
    foreign = label_sets["emotion5"].assign("casme2", "disgust", ground_truth="negative")
    assert foreign.reason_code == REASON_UNKNOWN_GROUND_TRUTH and "emotion5" in foreign.reason


# --- validation of broken configurations -------------------------------------------------------------------------


def _broken(raw_config: dict, edit) -> dict:
    cfg = copy.deepcopy(raw_config)
    edit(cfg["label_sets"])
    return cfg


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s["megc3"]["datasets"]["casme2"]["map"].update(disgust="negatve"),
            r"'megc3', dataset 'casme2', key 'map'.*'negatve'",
        ),
        (
            lambda s: s["emotion5"]["datasets"]["casme2"]["drop"].append("happiness"),
            r"'emotion5', dataset 'casme2', key 'drop'.*both mapped and dropped",
        ),
        (
            lambda s: s["mmew4"]["datasets"]["mmew"].pop("drop"),
            r"'mmew4', dataset 'mmew', key 'drop'.*explicitly",
        ),
        (
            lambda s: s["mmew4"]["datasets"]["mmew"]["keep"].remove("others"),
            r"'mmew4'.*produced by no emotion",
        ),
        (
            lambda s: s["megc3"]["datasets"]["casme2"]["map"].update(Happy="positive"),
            r"'megc3', dataset 'casme2', key 'map'.*'happiness'",
        ),
        (
            lambda s: s["megc3"]["datasets"].update(synthetic={"same_as": "casme5"}),
            r"'megc3', dataset 'synthetic', key 'same_as'.*casme5",
        ),
        (
            lambda s: s["megc3"]["datasets"].update(smic_vis={"same_as": "smic_nir"}),
            r"'smic_vis', key 'same_as'.*itself an alias",
        ),
        (
            lambda s: s["mmew6"]["datasets"]["mmew"].update(mapping={}),
            r"'mmew6', dataset 'mmew', key 'mapping'",
        ),
        (lambda s: s["mmew6"].pop("description"), r"'mmew6', key 'description'"),
        (
            lambda s: s["megc3"]["ground_truth_codes"].update({3: "neutral"}),
            r"'megc3', dataset 'megc2019', key 'ground_truth_codes'.*'neutral'",
        ),
        (
            lambda s: s["megc3"].pop("ground_truth_codes"),
            r"'megc3', dataset 'megc2019', key 'from_ground_truth'",
        ),
        (
            lambda s: s["megc3"]["ground_truth_codes"].update({"two": "surprise"}),
            r"'megc3', key 'ground_truth_codes'",
        ),
        (
            lambda s: s["megc3"]["datasets"]["megc2019"].update(drop=[]),
            r"'megc3', dataset 'megc2019', key 'drop'",
        ),
        (
            lambda s: s["native"]["datasets"]["samm"].pop("classes"),
            r"'native', dataset 'samm', key 'classes'",
        ),
    ],
)
def test_broken_config_errors_name_set_and_key(raw_config: dict, edit, message: str) -> None:
    with pytest.raises(LabelConfigError, match=message):
        load_label_sets(_broken(raw_config, edit))


def test_top_level_shape_errors(raw_config: dict) -> None:
    with pytest.raises(LabelConfigError, match="non-empty mapping"):
        load_label_sets({"label_sets": {}})
    with pytest.raises(LabelConfigError, match="unexpected top-level keys"):
        load_label_sets({**raw_config, "extra": 1})
    assert set(load_label_sets(raw_config["label_sets"])) == set(raw_config["label_sets"])
