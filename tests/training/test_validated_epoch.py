"""The optional ``validated_epoch`` selection: epoch chosen on held-out training subjects, never on the test subject."""

from __future__ import annotations

import numpy as np
import pytest

import tests.training.toy  # noqa: F401  (registers tiny_motion_test with MMNet's task)
from microexpr.training.selection import inner_subject_split, prediction_tables, validated_epoch
from tests.pipelines.test_training_pipeline import MODEL, SUBJECTS, _run_shard, params
from tests.training.toy import TINY_TASK, tiny_config, toy_inputs


def test_inner_split_holds_out_whole_training_subjects_by_size_and_seed() -> None:
    subjects = np.repeat([f"toy/sub{i}" for i in range(10)], 3)
    inner, held = inner_subject_split(subjects, 0.2, seed=0)
    assert len(set(subjects[held])) == 2 and set(subjects[held]).isdisjoint(subjects[inner])
    assert sorted(np.concatenate([inner, held]).tolist()) == list(range(30))
    assert len(set(subjects[inner_subject_split(subjects, 3, seed=0)[1]])) == 3  # a count
    assert np.array_equal(held, inner_subject_split(subjects, 0.2, seed=0)[1])
    assert len(set(subjects[inner_subject_split(subjects, 0.01, seed=0)[1]])) == 1  # at least one subject
    with pytest.raises(ValueError, match="at least 2 training subjects"):
        inner_subject_split(np.array(["a", "a"]), 0.5, seed=0)


def test_the_test_subjects_labels_cannot_change_the_chosen_epoch() -> None:
    inputs = toy_inputs(24, n_classes=3, seed=4)
    train = np.flatnonzero(inputs["fold_subject"] != SUBJECTS[0])
    cfg = tiny_config(epochs=4, batch_size=6, validation_subjects=1)
    chosen = validated_epoch(MODEL, {}, inputs, train, cfg, seed=3, task_cfg=TINY_TASK)
    tampered = {**inputs, "y": inputs["y"].copy()}
    tampered["y"][inputs["fold_subject"] == SUBJECTS[0]] = 0  # only the test subject's labels change
    assert validated_epoch(MODEL, {}, tampered, train, cfg, seed=3, task_cfg=TINY_TASK) == chosen
    assert 1 <= chosen <= 4


def test_shard_reports_validated_epoch_in_its_own_rows_and_leaves_the_others_unchanged() -> None:
    inputs = toy_inputs(16, n_classes=2, seed=5)
    training = tiny_config(epochs=3, batch_size=6)
    plain = _run_shard(params(training=training), inputs, {})
    with_validated = _run_shard(params(training=training, selections=["honest", "oracle_epoch", "validated_epoch"]),
                                inputs, {})
    for before, after in zip(plain, with_validated, strict=True):
        table = after.predictions
        assert set(table["selection"]) == {"honest", "oracle_epoch", "validated_epoch"}
        old = table[table["selection"] != "validated_epoch"].reset_index(drop=True)
        assert old.equals(before.predictions.reset_index(drop=True))  # same training, same honest/oracle rows
        validated = table[table["selection"] == "validated_epoch"]
        assert validated["epoch"].nunique() == 1 and 1 <= validated["epoch"].iloc[0] <= 3
        assert before.key != after.key  # the selections are part of the fold key


def test_validated_rows_need_the_chosen_epoch() -> None:
    inputs = toy_inputs(16, n_classes=2, seed=5)
    result = _run_shard(params(training=tiny_config(epochs=2, batch_size=6)), inputs, {})[0]
    assert result.predictions["selection"].isin(["honest", "oracle_epoch"]).all()
    from microexpr.training.loop import train_fold

    outcome = train_fold(MODEL, {}, inputs, np.arange(8), np.arange(8, 12), tiny_config(epochs=2, batch_size=6), 0,
                         task_cfg=TINY_TASK)
    meta = {k: inputs[k] for k in ("sample_id", "dataset", "subject", "fold_subject", "y")}
    with pytest.raises(ValueError, match="validated_epoch needs the chosen epoch"):
        prediction_tables(outcome, "f", meta, inputs["classes"], ["honest", "validated_epoch"])
    table = prediction_tables(outcome, "f", meta, inputs["classes"], ["validated_epoch"], validated=1)
    assert table["epoch"].eq(1).all()
