"""Evaluation protocols on hand-built sample indexes: disjointness, counts, breakdowns, warnings, shards."""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pandas as pd
import pytest

from microexpr.data.protocols import (
    FOLD_COLUMNS,
    ProtocolError,
    assign_shards,
    check_disjoint,
    fold_class_counts,
    folds_of_shard,
    make_folds,
    samples_of_fold,
)

CLASSES_3 = ("negative", "positive", "surprise")


def _index(spec: dict[str, dict[str, str]], label_set: str = "3class", classes=CLASSES_3) -> pd.DataFrame:
    """{dataset: {raw subject: class letters}} -> sample index; letter k is classes[k] (a=0, b=1, ...)."""
    rows = []
    for dataset, subjects in spec.items():
        for subject, letters in subjects.items():
            for j, letter in enumerate(letters):
                label_id = ord(letter) - ord("a")
                rows.append(
                    {
                        "sample_id": f"{dataset}/{subject}/clip{j}",
                        "dataset": dataset,
                        "subject": subject,
                        "clip": f"clip{j}",
                        "fold_subject": f"{dataset}/{subject}",
                        "label": classes[label_id],
                        "label_id": label_id,
                        "label_set": label_set,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def casme_like() -> pd.DataFrame:
    """5 subjects, 3 classes, one subject with a single sample (sub03)."""
    return _index(
        {"casme2": {"sub01": "aab", "sub02": "abc", "sub03": "c", "sub04": "aaab", "sub05": "bcca"}}
    )


@pytest.fixture
def megc_like() -> pd.DataFrame:
    """Composite with raw subject '006' in both CASME II and SAMM, which must stay two folds."""
    return _index(
        {
            "casme2": {"sub01": "aab", "006": "abc"},
            "samm": {"006": "aaac", "007": "b", "011": "abca"},
            "smic_hs": {"s01": "abc", "s02": "cab"},
        }
    )


def _large_index(n_subjects: int = 20, seed: int = 7) -> pd.DataFrame:
    """Many subjects of uneven sizes and class mixes, drawn once from a fixed generator."""
    rng = np.random.default_rng(seed)
    spec = {}
    for s in range(n_subjects):
        size = int(rng.integers(1, 12))
        spec[f"sub{s:02d}"] = "".join(rng.choice(list("abc"), size=size, p=[0.6, 0.25, 0.15]))
    return _index({"casme2": spec})


PROTOCOL_CASES: list[tuple[str, dict]] = [
    ("loso", {}),
    ("megc2019", {}),
    ("cross_dataset", {"train": ["casme2", "smic_hs"], "test": "samm"}),
    ("holdout", {"repeats": 3, "resplit": True}),
]


# ------------------------------------------------------------------------------------------------ table shape


@pytest.mark.parametrize("protocol,options", PROTOCOL_CASES)
def test_every_protocol_gives_disjoint_folds_with_the_documented_columns(megc_like, protocol, options):
    folds = make_folds(megc_like, protocol, options)
    assert tuple(folds.columns) == FOLD_COLUMNS
    assert (folds["protocol"] == protocol).all()
    for _, row in folds.iterrows():
        assert not set(row["train_subjects"]) & set(row["test_subjects"])
        train_ids, test_ids = samples_of_fold(megc_like, row)
        assert not set(train_ids) & set(test_ids)
        assert (row["n_train"], row["n_test"]) == (len(train_ids), len(test_ids))
        for side, ids in (("train", train_ids), ("test", test_ids)):
            labels = megc_like.set_index("sample_id").loc[ids, "label"]
            assert fold_class_counts(row, side) == labels.value_counts().to_dict()


# ------------------------------------------------------------------------------------------------ LOSO


def test_loso_has_one_fold_per_subject_in_sorted_order(casme_like):
    folds = make_folds(casme_like, "loso", {})
    subjects = sorted(casme_like["fold_subject"].unique())
    assert folds["fold"].tolist() == [f"fold_{i:03d}" for i in range(len(subjects))]
    assert [row[0] for row in folds["test_subjects"]] == subjects
    assert all(len(t) == 1 for t in folds["test_subjects"])
    assert all(len(t) == len(subjects) - 1 for t in folds["train_subjects"])


def test_loso_tests_every_sample_exactly_once(casme_like):
    folds = make_folds(casme_like, "loso", {})
    tested = list(
        itertools.chain.from_iterable(samples_of_fold(casme_like, row)[1] for _, row in folds.iterrows())
    )
    assert sorted(tested) == sorted(casme_like["sample_id"])
    assert folds["n_test"].sum() == len(casme_like)
    assert ((folds["n_train"] + folds["n_test"]) == len(casme_like)).all()


def test_loso_refuses_an_empty_index_and_a_single_subject(casme_like):
    with pytest.raises(ProtocolError, match="empty"):
        make_folds(casme_like.iloc[0:0], "loso", {})
    one = casme_like[casme_like["fold_subject"] == "casme2/sub01"]
    with pytest.raises(ProtocolError, match=r"at least 2 fold subjects.*casme2/sub01"):
        make_folds(one, "loso", {})


# ------------------------------------------------------------------------------------------------ warnings


def test_single_test_sample_and_missing_training_class_are_warned(caplog):
    index = _index({"casme2": {"sub01": "aab", "sub02": "ab", "sub03": "c"}})
    with caplog.at_level(logging.WARNING, logger="microexpr.data.protocols"):
        folds = make_folds(index, "loso", {}).set_index("fold")
    sub03 = folds.loc["fold_002", "warnings"]
    assert any(w.startswith("single_test_sample") and "casme2/sub03/clip0" in w for w in sub03)
    assert any(w.startswith("train_missing_class") and "surprise" in w for w in sub03)
    assert folds.loc["fold_000", "warnings"] == []
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(logged) == sorted(sub03)


# ------------------------------------------------------------------------------------------------ MEGC2019


def test_megc2019_namespaces_colliding_subjects_and_carries_the_test_dataset(megc_like):
    folds = make_folds(megc_like, "megc2019", {"members": ["casme2", "samm", "smic_hs"]})
    tested = [row[0] for row in folds["test_subjects"]]
    assert "casme2/006" in tested and "samm/006" in tested
    assert len(folds) == megc_like["fold_subject"].nunique()
    for _, row in folds.iterrows():
        assert row["test_datasets"] == [row["test_subjects"][0].split("/")[0]]
    per_dataset = folds.assign(member=folds["test_datasets"].str[0]).groupby("member")["n_test"].sum()
    assert per_dataset.to_dict() == megc_like["dataset"].value_counts().to_dict()


def test_megc2019_member_dataset_comes_from_the_namespace_even_if_dataset_is_the_composite(megc_like):
    composite = megc_like.assign(dataset="megc2019")
    folds = make_folds(composite, "megc2019", {})
    assert sorted({row[0] for row in folds["test_datasets"]}) == ["casme2", "samm", "smic_hs"]


def test_megc2019_rejects_bare_subjects_and_missing_members(megc_like):
    bare = megc_like.assign(fold_subject=megc_like["subject"], dataset="megc2019")
    with pytest.raises(ProtocolError, match="dataset-namespaced"):
        make_folds(bare, "megc2019", {})
    no_smic = megc_like[megc_like["dataset"] != "smic_hs"]
    with pytest.raises(ProtocolError, match=r"missing \['smic_hs'\]"):
        make_folds(no_smic, "megc2019", {"members": ["casme2", "samm", "smic_hs"]})


def test_raw_subject_shared_by_two_datasets_without_namespace_is_an_error(megc_like):
    unnamespaced = megc_like.assign(fold_subject=megc_like["subject"])
    with pytest.raises(ProtocolError, match=r"006.*dataset-namespaced"):
        make_folds(unnamespaced, "loso", {})


# ------------------------------------------------------------------------------------------------ cross-dataset


def test_cross_dataset_trains_on_train_datasets_and_tests_on_test_datasets(megc_like):
    folds = make_folds(megc_like, "cross_dataset", {"train": "casme2", "test": ["samm"]})
    assert len(folds) == 1
    row = folds.iloc[0]
    counts = megc_like["dataset"].value_counts()
    assert (row["n_train"], row["n_test"]) == (counts["casme2"], counts["samm"])
    assert row["test_datasets"] == ["samm"]
    assert all(s.startswith("casme2/") for s in row["train_subjects"])


def test_cross_dataset_requires_one_shared_label_space(megc_like):
    no_surprise = megc_like[~((megc_like["dataset"] == "samm") & (megc_like["label"] == "surprise"))]
    with pytest.raises(ProtocolError, match=r"only in train \['casme2'\]: \['surprise'\]"):
        make_folds(no_surprise, "cross_dataset", {"train": "casme2", "test": "samm"})
    other_set = megc_like.assign(label_set=np.where(megc_like["dataset"] == "samm", "samm_5class", "3class"))
    with pytest.raises(ProtocolError, match="shared label set.*samm_5class"):
        make_folds(other_set, "cross_dataset", {"train": "casme2", "test": "samm"})


@pytest.mark.parametrize(
    "options,message",
    [
        ({"train": "casme2", "test": "casme2"}, "both the train and the test side"),
        ({"train": "casme2", "test": "mmew"}, r"\['mmew'\] not in the sample index"),
        ({"train": "casme2"}, "needs option 'test'"),
        ({"train": [], "test": "samm"}, "at least one dataset"),
    ],
)
def test_cross_dataset_option_errors(megc_like, options, message):
    with pytest.raises(ProtocolError, match=message):
        make_folds(megc_like, "cross_dataset", options)


# ------------------------------------------------------------------------------------------------ hold-out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_holdout_is_subject_disjoint_near_the_ratio_with_every_class_on_both_sides(seed):
    index = _large_index()
    folds = make_folds(index, "holdout", {"ratio": [3, 2], "repeats": 5, "seed": seed, "resplit": True})
    assert folds["fold"].tolist() == [f"repeat_{r}" for r in range(5)]
    largest_subject = index["fold_subject"].value_counts().max()
    for _, row in folds.iterrows():
        assert set(row["train_subjects"]) | set(row["test_subjects"]) == set(index["fold_subject"])
        assert not set(row["train_subjects"]) & set(row["test_subjects"])
        assert abs(row["n_test"] - 0.4 * len(index)) <= largest_subject
        assert set(fold_class_counts(row, "train")) == set(CLASSES_3) == set(fold_class_counts(row, "test"))
        assert row["warnings"] == []


def test_holdout_is_deterministic_for_a_seed_and_varies_with_seed_and_repeat():
    index = _large_index()
    options = {"ratio": "3:2", "repeats": 5, "seed": 11, "resplit": True}
    first = make_folds(index, "holdout", options)
    pd.testing.assert_frame_equal(first, make_folds(index.sample(frac=1, random_state=3), "holdout", options))
    splits = {tuple(t) for t in first["test_subjects"]}
    assert len(splits) > 1
    other_seeds = {
        tuple(make_folds(index, "holdout", {**options, "seed": s})["test_subjects"][0]) for s in range(5)
    }
    assert len(other_seeds) > 1


def test_holdout_without_resplit_repeats_one_split_which_is_repeat_0_of_resplit():
    index = _large_index()
    same = make_folds(index, "holdout", {"repeats": 4, "seed": 5})
    assert len({tuple(t) for t in same["test_subjects"]}) == 1
    resplit = make_folds(index, "holdout", {"repeats": 4, "seed": 5, "resplit": True})
    assert list(same["test_subjects"][0]) == list(resplit["test_subjects"][0])


def test_holdout_puts_a_rare_class_of_two_large_subjects_on_both_sides():
    """Ratio-only filling would skip the large subjects once small ones fill the test side."""
    small = {f"s{i:02d}": "aaaa" for i in range(10)}
    index = _index({"casme2": {**small, "big1": "a" * 12 + "c", "big2": "a" * 12 + "c"}})
    folds = make_folds(index, "holdout", {"repeats": 5, "resplit": True})
    for _, row in folds.iterrows():
        assert fold_class_counts(row, "test").get("surprise") == 1
        assert fold_class_counts(row, "train").get("surprise") == 1


def test_holdout_keeps_a_class_held_by_one_subject_for_training_and_warns():
    index = _index({"casme2": {"s1": "aab", "s2": "ab", "s3": "aab", "s4": "abb", "s5": "ac"}})
    folds = make_folds(index, "holdout", {"repeats": 3, "resplit": True})
    for _, row in folds.iterrows():
        assert "casme2/s5" in row["train_subjects"]
        assert any(w.startswith("test_missing_class") and "surprise" in w for w in row["warnings"])


@pytest.mark.parametrize(
    "options,message",
    [
        ({"ratio": [3, 0]}, "two positive numbers"),
        ({"ratio": "3-2"}, "train:test"),
        ({"repeats": 0}, "positive integer"),
        ({"seed": -1}, "non-negative integer"),
        ({"repeat": 5}, r"unknown option\(s\) \['repeat'\]"),
    ],
)
def test_holdout_option_errors(casme_like, options, message):
    with pytest.raises(ProtocolError, match=message):
        make_folds(casme_like, "holdout", options)


# ------------------------------------------------------------------------------------------------ index checks


def test_index_errors_name_the_offending_samples(casme_like):
    with pytest.raises(ProtocolError, match="unknown protocol 'kfold'"):
        make_folds(casme_like, "kfold", {})
    with pytest.raises(ProtocolError, match=r"lacks column\(s\) \['label_set'\]"):
        make_folds(casme_like.drop(columns="label_set"), "loso", {})
    duplicated = pd.concat([casme_like, casme_like.iloc[[2]]])
    with pytest.raises(ProtocolError, match="duplicate sample_id.*casme2/sub01/clip2"):
        make_folds(duplicated, "loso", {})
    unlabelled = casme_like.assign(label=casme_like["label"].where(casme_like.index != 4))
    with pytest.raises(ProtocolError, match="no label for sample.*casme2/sub02/clip1"):
        make_folds(unlabelled, "loso", {})
    mixed = casme_like.assign(label_set=np.where(casme_like.index == 0, "5class", "3class"))
    with pytest.raises(ProtocolError, match="mixes label sets"):
        make_folds(mixed, "loso", {})


def test_overlap_check_names_the_fold_and_the_subject(casme_like):
    with pytest.raises(ProtocolError, match=r"fold fold_007.*\['casme2/sub02'\]"):
        check_disjoint("fold_007", ["casme2/sub01", "casme2/sub02"], ["casme2/sub02"])
    row = make_folds(casme_like, "loso", {}).iloc[0].copy()
    row["train_subjects"] = [*row["train_subjects"], row["test_subjects"][0]]
    with pytest.raises(ProtocolError, match="fold fold_000.*casme2/sub01"):
        samples_of_fold(casme_like, row)


def test_samples_of_fold_refuses_a_stale_folds_table(casme_like):
    row = make_folds(casme_like, "loso", {}).iloc[1]
    with pytest.raises(ProtocolError, match="stale"):
        samples_of_fold(casme_like.iloc[1:], row)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_folds_table_round_trips_through_files(megc_like, tmp_path, fmt):
    folds = make_folds(megc_like, "megc2019", {"n_shards": 3})
    path = tmp_path / f"folds.{fmt}"
    if fmt == "parquet":
        folds.to_parquet(path)
        back = pd.read_parquet(path)
    else:
        folds.to_csv(path, index=False)
        back = pd.read_csv(path)
    for (_, before), (_, after) in zip(folds.iterrows(), back.iterrows(), strict=True):
        assert samples_of_fold(megc_like, after) == samples_of_fold(megc_like, before)
        assert fold_class_counts(after, "test") == json.loads(before["test_class_counts"])
        assert after["shard"] == before["shard"]


# ------------------------------------------------------------------------------------------------ shards


def _cost_folds(costs: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"fold": [f"fold_{i:03d}" for i in range(len(costs))], "n_train": costs, "n_test": 1})


@pytest.mark.parametrize("n_shards", [1, 2, 3, 5])
def test_shards_are_balanced_within_the_largest_fold_cost(n_shards):
    costs = np.random.default_rng(n_shards).integers(50, 300, size=26).tolist()
    folds = _cost_folds(costs)
    shards = assign_shards(folds, n_shards)
    assert set(shards) == set(range(n_shards))
    loads = folds["n_train"].groupby(shards).sum()
    assert loads.max() - loads.min() <= max(costs)
    assert loads.max() <= sum(costs) / n_shards + max(costs)


def test_shards_are_deterministic_and_independent_of_row_order():
    folds = _cost_folds([120, 80, 120, 80, 100, 100, 60])
    by_fold = dict(zip(folds["fold"], assign_shards(folds, 3), strict=True))
    shuffled = folds.sample(frac=1, random_state=1)
    assert dict(zip(shuffled["fold"], assign_shards(shuffled, 3), strict=True)) == by_fold
    uniform = assign_shards(folds, 3, weights="uniform")
    assert uniform.value_counts().tolist() == [3, 2, 2]
    costs = {f: float(i) for i, f in enumerate(folds["fold"])}
    assert (assign_shards(folds, 2, weights=costs) == assign_shards(folds.assign(n_train=range(7)), 2)).all()


def test_fewer_folds_than_shards_leaves_empty_shards(megc_like):
    folds = make_folds(megc_like, "cross_dataset", {"train": "casme2", "test": "samm", "n_shards": 4})
    assert folds["shard"].tolist() == [0]
    for k in range(1, 4):
        empty = folds_of_shard(folds, k, 4)
        assert empty.empty and tuple(empty.columns) == FOLD_COLUMNS
    assert folds_of_shard(folds, 0, 4)["fold"].tolist() == ["cross_000"]


def test_shard_errors(casme_like):
    folds = make_folds(casme_like, "loso", {"n_shards": 3})
    with pytest.raises(ProtocolError, match="n_shards=2"):
        folds_of_shard(folds, 0, 2)
    with pytest.raises(ProtocolError, match="outside"):
        folds_of_shard(folds, 3, 3)
    with pytest.raises(ProtocolError, match="positive integer"):
        make_folds(casme_like, "loso", {"n_shards": 0})
    with pytest.raises(ProtocolError, match="unknown shard weights"):
        make_folds(casme_like, "loso", {"shard_weights": "seconds"})
    with pytest.raises(ProtocolError, match="no cost for fold"):
        assign_shards(folds, 2, weights={"fold_000": 1.0})
